"""Run the fake UCloud API (with its catalog and price actions) until interrupted, for trying
`make preflight` by hand:

    .venv/bin/python -m tests.preflight.serve_fake > /tmp/fake-ucloud.env &
    sleep 1; . /tmp/fake-ucloud.env
    .venv/bin/python -m tools.preflight --stack dev --set 'zones=["cn-bj2-05"]'

It prints the fake's address and its (fake) keys as shell exports, then serves.
"""

from __future__ import annotations

import contextlib
import signal
import sys

from tests.fake_ucloud import FakeUCloud


def main() -> int:
    with FakeUCloud() as fake:
        print(f"export UCLOUD_BASE_URL={fake.base_url}")
        print(f"export UCLOUD_PUBLIC_KEY={fake.public_key}")
        print(f"export UCLOUD_PRIVATE_KEY={fake.private_key}")
        sys.stdout.flush()
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
