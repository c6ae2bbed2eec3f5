"""One error shape for every API response: ``{"error": {"code", "message", "field"?}}``.

Handlers raise :class:`ApiError` (or let :class:`InvalidSubscription` escape); the
``authorized`` wrapper in :mod:`.auth` turns either into the response. ``code`` is a
stable machine-readable word (:data:`CODES`); ``message`` is for people and never
carries a secret; ``field`` names the offending input where there is one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from faust.web import Response, View

from webhook_stream.core.errors import WebhookStreamError

__all__ = [
    "CODES",
    "ApiError",
    "code_for",
    "error_body",
    "error_response",
    "json_errors",
]

#: Every ``error.code`` with the HTTP status it comes with (documented in the OpenAPI).
CODES: dict[str, int] = {
    "invalid": 400,
    "unauthorized": 401,
    "api_disabled": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "precondition_failed": 412,
    "too_large": 413,
    "unavailable": 503,
}

_CODE_OF = {status: code for code, status in reversed(CODES.items())}


def code_for(status: int) -> str:
    """The ``code`` of an HTTP status (for 401, ``unauthorized``; another 4xx: ``invalid``)."""
    return _CODE_OF.get(status, "invalid")


class ApiError(WebhookStreamError):
    """A request the API refuses; ``status`` and ``code`` say how, ``field`` names the input."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = CODES[code]
        self.code = code
        self.message = message
        self.field = field
        self.retriable = code == "unavailable"


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    inner: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        inner["field"] = field
    return {"error": inner}


#: Seconds a 503 asks the client to wait (a rebalance takes a few on the defaults).
RETRY_AFTER_S = 2


def error_response(view: View, exc: ApiError) -> Response:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if exc.status == 503 else None
    return view.json(
        error_body(exc.code, exc.message, exc.field), status=exc.status, headers=headers
    )


_MESSAGES = {
    404: "no such route",
    405: "method not allowed on this route",
    413: "request body too large",
}


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp's own refusals (unknown route, wrong method, a body over the size limit) in
    the documented error shape instead of its plain-text pages."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        message = _MESSAGES.get(exc.status, exc.reason)
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return web.Response(
            body=orjson.dumps(error_body(code_for(exc.status), message)),
            status=exc.status,
            content_type="application/json",
            headers=headers,
        )
