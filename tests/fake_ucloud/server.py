"""The fake UCloud API over HTTP on 127.0.0.1, for the real SDK client to talk to."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fake_ucloud import catalog_api, nat_api, network_api, uk8s_api
from tests.fake_ucloud.cloud import FakeCloud, Outcome
from tests.fake_ucloud.faults import Fault
from tests.fake_ucloud.protocol import (
    MISSING_PARAM,
    NATGW_NOT_FOUND,
    NEUTRAL_MESSAGE,
    SIGNATURE_ERROR,
    THROTTLED,
    UFS_VOLUME_NOT_FOUND,
    UK8S_CLUSTER_NOT_FOUND,
    UNKNOWN_ACTION,
    UNKNOWN_USER,
    ApiError,
    Missing,
    parse_form,
    signature,
    unflatten,
)


def get_project_list(cloud: FakeCloud, p: dict[str, Any]) -> dict[str, Any]:
    """uaccount-api/get_project_list.md: ProjectSet of ProjectListInfo, IsDefault marks one."""
    projects = [
        {
            "ProjectId": project_id,
            "ProjectName": "Default" if is_default else project_id,
            "IsDefault": is_default,
            "CreateTime": 0,
            "ResourceCount": 0,
            "MemberCount": 1,
        }
        for project_id, is_default in cloud.projects
    ]
    return {"ProjectSet": projects, "ProjectCount": len(projects)}


HANDLERS = {
    **network_api.HANDLERS,
    **nat_api.HANDLERS,
    **uk8s_api.HANDLERS,
    **catalog_api.HANDLERS,
    "GetProjectList": get_project_list,
}
# Each action's documented answer to a request naming a missing resource (see protocol.py);
# every other action answers protocol.NOT_FOUND.
NOT_FOUND_BY_ACTION = {
    "DescribeNATGW": NATGW_NOT_FOUND,
    "ListUK8SClusterNodeV2": UK8S_CLUSTER_NOT_FOUND,
    "DescribeUFSVolumeMountpoint": UFS_VOLUME_NOT_FOUND,
}
# Actions whose API doc marks ProjectId required (vpc-api/describe_vpc.md,
# uk8s-api/create_uk8s_cluster_v2.md, uk8s-api/get_uk8s_versions.md). What UCloud answers when
# it is missing is not documented: the fake answers MISSING_PARAM.
PROJECT_REQUIRED = frozenset({"DescribeVPC", "CreateUK8SClusterV2", "GetUK8SVersions"})


class FakeUCloud:
    """A UCloud API double: real HTTP, real signatures, asynchronous states, injectable faults.

    Use as a context manager; point the SDK (or UCLOUD_BASE_URL) at `base_url`.
    """

    def __init__(
        self,
        public_key: str = "fake-public-key",
        private_key: str = "fake-private-key",
    ) -> None:
        self.public_key, self.private_key = public_key, private_key
        self.cloud = FakeCloud()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ---------------------------------------------------------------
    def __enter__(self) -> FakeUCloud:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                status, body = fake.handle(self.rfile.read(length))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # ---- what tests turn ---------------------------------------------------------
    def inject(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def fail_next(self, action: str, **fault: Any) -> None:
        """Fault's fields as keywords: times, code, message, after_apply."""
        self.inject(Fault(action, **fault))

    def throttle_next(self, action: str, times: int = 1) -> None:
        self.inject(Fault(action, times, THROTTLED, NEUTRAL_MESSAGE))

    def http_error_next(self, action: str, status: int = 503, times: int = 1) -> None:
        self.inject(Fault(action, times, http_status=status))

    def next_creation(self, kind: str, target: str | None, detail: str = "") -> None:
        """The next "cluster" or "node" created ends in `target` (None: never settles)."""
        with self._lock:
            self.cloud.next_outcomes.setdefault(kind, []).append(Outcome(target, detail))

    def sent(self, action: str) -> list[dict[str, Any]]:
        """The flat parameters of every request for `action`, in order."""
        return [params for name, params in self.calls if name == action]

    def count(self, action: str) -> int:
        return sum(1 for name, _ in self.calls if name == action)

    def resources(self, kind: str) -> dict[str, Any]:
        """Live records of a kind: "vpc", "subnet", "eip", "natgw", "ufs", "cluster", "node"."""
        with self._lock:
            return dict(self.cloud.kind(kind))

    # ---- the protocol ------------------------------------------------------------
    def handle(self, raw: bytes) -> tuple[int, bytes]:
        flat = parse_form(raw)
        action = flat.get("Action", "")
        with self._lock:
            self.calls.append((action, dict(flat)))
            try:
                self._authenticate(flat)
                fault = self._take_fault(action)
                if fault and fault.http_status:
                    return fault.http_status, b""
                if fault and not fault.after_apply:
                    raise ApiError(fault.code, fault.message)
                handler = HANDLERS.get(action)
                if handler is None:
                    raise ApiError(UNKNOWN_ACTION, f"{NEUTRAL_MESSAGE} [{action}]")
                if action in PROJECT_REQUIRED and not flat.get("ProjectId"):
                    raise ApiError(MISSING_PARAM, f"{NEUTRAL_MESSAGE} [ProjectId]")
                try:
                    result = handler(self.cloud, unflatten(flat))
                except Missing as missing:
                    missing.code = NOT_FOUND_BY_ACTION.get(action, missing.code)
                    raise
                if fault:
                    raise ApiError(fault.code, fault.message)
                payload = {"Action": f"{action}Response", "RetCode": 0, **result}
            except ApiError as error:
                payload = {
                    "Action": f"{action}Response",
                    "RetCode": error.code,
                    "Message": error.message,
                }
        return 200, json.dumps(payload).encode("utf-8")

    def _authenticate(self, flat: dict[str, str]) -> None:
        if flat.get("PublicKey") != self.public_key:
            raise ApiError(UNKNOWN_USER, NEUTRAL_MESSAGE)
        if flat.get("Signature") != signature(flat, self.private_key):
            raise ApiError(SIGNATURE_ERROR, NEUTRAL_MESSAGE)

    def _take_fault(self, action: str) -> Fault | None:
        for fault in self.faults:
            if fault.action == action and fault.times > 0:
                fault.times -= 1
                return fault
        return None
