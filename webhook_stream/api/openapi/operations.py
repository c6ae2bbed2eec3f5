"""The :class:`Operation` record of the OpenAPI document, and the console's operations.

:mod:`.document` lists the management routes; the routes the console reads
(:mod:`..routes.insight`, :mod:`..console.page`) are described here, beside the shared
query parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from webhook_stream.api.openapi.schemas import PAGE_PARAMETERS

__all__ = ["ATTEMPT_PARAMETERS", "CONSOLE_OPERATIONS", "Operation", "query_param"]

#: Who may call: ``open`` (no token), ``any`` (admin or tenant token), ``admin``.
Access = str


@dataclass(frozen=True)
class Operation:
    path: str
    method: str
    summary: str
    access: Access
    responses: dict[int, tuple[str, str | None]]
    body: str | None = None
    parameters: list[dict[str, Any]] = field(default_factory=list)
    description: str = ""
    tag: str = "subscriptions"
    #: Media types of the responses without a schema, comma-separated.
    content_type: str = "application/json"
    #: Statuses whose response carries the subscription's ``ETag`` (its version).
    etag: tuple[int, ...] = ()
    #: Takes ``If-Match`` (a conditional write: 412 when stale).
    if_match: bool = False


def query_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_TIME = {"type": "string", "maxLength": 64}

#: The attempt-log query of ``GET /subscriptions/{endpoint_id}/attempts``.
ATTEMPT_PARAMETERS = [
    query_param(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
        "Attempts per page.",
    ),
    query_param("after", {"type": "string"}, "Opaque cursor: the previous page's `next`."),
    query_param(
        "status",
        {"type": "string", "enum": ["succeeded", "retrying", "failed"]},
        "Only attempts with this outcome (`failed`: the last, dead-lettering one).",
    ),
    query_param("since", _TIME, "Only attempts at or after this time: ISO-8601 or an age (`2h`)."),
    query_param("until", _TIME, "Only attempts at or before this time: ISO-8601 or an age."),
    query_param("event_type", {"type": "string"}, "Only attempts of this event type."),
]


CONSOLE_OPERATIONS: list[Operation] = [
    Operation(
        "/deadletters",
        "GET",
        "Deliveries now dead-lettered",
        "any",
        {200: ("One page, newest first", "DeadLetterList")},
        parameters=[
            query_param("endpoint_id", {"type": "string"}, "Only this endpoint's."),
            query_param(
                "tenant_id",
                {"type": "string"},
                "Only this tenant's (admin); a tenant token may name only its own.",
            ),
            query_param("since", _TIME, "Dead-lettered at or after: ISO-8601 or an age (`2h`)."),
            query_param("until", _TIME, "Dead-lettered at or before: ISO-8601 or an age."),
            *PAGE_PARAMETERS,
        ],
        tag="deliveries",
        description="From the status stores' index of dead-lettered deliveries (kept for "
        "`STATUS_RETENTION`), not a scan of `webhooks.deadletter`. A replayed one leaves the list. "
        "A tenant token lists only its own tenant's.",
    ),
    Operation(
        "/rejected",
        "GET",
        "Input records refused (webhooks.rejected), with the reason and a preview",
        "any",
        {200: ("One page, newest first", "RejectedList")},
        parameters=[
            query_param("topic", {"type": "string", "maxLength": 249}, "Only from this topic."),
            query_param(
                "reason",
                {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$"},
                "Only with this reason code (`unknown_schema`, `invalid_json`, ...).",
            ),
            query_param(
                "tenant_id",
                {"type": "string"},
                "Only this tenant's (admin); a tenant token may name only its own.",
            ),
            query_param("since", _TIME, "Rejected at or after: ISO-8601 or an age (`2h`)."),
            query_param("until", _TIME, "Rejected at or before: ISO-8601 or an age."),
            *PAGE_PARAMETERS,
        ],
        tag="deliveries",
        description="From the status stores (kept for `STATUS_RETENTION`, at most 10,000 per "
        "partition), not a scan of `webhooks.rejected`. A tenant token lists only the records "
        "attributed to its tenant (a `tenant_id` in the value, or a `ce_tenantid` header). "
        "Header values are never shown, only their names.",
    ),
    Operation(
        "/endpoint-stats",
        "GET",
        "Attempts of the last hour and the last attempt, per endpoint",
        "any",
        {200: ("One item per visible endpoint asked for", "EndpointStatsList")},
        parameters=[
            query_param(
                "ids",
                {"type": "string", "maxLength": 4000, "pattern": "^[A-Za-z0-9_.:,-]*$"},
                "Comma-separated endpoint ids (at most 100); another tenant's are left out.",
            )
        ],
        description="From per-endpoint minute counts in the status stores (the last hour).",
    ),
    Operation(
        "/subscriptions/{endpoint_id}/operational-events",
        "GET",
        "The endpoint's recent operational events",
        "any",
        {200: ("Up to 100, newest first", "OperationalEventList")},
        description="From the status stores (kept for `STATUS_RETENTION`): what "
        "webhooks.operational said about this endpoint (this incarnation).",
    ),
    Operation(
        "/overview",
        "GET",
        "Deliveries per minute over the last hour, failures, dead-letter depth",
        "any",
        {200: ("Counters of the caller's tenant (admin: all)", "Overview")},
        parameters=[
            query_param(
                "tenant_id",
                {"type": "string"},
                "Only this tenant's (admin); a tenant token may name only its own.",
            )
        ],
        tag="deliveries",
    ),
    Operation(
        "/whoami",
        "GET",
        "The caller: admin, or which tenant",
        "any",
        {200: ("The principal of the token", "WhoAmI")},
        tag="tenants",
    ),
    Operation(
        "/ui/",
        "GET",
        "The web console (HTML); sign in with `/ui/#token=<token>`",
        "open",
        {200: ("An HTML page", None)},
        tag="operations",
        content_type="text/html",
    ),
    Operation(
        "/ui/{asset}",
        "GET",
        "Assets of the console",
        "open",
        {200: ("console.js or console.css", None), 404: ("No such asset", "Error")},
        tag="operations",
        content_type="application/javascript,text/css",
    ),
]
