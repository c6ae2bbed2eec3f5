"""Who is asking: the admin token or a tenant token, and what each may see.

The admin token (``WEBHOOK_STREAM_API_TOKEN``) sees every tenant. A tenant token
(:mod:`.tokenstore`) sees only its tenant: another tenant's objects answer 404 (their
existence is never revealed), naming another tenant answers 403, and admin-only routes
answer 403. No configured admin token means the management API refuses, tenant tokens
included: a deployment without an admin cannot have issued any.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

import orjson
from aiohttp import web
from faust.web import Request, Response, View

from webhook_stream.api.errors import ApiError, error_response
from webhook_stream.api.host import aiohttp_request, host
from webhook_stream.core.errors import InvalidSubscription
from webhook_stream.http.urls import CONTROL
from webhook_stream.subscriptions.tenant_ids import tenant_id_problem

__all__ = [
    "ADMIN",
    "Principal",
    "admin_only",
    "authorized",
    "check_tenant_id",
    "json_body",
    "principal_of",
]

Handler = Callable[..., Awaitable[Response]]

log = logging.getLogger(__name__)

_PRINCIPAL = "webhook_stream.principal"
#: (handler, exception type) whose traceback was logged already.
_FAILED: set[tuple[str, str]] = set()
#: What a bearer token may hold: visible ASCII (RFC 6750's b64token, and any admin token
#: an operator can type); anything else is refused before it is compared or looked up.
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]{1,4096}")


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: ``tenant_id`` None is the admin."""

    tenant_id: str | None = None
    token_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.tenant_id is None

    def sees(self, tenant_id: str | None) -> bool:
        """Whether an object of ``tenant_id`` is visible (a tenant never sees tenant-less ones)."""
        return self.is_admin or tenant_id == self.tenant_id

    def require_admin(self) -> None:
        if not self.is_admin:
            raise ApiError("forbidden", "this route needs the admin token")

    def check_tenant(self, tenant_id: object, field: str = "tenant_id") -> None:
        """403 when a tenant token names another tenant (in a body, query or path)."""
        if not self.is_admin and tenant_id != self.tenant_id:
            raise ApiError("forbidden", "a tenant token can only name its own tenant", field)


ADMIN = Principal()


def principal_of(request: Request) -> Principal:
    """The principal :func:`authorized` found for ``request``."""
    principal: Principal = aiohttp_request(request)[_PRINCIPAL]
    return principal


def _authenticate(view: View, request: Request) -> Principal:
    admin = host(view.app).ws_settings.api_token
    if not admin:
        raise ApiError(
            "api_disabled",
            "the management API is disabled: set WEBHOOK_STREAM_API_TOKEN on the worker",
        )
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        raise ApiError("unauthorized", "missing bearer token (Authorization: Bearer <token>)")
    if not _TOKEN_CHARS.fullmatch(value):
        # Never echoed: it may be a token with a typo.
        raise ApiError("unauthorized", "malformed bearer token", "Authorization")
    if hmac.compare_digest(value.encode(), admin.encode()):
        return ADMIN
    tokens = host(view.app).runtime.tokens
    found = tokens.authenticate(value, time.time())
    if found is not None:
        return Principal(tenant_id=found.tenant_id, token_id=found.id)
    if not tokens.ready.is_set():
        raise ApiError("unavailable", "tenant tokens are still loading; retry shortly")
    raise ApiError("unauthorized", "wrong, revoked or expired bearer token")


#: Methods that only read: never counted against a tenant's write quota.
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def _check_quota(view: View, request: Request, tenant_id: str) -> None:
    """429 when a tenant token's writes are over its share (:mod:`.quota`)."""
    if request.method in _READS:
        return
    wait = host(view.app).ws_write_quota.take(tenant_id, time.monotonic())
    if wait > 0:
        raise ApiError(
            "rate_limited",
            "too many writes by this tenant; retry after the time in Retry-After",
            retry_after=max(1, math.ceil(wait)),
        )


def authorized(handler: Handler, *, admin: bool = False) -> Handler:
    """Authenticate (constant-time for the admin token), refuse a tenant token on an
    ``admin`` route (403) or over its write quota (429), then run ``handler``.

    The principal is on the request (:func:`principal_of`); :class:`ApiError` and
    :class:`InvalidSubscription` raised by the handler become the one error shape.
    """

    @wraps(handler)
    async def check(view: View, request: Request, **kwargs: Any) -> Response:
        try:
            principal = aiohttp_request(request)[_PRINCIPAL] = _authenticate(view, request)
            if principal.tenant_id is not None:
                if admin:
                    principal.require_admin()
                _check_quota(view, request, principal.tenant_id)
            return await handler(view, request, **kwargs)
        except ApiError as exc:
            return error_response(view, exc)
        except InvalidSubscription as exc:
            return error_response(view, ApiError("invalid", exc.message, exc.field))
        except (asyncio.CancelledError, web.HTTPException):
            raise
        except Exception as exc:
            # A bug, not the client's fault: still the one error shape, and a client that
            # finds it cannot fill the log (the traceback once per route and kind).
            seen = (handler.__qualname__, type(exc).__name__)
            if seen in _FAILED:
                log.error("%s failed again: %s", seen[0], seen[1])
            else:
                _FAILED.add(seen)
                log.exception("%s failed", seen[0])
            return error_response(view, ApiError("internal", "internal error"))

    return check


def admin_only(handler: Handler) -> Handler:
    """:func:`authorized`, and 403 for a tenant token."""
    return authorized(handler, admin=True)


async def json_body(request: Request, timeout: float = 20.0) -> Any:
    """The decoded JSON body (``{}`` when empty); 400 naming ``body`` when it is not JSON,
    413 when it is too large, 408 when it does not arrive within ``timeout`` seconds."""
    try:
        raw = await asyncio.wait_for(request.read(), timeout)
    except TimeoutError:
        raise ApiError("request_timeout", "the body did not arrive in time", "body") from None
    except web.HTTPRequestEntityTooLarge:
        raise ApiError("too_large", "the body is too large", "body") from None
    try:
        return orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise InvalidSubscription("body", f"not valid JSON ({exc.msg})") from None


def check_tenant_id(value: object, field: str = "tenant_id") -> str:
    """A tenant id as subscriptions accept it: 1-128 characters, no control or invisible
    characters, NFC (:func:`~webhook_stream.subscriptions.tenant_ids.tenant_id_problem`)."""
    if not isinstance(value, str) or not 1 <= len(value) <= 128 or CONTROL.search(value):
        raise ApiError("invalid", "must be 1-128 characters without control characters", field)
    problem = tenant_id_problem(value)
    if problem is not None:
        raise ApiError("invalid", problem, field)
    return value
