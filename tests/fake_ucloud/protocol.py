"""UCloud's wire format as ucloud-sdk-python3 sends it: a form POST of flat keys
("Network.0", "Master.1.Zone") signed with SHA-1 over the sorted pairs."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import parse_qsl

SIGNATURE_ERROR = 171  # "Signature VerifyAC Error", as UCloud's API docs show it
UNKNOWN_USER = 172  # "User Not Exists"
MISSING_PARAM = 160  # the fake's own choice: no public table of UCloud codes was found
NOT_FOUND = 8039  # the fake's own choice; providers match the words "not found", not the code
THROTTLED = 429  # the fake's own choice, sent with UCloud's gateway wording "Too many requests"
UNKNOWN_ACTION = 161
IN_USE = 8040  # the fake's own choice for "resource still has dependents"


class ApiError(Exception):
    """An error answer: RetCode != 0 with a Message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def parse_form(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))


def signature(params: dict[str, str], private_key: str) -> str:
    """UCloud's signature: sha1 of key+value pairs sorted by key, then the private key."""
    text = "".join(f"{key}{params[key]}" for key in sorted(params) if key != "Signature")
    return hashlib.sha1((text + private_key).encode("utf-8")).hexdigest()


def unflatten(params: dict[str, str]) -> dict[str, Any]:
    """{"Master.0.Zone": "a", "Network.0": "10.0.0.0/16"} -> {"Master": [{"Zone": "a"}], ...}."""
    tree: dict[str, Any] = {}
    for key, value in params.items():
        parts = key.split(".")
        node: Any = tree
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            container_key: Any = int(part) if part.isdigit() else part
            if isinstance(node, dict):
                if last:
                    node[container_key] = value
                else:
                    node = node.setdefault(container_key, {})
            else:  # pragma: no cover - only dicts are built above
                raise ApiError(MISSING_PARAM, f"bad parameter name {key}")
    return _lists(tree)


def _lists(node: Any) -> Any:
    """Turn dicts keyed 0..n-1 into lists."""
    if not isinstance(node, dict):
        return node
    converted = {key: _lists(value) for key, value in node.items()}
    if converted and all(isinstance(key, int) for key in converted):
        return [converted[index] for index in sorted(converted)]
    return converted


def require(params: dict[str, Any], *names: str) -> None:
    for name in names:
        if params.get(name) in (None, "", []):
            raise ApiError(MISSING_PARAM, f"Missing params [{name}]")
