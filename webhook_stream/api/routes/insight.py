"""Read routes for the console: who am I, dead letters, per-endpoint counters, overview.

All of them answer from the status stores' indexes and minute counts
(:mod:`webhook_stream.status.queries`), never by reading a topic: each worker answers for
the status partitions it owns and the one asked merges the shares
(:mod:`webhook_stream.status.routing`). All are scoped: a tenant token sees only its
tenant's dead letters, endpoints and counts. Also here: the helpers every status route
uses to forward a request and to answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from faust.web import Request, Response, View

from webhook_stream.api.errors import ApiError
from webhook_stream.api.pagination import encode_cursor, parse_page
from webhook_stream.api.tenancy.auth import Principal, authorized, principal_of
from webhook_stream.failures.replay import ReplayError, parse_time
from webhook_stream.status.routing import FORWARDED, Answer, StatusRouter

__all__ = [
    "MAX_STATS_IDS",
    "forwarding",
    "register_insight_views",
    "router_of",
    "status_response",
    "time_param",
]

#: Endpoints per ``GET /endpoint-stats`` (a page of the endpoint list), and the length of
#: ``ids`` (the whole request line must stay under aiohttp's 8 KiB).
MAX_STATS_IDS = 100
MAX_IDS_LENGTH = 4000
#: A dead-letter cursor once decoded: time (ms, 15 digits) | delivery id.
_DEAD_KEY = re.compile(r"\d{15}\|.+\Z", re.S)
#: Endpoint ids (their pattern) separated by commas.
_IDS = re.compile(r"[A-Za-z0-9_.:,-]*\Z")


def time_param(query: Mapping[str, str], name: str) -> int | None:
    """``since``/``until`` as Unix ms: ISO-8601 or an age (``2h``); 400 naming it otherwise."""
    text = query.get(name)
    if text is None or text == "":
        return None
    try:
        seconds = parse_time(text)
    except (ReplayError, ValueError, OverflowError):
        raise ApiError("invalid", "must be ISO-8601 or an age such as 2h", name) from None
    if not math.isfinite(seconds) or not -1e11 < seconds < 1e11:
        raise ApiError("invalid", "is out of range", name)
    return int(seconds * 1000)


def router_of(runtime: Any) -> StatusRouter:
    """The worker's status router; 503 while the worker is still starting."""
    router = runtime.status
    if router is None:
        raise ApiError("unavailable", "the worker is starting")
    return router


def forwarding(request: Request) -> dict[str, Any]:
    """What a status query needs to be forwarded to the owner of its partition."""
    return {
        "forwarded": request.headers.get(FORWARDED) == "1",
        "path_qs": request.url.path_qs,
        "auth": request.headers.get("Authorization", ""),
    }


def status_response(view: View, request: Request, answer: Answer) -> Response:
    """The router's answer; a page's ``next`` is made a cursor where the request came in."""
    body = answer.body
    if answer.status == 200 and body.get("next") and request.headers.get(FORWARDED) != "1":
        body = {**body, "next": encode_cursor(body["next"])}
    return view.json(body, status=answer.status, headers=answer.headers or None)


def _tenant_scope(principal: Principal, query: Mapping[str, str]) -> tuple[str | None, bool]:
    """(tenant, scoped): a tenant token is always scoped to its own; the admin may filter."""
    tenant = query.get("tenant_id")
    if tenant is not None:
        principal.check_tenant(tenant)
        return tenant, True
    if principal.is_admin:
        return None, False
    return principal.tenant_id, True


def _scope_of(sub: Any) -> list[str]:
    """``[endpoint id, incarnation]`` as the status store keys an endpoint's history."""
    return [sub.id, sub.incarnation or ""]


#: Disabled endpoints listed by GET /overview (the rest are counted).
DISABLED_LISTED = 100


def disabled_endpoints(subs: Iterable[Any], tenant: str | None, scoped: bool) -> dict[str, Any]:
    """The overview's disabled endpoints (the caller's tenant, or all): the first by id."""
    found = sorted(
        (s for s in subs if s.disabled and (not scoped or s.tenant_id == tenant)),
        key=lambda s: s.id,
    )
    listed = [{"id": s.id, "tenant_id": s.tenant_id} for s in found]
    return {"disabled_endpoints": listed[:DISABLED_LISTED], "disabled_total": len(found)}


def register_insight_views(app: Any) -> None:
    def tenant_scopes(tenant: str | None) -> list[list[str]]:
        return [_scope_of(s) for s in app.runtime.registry.index.all() if s.tenant_id == tenant]

    def visible_sub(request: Request, endpoint_id: str) -> Any:
        sub = app.runtime.registry.get(endpoint_id)
        if sub is None or not principal_of(request).sees(sub.tenant_id):
            return None
        return sub

    @app.page("/whoami")
    class WhoAmI(View):
        @authorized
        async def get(self, request: Request) -> Response:
            principal = principal_of(request)
            return self.json({"admin": principal.is_admin, "tenant_id": principal.tenant_id})

    @app.page("/deadletters")
    class DeadLetters(View):
        @authorized
        async def get(self, request: Request) -> Response:
            query = request.query
            limit, after = parse_page(query)
            tenant, scoped = _tenant_scope(principal_of(request), query)
            endpoint = query.get("endpoint_id") or None
            sub = None if endpoint is None else visible_sub(request, endpoint)
            if endpoint is not None and sub is None:
                raise ApiError("not_found", f"no subscription {endpoint!r}", "endpoint_id")
            # The current incarnations only: a deleted endpoint's dead letters (or those of
            # an earlier endpoint of the same id) are in the admin's unfiltered list only.
            scopes = [_scope_of(sub)] if sub is not None else None
            if scopes is None and scoped:
                scopes = tenant_scopes(tenant)
            wanted = {
                "endpoint_id": endpoint,
                "scopes": scopes,
                "tenant_id": tenant,
                "scoped": scoped,
                "since_ms": time_param(query, "since"),
                "until_ms": time_param(query, "until"),
                "limit": limit,
                "after": after,
            }
            if after is not None and not _DEAD_KEY.match(after):
                raise ApiError("invalid", "is not a cursor from a previous page's 'next'", "after")
            answer = await router_of(app.runtime).deadletters(wanted, **forwarding(request))
            return status_response(self, request, answer)

    @app.page("/endpoint-stats")
    class EndpointStats(View):
        @authorized
        async def get(self, request: Request) -> Response:
            raw = request.query.get("ids", "")
            ids = [i for i in dict.fromkeys(raw.split(",")) if i]
            if len(ids) > MAX_STATS_IDS or len(raw) > MAX_IDS_LENGTH or not _IDS.match(raw):
                raise ApiError(
                    "invalid",
                    f"at most {MAX_STATS_IDS} endpoint ids, comma-separated, "
                    f"{MAX_IDS_LENGTH} characters",
                    "ids",
                )
            # Another tenant's (or a missing) endpoint is left out, as if it did not exist;
            # each one's counters are of its current incarnation.
            subs = [s for s in (visible_sub(request, i) for i in ids) if s is not None]
            if not subs:
                return self.json({"items": [], "next": None})
            scopes = [_scope_of(s) for s in subs]
            answer = await router_of(app.runtime).endpoint_stats(scopes, **forwarding(request))
            return status_response(self, request, answer)

    @app.page("/subscriptions/{endpoint_id}/operational-events")
    class OperationalEvents(View):
        @authorized
        async def get(self, request: Request, endpoint_id: str) -> Response:
            sub = visible_sub(request, endpoint_id)
            if sub is None:
                raise ApiError("not_found", f"no subscription {endpoint_id!r}")
            answer = await router_of(app.runtime).operational(
                endpoint_id, incarnation=sub.incarnation or "", **forwarding(request)
            )
            return status_response(self, request, answer)

    @app.page("/overview")
    class Overview(View):
        @authorized
        async def get(self, request: Request) -> Response:
            tenant, scoped = _tenant_scope(principal_of(request), request.query)
            scopes = tenant_scopes(tenant) if scoped else None
            answer = await router_of(app.runtime).overview(scopes, **forwarding(request))
            if answer.status == 200 and "share" not in answer.body:
                disabled = disabled_endpoints(app.runtime.registry.index.all(), tenant, scoped)
                answer = Answer(200, {"tenant_id": tenant, **answer.body, **disabled})
            return status_response(self, request, answer)
