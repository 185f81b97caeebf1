"""`make plan` as a user runs it: files written, secrets masked, errors readable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tools.plan import main


def test_plan_writes_resources_manifests_and_outputs(tmp_path: Path, capsys) -> None:
    assert main(["--stack", "dev", "--out", str(tmp_path)]) == 0
    resources = json.loads((tmp_path / "resources.json").read_text())
    entry = next(r for r in resources if r["type"].endswith(":Uk8sCluster"))
    assert {"urn", "type", "name", "parent", "provider", "kind", "inputs"} <= set(entry)
    assert entry["kind"] == "custom" and entry["inputs"]["password"] == "[secret]"
    assert any(r["kind"] == "component" for r in resources)
    manifests = list(yaml.safe_load_all((tmp_path / "manifests.yaml").read_text()))
    assert all("kind" in m and "apiVersion" in m for m in manifests if m)
    outputs = json.loads((tmp_path / "outputs.json").read_text())
    assert outputs["kubeconfig"] == "[secret]"
    tree = capsys.readouterr().out
    assert "llm-uk8s:cluster:GpuCluster  gpu" in tree
    assert "  + pulumi-python:dynamic/ucloud:UfsVolume  models-ufs [protected]" in tree


def test_plan_reports_bad_config_without_a_traceback(tmp_path: Path, capsys, monkeypatch) -> None:
    root = tmp_path / "project"
    root.mkdir()
    source = Path(__file__).resolve().parents[2]
    for name in ("Pulumi.yaml", "__main__.py"):
        (root / name).write_text((source / name).read_text())
    (root / "Pulumi.broken.yaml").write_text("config:\n  llm-uk8s:gpuType: H999\n")
    monkeypatch.setattr("tools.plan.ROOT", root)
    monkeypatch.setattr("tools.plan.stacks", lambda: ["broken"])
    monkeypatch.syspath_prepend(str(source))
    assert main(["--stack", "broken", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "llm-uk8s:gpuType = 'H999'" in err and "Traceback" not in err


def test_unknown_stack_is_refused(capsys) -> None:
    try:
        main(["--stack", "staging"])
    except SystemExit as exit_:
        assert exit_.code == 2
    assert "no Pulumi.staging.yaml" in capsys.readouterr().err


def test_written_plan_is_byte_identical_across_processes(tmp_path: Path) -> None:
    # The SDK gathers dependencies in sets, whose order follows the per-process string hash:
    # two processes with different hash seeds must still write the same files.
    root = Path(__file__).resolve().parents[2]
    for seed in ("1", "2"):
        subprocess.run(
            [sys.executable, "-m", "tools.plan", "--stack", "prod", "--out", str(tmp_path / seed)],
            cwd=root,
            check=True,
            capture_output=True,
            timeout=300,
            env={"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": seed, "PYTHONPATH": str(root)},
        )
    for name in ("resources.json", "manifests.yaml", "outputs.json"):
        assert (tmp_path / "1" / name).read_bytes() == (tmp_path / "2" / name).read_bytes(), name
