"""Run the fake UCloud API (with its catalog and price actions), for trying `make preflight` by
hand: tools/preflight.py has no test flag, it sees only the UCLOUD_* variables.

Either run one command against a fresh fake, which gets the fake's UCLOUD_* variables (the exit
code is the command's):

    .venv/bin/python -m tests.preflight.serve_fake -- \
        .venv/bin/python -m tools.preflight --stack dev

or serve until interrupted. The first three lines are the fake's address and (fake) keys as
shell exports, printed once it listens, so reading them is the readiness signal (bash):

    exec 3< <(.venv/bin/python -m tests.preflight.serve_fake)
    for _ in 1 2 3; do read -r line <&3 && eval "$line"; done
    .venv/bin/python -m tools.preflight --stack dev
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

from tests.fake_ucloud import FakeUCloud


def fake_env(fake: FakeUCloud) -> dict[str, str]:
    return {
        "UCLOUD_BASE_URL": fake.base_url,
        "UCLOUD_PUBLIC_KEY": fake.public_key,
        "UCLOUD_PRIVATE_KEY": fake.private_key,
    }


def main(argv: list[str]) -> int:
    command = argv[1:] if argv[:1] == ["--"] else argv
    with FakeUCloud() as fake:
        if command:
            env = {**os.environ, **fake_env(fake)}
            return subprocess.run(command, env=env, check=False).returncode
        for name, value in fake_env(fake).items():
            print(f"export {name}={value}")
        sys.stdout.flush()
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
