"""The write half of ``/subscriptions``: versions, ``ETag``/``If-Match``, decided writes.

Every change goes through :class:`~webhook_stream.subscriptions.writes.WriteClient`: the
owner of the endpoint id decides it against the current version, so two workers racing a
create give one 201 and one 409, and a stale ``If-Match`` gives 412 wherever it lands.
The checks made here against this worker's view only answer early; the owner's are the
ones that count.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from faust.web import Request, Response, View

from webhook_stream.core.errors import InvalidSubscription
from webhook_stream.subscriptions.model import Subscription
from webhook_stream.subscriptions.writes import WriteRequest, WriteResult

__all__ = ["ETAG", "etag", "if_match", "submit_write"]

ETAG = "ETag"
_WRITE_TIMEOUT = 10.0
_ETAG_VALUE = re.compile(r'\s*(?:W/)?"?(\d{1,16})"?\s*')

ErrorFn = Callable[..., Response]


def etag(sub: Subscription) -> dict[str, str]:
    """The ``ETag`` header of ``sub``: its version, quoted."""
    return {ETAG: f'"{sub.version}"'}


def if_match(request: Request) -> int | None:
    """The version ``If-Match`` asks for; None without the header or for ``*``."""
    raw = request.headers.get("If-Match")
    if raw is None or raw.strip() == "*":
        return None
    found = _ETAG_VALUE.fullmatch(raw)
    if found is None:
        raise InvalidSubscription("If-Match", 'must be an ETag of this API, e.g. "3"')
    return int(found.group(1))


def precondition_failed(view: View, message: str) -> Response:
    """412 in the API's error shape."""
    body = {"error": {"code": "precondition_failed", "message": message, "field": "If-Match"}}
    return view.json(body, status=412)


async def submit_write(
    view: View,
    request: WriteRequest,
    error: ErrorFn,
    *,
    extra: Callable[[Subscription], dict[str, Any]] | None = None,
) -> Response:
    """Send ``request`` to its owner, wait for the decision and answer as the API does:
    the stored subscription with its ``ETag``, 202 ``pending`` when slow, or the refusal."""
    runtime = view.app.runtime
    result, visible = await runtime.writes.submit(request, _WRITE_TIMEOUT)
    if result is None:
        return view.json({"id": request.endpoint_id, "pending": True}, status=202)
    if not result.ok:
        return _refusal(view, result, error)
    if request.op == "delete":
        body = {"id": request.endpoint_id, "deleted": True}
        return view.json({**body, "pending": True} if not visible else body, status=200)
    sub = runtime.registry.get(request.endpoint_id)
    if sub is None or sub.version != result.version:
        # Not applied here yet (or already changed again): say what was decided.
        body = {"id": request.endpoint_id, "version": result.version, "pending": True}
        return view.json(body, status=202, headers={ETAG: f'"{result.version}"'})
    body = {**sub.to_dict(include_secrets=False), **(extra(sub) if extra else {})}
    return view.json(body, status=result.status, headers=etag(sub))


def _refusal(view: View, result: WriteResult, error: ErrorFn) -> Response:
    if result.status == 412:
        return precondition_failed(view, result.message)
    if result.field is not None:
        return error(view, result.status, result.message, field=result.field)
    return error(view, result.status, result.message)
