"""A thin, retrying handle on ucloud-sdk-python3 for one region and project.

Clients are built per call, never at import or in a provider's __init__, so a
pickled provider carries no sockets, keys or SDK state.

ProjectId, as the sources say: every action we call accepts it, and "不填写为默认项目"
(left out, the account's default project is used; API summary/public.md "通用参数"). The
SDK sends the client's `project_id` with every request (ucloud/core/client/_client.py
`_build_http_request`). Three actions *require* it, in the SDK schema and in the API docs
alike: DescribeVPC (vpc/schemas/apis.py DescribeVPCRequestSchema; vpc-api/describe_vpc.md),
CreateUK8SClusterV2 and GetUK8SVersions (uk8s/schemas/apis.py; uk8s-api/*.md). So: a
configured project is sent everywhere; with none, optional actions go without it and the
required ones get the default project, looked up once with GetProjectList (IsDefault), as
UCloud's CLI does (ucloud-cli cmd/region.go getDefaultProject).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from components.ucloud.credentials import CONFIG_PROJECT_ID, ENV_PROJECT_ID, UCloudCredentials
from components.ucloud.errors import MissingProjectError, is_not_found
from components.ucloud.retry import RetryPolicy

PAGE_SIZE = 100
# The SDK services whose schemas we read (every action we call lives in one of them).
SDK_SERVICES = ("vpc", "unet", "ufs", "uk8s", "uaccount")


def _squash(name: str) -> str:
    return name.replace("_", "").lower()


@cache
def _request_schemas() -> dict[str, tuple[str, Any]]:
    """Each SDK request schema by squashed action name ("describevpc" -> DescribeVPC's)."""
    schemas: dict[str, tuple[str, Any]] = {}
    for service in SDK_SERVICES:
        module = importlib.import_module(f"ucloud.services.{service}.schemas.apis")
        for attr in dir(module):
            if attr.endswith("RequestSchema"):
                action = attr[: -len("RequestSchema")]
                schemas[_squash(action)] = (action, getattr(module, attr))
    return schemas


def action_name(method_or_action: str) -> str:
    """The action behind an SDK method name ("describe_ufs_volume_2" -> DescribeUFSVolume2)."""
    found = _request_schemas().get(_squash(method_or_action))
    return found[0] if found else method_or_action


def requires_project(method_or_action: str) -> bool:
    """True when the SDK's request schema marks ProjectId required."""
    found = _request_schemas().get(_squash(method_or_action))
    if found is None:
        return False
    project = found[1].fields.get("ProjectId")
    return bool(project is not None and project.required)


@dataclass(frozen=True)
class UCloudApi:
    """Calls UCloud actions with the given keys, region and project."""

    credentials: UCloudCredentials = field(repr=False)
    region: str
    project_id: str | None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    request_timeout: int = 30
    # The default project once looked up (per UCloudApi, i.e. per provider operation).
    _default_project: dict[str, str] = field(
        default_factory=dict, repr=False, compare=False, hash=False
    )

    def _client(self, project_id: str | None) -> Any:
        # Imported here: importing the SDK installs a console log handler.
        from ucloud.client import Client
        from ucloud.core.utils.middleware import Middleware

        config: dict[str, Any] = {
            "region": self.region,
            "base_url": self.credentials.base_url,
            "public_key": self.credentials.public_key,
            "private_key": self.credentials.private_key,
            "max_retries": 0,
            "timeout": self.request_timeout,
        }
        if project_id:
            config["project_id"] = project_id
        # An empty middleware: the SDK's default one logs every request, passwords included.
        return Client(config, middleware=Middleware())

    def project_for(self, method_or_action: str) -> str | None:
        """The ProjectId to send with this action: the configured one, else the default
        project where the schema requires one, else none (UCloud uses the default)."""
        if self.project_id:
            return self.project_id
        return self.default_project() if requires_project(method_or_action) else None

    def default_project(self) -> str:
        """The account's default project (GetProjectList, IsDefault), looked up once."""
        if "id" not in self._default_project:
            response = self.retry.run(lambda: self._client(None).uaccount().get_project_list({}))
            defaults = [p for p in response.get("ProjectSet") or [] if p.get("IsDefault")]
            if not defaults:
                raise MissingProjectError(
                    f"project_id: got none, and GetProjectList names no default project; "
                    f"allowed: a project id (org-...), set as the resource's project_id, "
                    f"`pulumi config set {CONFIG_PROJECT_ID} ...` or env {ENV_PROJECT_ID}"
                )
            self._default_project["id"] = str(defaults[0]["ProjectId"])
        return self._default_project["id"]

    def call_once(self, service: str, method: str, args: dict[str, Any]) -> dict[str, Any]:
        """One typed SDK call (request validated by the SDK's schema), no retry."""
        sdk_service = getattr(self._client(self.project_for(method)), service)()
        result: dict[str, Any] = getattr(sdk_service, method)(dict(args))
        return result

    def invoke_once(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        """One untyped call, for actions whose SDK schema is stricter than the API."""
        result: dict[str, Any] = self._client(self.project_for(action)).invoke(action, dict(args))
        return result

    def call(self, service: str, method: str, args: dict[str, Any]) -> dict[str, Any]:
        """A typed call, retried on throttling and transient errors."""
        return self.retry.run(lambda: self.call_once(service, method, args))

    def invoke(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        """An untyped call, retried on throttling and transient errors."""
        return self.retry.run(lambda: self.invoke_once(action, args))

    def describe_one(
        self,
        service: str,
        method: str,
        args: dict[str, Any],
        items_key: str,
        id_key: str,
        id_: str,
    ) -> dict[str, Any] | None:
        """The item whose `id_key` is `id_` in what a Describe* call with `args` returns.

        None once it is gone (an empty list, or the action's not-found RetCode). No retry:
        callers retry the whole describe.
        """
        try:
            response = self.call_once(service, method, args)
        except Exception as error:
            if is_not_found(error):
                return None
            raise
        items = [i for i in response.get(items_key) or [] if i.get(id_key) == id_]
        return items[0] if items else None

    def paged(
        self, fetch: Callable[[dict[str, Any]], dict[str, Any]], items_key: str
    ) -> Iterator[dict[str, Any]]:
        """Every item of a listing action, following Offset/Limit pages."""
        offset = 0
        while True:
            page = fetch({"Offset": offset, "Limit": PAGE_SIZE})
            items = page.get(items_key) or []
            yield from items
            offset += len(items)
            if not items or offset >= int(page.get("TotalCount") or 0):
                return
