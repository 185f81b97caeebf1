"""The deploy path's make targets as a newcomer runs them (with `echo` standing in for docker)."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_push_builds_tags_pushes_and_says_what_to_set() -> None:
    done = make(
        "push",
        "REGISTRY=uhub.service.ucloud.cn/acme",
        "CONTAINER=echo",
        "IMAGE=llm-uk8s-server:0.2.0",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "build -t llm-uk8s-server:0.2.0 image" in lines
    assert "tag llm-uk8s-server:0.2.0 uhub.service.ucloud.cn/acme/llm-uk8s-server:0.2.0" in lines
    assert "push uhub.service.ucloud.cn/acme/llm-uk8s-server:0.2.0" in lines
    assert lines[-1] == (
        "now: pulumi config set inferenceImage uhub.service.ucloud.cn/acme/llm-uk8s-server:0.2.0"
    )


def test_push_without_a_registry_says_so_and_builds_nothing() -> None:
    done = make("push", "CONTAINER=echo")
    assert done.returncode != 0
    assert "make push: set REGISTRY" in done.stderr
    assert "build -t" not in done.stdout


def test_image_without_a_container_tool_says_which_it_looks_for() -> None:
    done = make("image", "CONTAINER=")
    assert done.returncode != 0 and "no docker, podman or buildah" in done.stderr
