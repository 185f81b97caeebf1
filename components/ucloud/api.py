"""A thin, retrying handle on ucloud-sdk-python3 for one region and project.

Clients are built per call, never at import or in a provider's __init__, so a
pickled provider carries no sockets, keys or SDK state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from components.ucloud.credentials import UCloudCredentials
from components.ucloud.errors import is_not_found
from components.ucloud.retry import RetryPolicy

PAGE_SIZE = 100


@dataclass(frozen=True)
class UCloudApi:
    """Calls UCloud actions with the given keys, region and project."""

    credentials: UCloudCredentials = field(repr=False)
    region: str
    project_id: str | None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    request_timeout: int = 30

    def _client(self) -> Any:
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
        if self.project_id:
            config["project_id"] = self.project_id
        # An empty middleware: the SDK's default one logs every request, passwords included.
        return Client(config, middleware=Middleware())

    def call_once(self, service: str, method: str, args: dict[str, Any]) -> dict[str, Any]:
        """One typed SDK call (request validated by the SDK's schema), no retry."""
        sdk_service = getattr(self._client(), service)()
        result: dict[str, Any] = getattr(sdk_service, method)(dict(args))
        return result

    def invoke_once(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        """One untyped call, for actions whose SDK schema is stricter than the API."""
        result: dict[str, Any] = self._client().invoke(action, dict(args))
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

        None once it is gone (an empty list or a "not found" error). No retry: callers
        retry the whole describe.
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
