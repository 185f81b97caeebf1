"""`make tunnel`: kubectl port-forward through the stack's own kubeconfig output, run against
stand-in `pulumi` and `kubectl` executables that record what they were given."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUTPUTS = {
    "kubeconfig": "apiVersion: v1\nkind: Config\n# credentials\n",
    "clusterEndpoint": "http://inference-3c72e224.llm.svc.cluster.local:7861/v1",
    "namespace": "llm",
}


def stand_ins(tmp_path: Path, outputs: dict[str, object]) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    pulumi = bin_dir / "pulumi"
    pulumi.write_text(
        f'#!/bin/sh\necho "$@" > {tmp_path}/pulumi-args\ncat {tmp_path}/outputs.json\n'
    )
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(
        "#!/bin/sh\n"
        f'echo "$@" > {tmp_path}/kubectl-args\n'
        f'cp "$2" {tmp_path}/kubeconfig-seen\n'
        f'stat -c %a "$2" > {tmp_path}/kubeconfig-mode\n'
    )
    for script in (pulumi, kubectl):
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def run(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.tunnel", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_port_forward_goes_through_the_stacks_kubeconfig(tmp_path: Path) -> None:
    done = run(tmp_path, stand_ins(tmp_path, OUTPUTS), "--stack", "prod", "--port", "18000")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "pulumi-args").read_text().split() == [
        "stack",
        "output",
        "--json",
        "--show-secrets",
        "--stack",
        "prod",
    ]
    args = (tmp_path / "kubectl-args").read_text().split()
    assert args[0] == "--kubeconfig" and args[2:] == [
        "--namespace",
        "llm",
        "port-forward",
        "service/inference-3c72e224",
        "18000:7861",
    ]
    assert (tmp_path / "kubeconfig-seen").read_text() == OUTPUTS["kubeconfig"]
    assert (tmp_path / "kubeconfig-mode").read_text().strip() == "600"
    assert not Path(args[1]).exists()  # the credentials do not outlive the tunnel
    assert "http://127.0.0.1:18000/v1" in done.stdout
    assert "credentials" not in done.stdout + done.stderr


def test_a_stack_without_a_kubeconfig_is_one_clear_line(tmp_path: Path) -> None:
    env = stand_ins(tmp_path, {"clusterEndpoint": OUTPUTS["clusterEndpoint"]})
    done = run(tmp_path, env, "--stack", "local")
    assert done.returncode == 1
    assert done.stderr.startswith("make tunnel: stack 'local' exports no kubeconfig")
    assert "Traceback" not in done.stderr


def test_no_pulumi_cli_is_one_clear_line(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": "/nonexistent"}
    done = subprocess.run(
        [sys.executable, "-m", "tools.tunnel", "--stack", "dev"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "needs the Pulumi CLI" in done.stderr
