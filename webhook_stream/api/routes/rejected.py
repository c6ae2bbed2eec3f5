"""``GET /rejected``: input that went to ``webhooks.rejected``, with the reason, where it
came from and a preview, for the person who produced it (no Kafka client needed).

Answered from the status stores like the dead letters (:mod:`webhook_stream.status.rejected`,
each worker answers for its partitions, the one asked merges the shares). Filters:
``topic`` (the source topic), ``reason`` (the code before the first colon, e.g.
``unknown_schema``), ``since``/``until`` (ISO-8601 or an age such as ``2h``), paged with
``limit``/``after``. A tenant token sees only the records attributed to its tenant; the
admin sees all, or one tenant's with ``tenant_id``.
"""

from __future__ import annotations

import re
from typing import Any

from faust.web import Request, Response, View

from webhook_stream.api.errors import ApiError
from webhook_stream.api.pagination import parse_page
from webhook_stream.api.routes.insight import forwarding, router_of, status_response, time_param
from webhook_stream.api.tenancy.auth import authorized, principal_of

__all__ = ["register_rejected_views"]

#: A rejected-page cursor once decoded: time (ms) | partition | offset.
_KEY = re.compile(r"\d{15}\|\d{5}\|\d{20}\Z")
_REASON = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")
_MAX_TOPIC = 249  # Kafka's limit on a topic name


def rejected_query(request: Request) -> dict[str, Any]:
    """The validated filters and page of a ``GET /rejected``; 400 naming the field."""
    query = request.query
    limit, after = parse_page(query)
    if after is not None and not _KEY.match(after):
        raise ApiError("invalid", "is not a cursor from a previous page's 'next'", "after")
    topic = query.get("topic") or None
    if topic is not None and len(topic) > _MAX_TOPIC:
        raise ApiError("invalid", f"is longer than {_MAX_TOPIC} characters", "topic")
    reason = query.get("reason") or None
    if reason is not None and not _REASON.match(reason):
        raise ApiError("invalid", "must be a reason code such as unknown_schema", "reason")
    principal = principal_of(request)
    tenant = query.get("tenant_id")
    if tenant is not None:
        principal.check_tenant(tenant)
        scoped = True
    else:
        scoped = not principal.is_admin
        tenant = None if principal.is_admin else principal.tenant_id
    return {
        "tenant_id": tenant,
        "scoped": scoped,
        "topic": topic,
        "reason": reason,
        "since_ms": time_param(query, "since"),
        "until_ms": time_param(query, "until"),
        "limit": limit,
        "after": after,
    }


def register_rejected_views(app: Any) -> None:
    @app.page("/rejected")
    class Rejected(View):
        @authorized
        async def get(self, request: Request) -> Response:
            wanted = rejected_query(request)
            answer = await router_of(app.runtime).rejected(wanted, **forwarding(request))
            return status_response(self, request, answer)
