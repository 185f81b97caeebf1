"""Reading and checking a request body: size cap, read deadline, UTF-8, JSON, the model.

Every way a body can be bad is a 4xx, never a 500: JSON nested past Python's recursion limit,
an integer of more digits than Python converts (4300 by default), a client that hangs up
halfway (499, logged at INFO without a traceback), one that sends too slowly (408)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from llmserve.errors import APIError, describe_validation_error

log = logging.getLogger("llmserve.body")
MAX_DEPTH = 128  # deeper JSON is no request any client sends
_Body = TypeVar("_Body", bound=BaseModel)
_warned: set[str] = set()


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise APIError(
            413,
            f"request body is {declared[:40]} bytes; allowed: at most {limit}",
            code="body_too_large",
        )
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise APIError(
                        413,
                        f"request body exceeds {limit} bytes; allowed: at most {limit}",
                        code="body_too_large",
                    )
                chunks.append(chunk)
    except TimeoutError:
        raise APIError(
            408,
            f"the request body did not arrive within {timeout_s:g} s "
            f"({size} bytes received); send it faster",
            code="body_timeout",
            headers={"Connection": "close"},
        ) from None
    except ClientDisconnect:
        log.info("client disconnected while sending the body of %s", request.url.path)
        raise APIError(499, "the client closed the connection", code="client_closed") from None
    return b"".join(chunks)


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")


def _too_deep(text: str) -> bool:
    """Nesting depth over MAX_DEPTH, counted without parsing (brackets inside strings skipped)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):
        depth += 1 if match.group() in "[{" else -1
        if depth > MAX_DEPTH:
            return True
    return False


def decode_json(raw: bytes) -> tuple[str, dict[str, Any]]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise APIError(
            400,
            f"request body is not valid UTF-8 (bad byte at offset {err.start}); "
            "allowed: UTF-8 JSON",
            code="invalid_utf8",
        ) from None
    if _too_deep(text):
        raise APIError(
            400,
            f"request body nests JSON more than {MAX_DEPTH} levels deep; allowed: at most "
            f"{MAX_DEPTH}",
            code="invalid_json",
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise APIError(
            400,
            f"request body is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}",
            code="invalid_json",
        ) from None
    except (ValueError, RecursionError) as err:  # e.g. an int of more than 4300 digits
        raise APIError(
            400,
            f"request body has a value Python cannot read: {str(err)[:200]}",
            code="invalid_json",
        ) from None
    if not isinstance(data, dict):
        raise APIError(
            400,
            f"request body must be a JSON object, got {type(data).__name__}",
            code="invalid_json",
        )
    return text, data


def validate(model: type[_Body], text: str) -> _Body:
    try:
        body = model.model_validate_json(text)
    except ValidationError as err:
        raise describe_validation_error(err) from None
    unknown = getattr(body, "unknown_fields", None)
    if unknown is not None:
        warn_unknown(unknown())
    return body


def warn_unknown(names: list[str]) -> None:
    """Each unknown field name is logged once per process: accepted, ignored, visible."""
    for name in names:
        if name not in _warned and len(_warned) < 1000:
            _warned.add(name)
            log.warning("ignoring unknown request field %r (accepted, has no effect)", name[:200])


def _decode_and_validate(model: type[_Body], raw: bytes) -> _Body:
    text, _ = decode_json(raw)
    return validate(model, text)


async def parse(request: Request, model: type[_Body], limit: int, timeout_s: float) -> _Body:
    raw = await read_body(request, limit, timeout_s)
    if len(raw) < 64 * 1024:
        return _decode_and_validate(model, raw)
    # Big bodies are parsed in a worker thread: the event loop keeps serving meanwhile.
    return await asyncio.to_thread(_decode_and_validate, model, raw)
