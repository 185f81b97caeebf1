"""`make plan-diff`: what a change does to a stack, read from two offline plans."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tools.plan import plan_stack, write_plan
from tools.plan_diff import diff_plans, render_diff

REPO = Path(__file__).resolve().parents[2]


def plans(tmp_path: Path, stack: str, overrides: dict[str, object]) -> tuple[Path, Path]:
    base, head = tmp_path / "base", tmp_path / "head"
    write_plan(plan_stack(stack), base)
    write_plan(plan_stack(stack, overrides=overrides), head)
    return base, head


def step(diff, name: str):  # type: ignore[no-untyped-def]
    return next(s for s in diff.steps if s.urn.endswith("::" + name))


def test_switching_the_gpu_type_replaces_the_node_pool(tmp_path: Path) -> None:
    diff = diff_plans(*plans(tmp_path, "dev", {"gpuType": "T4S"}))
    nodes = next(s for s in diff.steps if s.type.endswith(":Uk8sNode"))
    assert nodes.op == "replace" and nodes.replace_because == ("gpu_type",)
    assert any(c.path == "gpu_type" and (c.old, c.new) == ("T4", "T4S") for c in nodes.changes)
    assert not any(s.type.endswith((":Vpc", ":UfsVolume", ":Uk8sCluster")) for s in diff.steps)
    text = render_diff(diff)
    assert "+- pulumi-python:dynamic/ucloud:Uk8sNode" in text
    assert "replaced because these changed: gpu_type" in text
    assert "1 to replace" in text


def test_a_bigger_volume_is_an_update_and_a_new_revision_replaces_the_fetch_job(
    tmp_path: Path,
) -> None:
    diff = diff_plans(*plans(tmp_path, "dev", {"ufsSizeGb": 600, "modelRevision": "v1.1"}))
    volume = next(s for s in diff.steps if s.type.endswith(":UfsVolume"))
    assert volume.op == "update" and [c.path for c in volume.changes] == ["size"]
    job = next(s for s in diff.steps if s.type == "kubernetes:batch/v1:Job")
    assert job.op == "replace" and "spec.template" in job.replace_because
    deployment = next(s for s in diff.steps if s.type == "kubernetes:apps/v1:Deployment")
    assert deployment.op == "update"  # a new pod template rolls out, the object stays


def test_an_unchanged_stack_has_no_steps(tmp_path: Path) -> None:
    diff = diff_plans(*plans(tmp_path, "prod", {}))
    assert diff.steps == [] and diff.unchanged > 20
    assert render_diff(diff).endswith(f"no changes; {diff.unchanged} unchanged")


def test_plan_diff_against_a_git_ref_runs_as_make_does(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.plan_diff",
            "--stack",
            "local",
            "--base",
            "HEAD",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "Stack local: HEAD -> working tree" in done.stdout
    assert "Resources:" in done.stdout.splitlines()[-1]


def test_an_unknown_ref_is_one_clear_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.plan_diff",
            "--stack",
            "dev",
            "--base",
            "no-such-ref",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == "plan-diff: BASE='no-such-ref' is not a commit of this repository"
