"""The write half of ``/subscriptions``: versions, ``ETag``/``If-Match``, decided writes.

Every change goes through :class:`~webhook_stream.subscriptions.writes.WriteClient`: the
owner of the endpoint id decides it against the current version, so two workers racing a
create give one 201 and one 409, and a stale ``If-Match`` gives 412 wherever it lands.
The checks made here against this worker's view only answer early; the owner's are the
ones that count (it also merges a PATCH, resolving masked header values, and checks the
tenant of a tenant token's write).
"""

from __future__ import annotations

import re
from typing import Any

from faust.web import Request, Response, View

from webhook_stream.api.errors import ApiError, code_for
from webhook_stream.api.host import host
from webhook_stream.core.errors import InvalidSubscription, WriteRefused
from webhook_stream.subscriptions.model import Subscription
from webhook_stream.subscriptions.writes import WriteRequest

__all__ = ["ETAG", "etag", "if_match", "precondition_failed", "submit_write"]

ETAG = "ETag"
#: How long a write waits for its decision and for this worker to apply it (else 202).
WRITE_TIMEOUT = 10.0
_ETAG_VALUE = re.compile(r'\s*(?:W/)?"?(\d{1,16})"?\s*')


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


def precondition_failed(endpoint_id: str, current: int, wanted: int) -> ApiError:
    """The 412 of a stale ``If-Match``, in the API's error shape."""
    message = f"subscription {endpoint_id!r} is at version {current}, not {wanted}"
    return ApiError("precondition_failed", message, "If-Match")


async def submit_write(
    view: View,
    request: WriteRequest,
    *,
    shown: dict[str, Any] | None = None,
    expected: Subscription | None = None,
) -> Response:
    """Send ``request`` to its owner, wait for the decision and answer as the API does:
    the stored subscription with its ``ETag`` (and ``shown``: a secret handed out once),
    202 ``pending`` when slow, or the refusal (raised as :class:`ApiError`).

    ``expected`` is what a slow create or rotation shows in its 202 (the secret must be
    shown even then); a slow PATCH shows only its id and version.
    """
    runtime = host(view.app).runtime
    try:
        result, visible = await runtime.writes.submit(request, WRITE_TIMEOUT)
    except WriteRefused as exc:
        raise ApiError(code_for(exc.status), exc.message, exc.field) from None
    if result is not None and not result.ok:
        raise ApiError(code_for(result.status), result.message, result.field)
    decided = None if result is None else result.version
    if request.op == "delete":
        body: dict[str, Any] = {"id": request.endpoint_id, "deleted": True}
        if result is None or not visible:
            return view.json({**body, "pending": True}, status=202)
        return view.json(body)
    sub = runtime.registry.get(request.endpoint_id)
    if result is not None and visible and sub is not None and sub.version >= (decided or 0):
        body = {**sub.to_dict(include_secrets=False), **(shown or {})}
        return view.json(body, status=result.status, headers=etag(sub))
    # No decision within the timeout (no owner yet, a slow broker), or decided but not yet
    # applied here: accepted; the write is decided once an owner takes it.
    headers = {} if decided is None else {ETAG: f'"{decided}"'}
    if expected is None:
        body = {"id": request.endpoint_id, "pending": True}
    else:
        body = {**expected.to_dict(include_secrets=False), **(shown or {}), "pending": True}
    if decided is not None:
        body["version"] = decided
    return view.json(body, status=202, headers=headers)
