"""One error shape for every API response: ``{"error": {"code", "message", "field"?}}``.

Handlers raise :class:`ApiError` (or let :class:`InvalidSubscription` escape); the
``authorized`` wrapper in :mod:`.tenancy.auth` turns either into the response. ``code`` is a
stable machine-readable word (:data:`CODES`); ``message`` is for people and never
carries a secret; ``field`` names the offending input where there is one.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from faust.web import Response, View

from webhook_stream.core.errors import WebhookStreamError

__all__ = [
    "CODES",
    "WWW_AUTHENTICATE",
    "ApiError",
    "code_for",
    "error_body",
    "error_headers",
    "error_response",
    "json_errors",
    "quiet_client_protocol_errors",
]

#: Every ``error.code`` with the HTTP status it comes with (documented in the OpenAPI).
CODES: dict[str, int] = {
    "invalid": 400,
    "unauthorized": 401,
    "api_disabled": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "conflict": 409,
    "limit_exceeded": 409,
    "precondition_failed": 412,
    "too_large": 413,
    "rate_limited": 429,
    "internal": 500,
    "unavailable": 503,
}

_CODE_OF = {status: code for code, status in reversed(CODES.items())}


def code_for(status: int) -> str:
    """The ``code`` of an HTTP status (for 401, ``unauthorized``)."""
    return _CODE_OF[status]


class ApiError(WebhookStreamError):
    """A request the API refuses; ``status`` and ``code`` say how, ``field`` names the input."""

    def __init__(
        self, code: str, message: str, field: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = CODES[code]
        self.code = code
        self.message = message
        self.field = field
        self.retriable = code in ("unavailable", "rate_limited")
        #: Seconds for ``Retry-After`` (a 429's; a 503 has its own).
        self.retry_after = retry_after


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    inner: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        inner["field"] = field
    return {"error": inner}


#: Seconds a 503 asks the client to wait (a rebalance takes a few on the defaults).
RETRY_AFTER_S = 2


#: The challenge of every 401 (RFC 6750): the management API takes a bearer token.
WWW_AUTHENTICATE = 'Bearer realm="webhook-stream"'


def error_headers(status: int) -> dict[str, str] | None:
    """``Retry-After`` on a 503, ``WWW-Authenticate`` on a 401."""
    if status == 503:
        return {"Retry-After": str(RETRY_AFTER_S)}
    if status == 401:
        return {"WWW-Authenticate": WWW_AUTHENTICATE}
    return None


def error_response(view: View, exc: ApiError) -> Response:
    headers = error_headers(exc.status)
    if exc.retry_after is not None:
        headers = {**(headers or {}), "Retry-After": str(exc.retry_after)}
    return view.json(
        error_body(exc.code, exc.message, exc.field), status=exc.status, headers=headers
    )


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """aiohttp's own refusals (no such route, method, a body over the limit) in the one
    error shape too, instead of its plain-text pages."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        code = _CODE_OF.get(exc.status, "invalid")
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        headers.update(error_headers(exc.status) or {})
        return web.json_response(
            error_body(code, exc.reason or "refused"),
            status=exc.status,
            headers=headers,
            dumps=lambda obj: orjson.dumps(obj).decode(),
        )


class _ClientProtocolErrors(logging.Filter):
    """Drops aiohttp's log record (with its traceback) of a request it could not parse:
    the client's error, answered 400, and a client could fill the log with them."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, HttpProcessingError)


def quiet_client_protocol_errors() -> None:
    """Install :class:`_ClientProtocolErrors` on aiohttp's server logger (once)."""
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _ClientProtocolErrors) for f in server_log.filters):
        server_log.addFilter(_ClientProtocolErrors())
