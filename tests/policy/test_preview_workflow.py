"""The PR preview workflow: actionlint-clean, and wired to preview with the policy pack."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "preview.yml"


def actionlint() -> str:
    found = shutil.which("actionlint") or str(Path(sys.executable).parent / "actionlint")
    assert Path(found).exists(), "actionlint is missing: pip install -r requirements-dev.txt"
    return found


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [actionlint(), "-no-color", str(path)],
        capture_output=True,
        text=True,
        cwd=path.parent,
        timeout=120,
        check=False,
    )


def test_workflow_is_actionlint_clean() -> None:
    result = lint(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_really_checks(tmp_path: Path) -> None:
    broken = WORKFLOW.read_text().replace(
        "${{ secrets.PULUMI_ACCESS_TOKEN }}", "${{ secrets.PULUMI_ACCESS_TOKEN }"
    )
    target = tmp_path / ".github" / "workflows" / "preview.yml"
    target.parent.mkdir(parents=True)
    target.write_text(broken)
    assert lint(target).returncode != 0


def pulumi_step() -> dict[str, Any]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    steps = workflow["jobs"]["preview"]["steps"]
    return next(s for s in steps if str(s.get("uses", "")).startswith("pulumi/actions@"))


def test_runs_on_every_pull_request() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert "pull_request" in workflow[True]  # YAML 1.1 reads the key `on` as True
    assert workflow["permissions"]["pull-requests"] == "write"


def test_previews_with_the_policy_pack_and_comments() -> None:
    step = pulumi_step()
    assert step["uses"] == "pulumi/actions@v6"
    assert step["with"]["command"] == "preview"
    assert step["with"]["policyPacks"] == "policy"
    assert step["with"]["comment-on-pr"] is True
    assert (REPO / step["with"]["policyPacks"] / "PulumiPolicy.yaml").exists()


def test_credentials_come_from_repository_secrets() -> None:
    env = pulumi_step()["env"]
    for name in ("PULUMI_ACCESS_TOKEN", "UCLOUD_PUBLIC_KEY", "UCLOUD_PRIVATE_KEY"):
        assert env[name] == f"${{{{ secrets.{name} }}}}"


def test_the_plan_diff_job_needs_no_secrets_and_runs_on_forks() -> None:
    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["plan-diff"]
    assert "if" not in job  # forks too
    assert "secrets." not in yaml.safe_dump(job)
    run = next(s["run"] for s in job["steps"] if "tools.plan_diff" in str(s.get("run", "")))
    assert "github.event.pull_request.base.sha" in run
    checkout = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/"))
    assert checkout["with"]["fetch-depth"] == 0


def test_the_cost_line_is_the_last_line_of_preflight() -> None:
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["preview"]["steps"]
    run = next(s["run"] for s in steps if "tools.preflight" in str(s.get("run", "")))
    assert "--no-cost-view" in run and "tail -n 1" in run
