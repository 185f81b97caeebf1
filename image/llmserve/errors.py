"""Every refusal leaves the server as an OpenAI-style error body, whatever raised it: our own
checks, request validation, unknown routes, wrong methods, or a bug (as a 500, logged)."""

from __future__ import annotations

import logging
import reprlib

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from llmserve.protocol import error_body

log = logging.getLogger("llmserve.errors")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    499: "invalid_request_error",
    503: "service_unavailable",
}


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = 80
_SHORT.maxlist = _SHORT.maxdict = 6


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers


def error_type(status: int) -> str:
    """The OpenAI error `type` for an HTTP status."""
    return _TYPES.get(status, "server_error")


def error_response(
    status: int,
    message: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(message, error_type(status), param, code), status_code=status, headers=headers
    )


def describe_validation_error(err: ValidationError | RequestValidationError) -> APIError:
    """The first problem, named by its dotted field path, with the value that was sent."""
    first = err.errors()[0]
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    # pydantic appends the union member name (e.g. 'str', 'list[...]'); drop those for clarity
    location = [
        p
        for p in location
        if not (
            p.startswith(("list[", "function-"))
            or p
            in {
                "str",
                "int",
                "float",
                "bool",
                "list",
                "TextPart",
                "ChatMessage",
                "constrained-int",
                "constrained-float",
                "constrained-str",
            }
        )
    ]
    param = ".".join(location)[:200] or None
    value = first.get("input")
    shown = _SHORT.repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    message = first.get("msg", "invalid value")
    if first.get("type") == "missing":
        message = f"{param} is required"
    else:
        message = f"{param or 'body'}: {message} (got {shown})"
    return APIError(400, message, param=param, code="invalid_value")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, err: APIError) -> JSONResponse:
        return error_response(err.status, err.message, err.param, err.code, err.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, err: RequestValidationError) -> JSONResponse:
        api = describe_validation_error(err)
        return error_response(api.status, api.message, api.param, api.code)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, err: StarletteHTTPException) -> JSONResponse:
        return error_response(err.status_code, str(err.detail), headers=err.headers)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _: ClientDisconnect) -> JSONResponse:
        # Nobody reads this answer; 499 (as nginx logs it) keeps it out of the 5xx counts.
        log.info("client disconnected during %s %s", request.method, request.url.path)
        return error_response(499, "the client closed the connection", code="client_closed")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error: {type(err).__name__}", code="internal_error")
