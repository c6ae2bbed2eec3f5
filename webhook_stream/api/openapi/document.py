"""The OpenAPI 3.1 document, built from the registered routes (``GET /openapi.json``).

:data:`OPERATIONS` describes each operation; :func:`build_document` takes the server's
actual route table and refuses a route that is not described, or a description without
a route, so the document cannot drift from the code (``tests/api/test_openapi.py`` also
validates it with ``openapi-spec-validator`` and checks responses against it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from webhook_stream.api.errors import WWW_AUTHENTICATE
from webhook_stream.api.openapi.event_type_operations import EVENT_TYPE_OPERATIONS
from webhook_stream.api.openapi.operations import (
    ATTEMPT_PARAMETERS,
    CONSOLE_OPERATIONS,
    Operation,
)
from webhook_stream.api.openapi.operations import query_param as _q
from webhook_stream.api.openapi.schemas import PAGE_PARAMETERS, schemas
from webhook_stream.api.openapi.webhooks import webhook_schemas, webhooks
from webhook_stream.core.errors import WebhookStreamError
from webhook_stream.core.version import __version__

__all__ = ["OPERATIONS", "Operation", "UndocumentedRoute", "build_document", "registered_routes"]


class UndocumentedRoute(WebhookStreamError):
    """A registered route has no :class:`Operation`, or an operation has no route."""


_S = "Subscription"
_E = "endpoint"

_IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": 'Only if the subscription is still at this version: its `ETag` (`"3"`). '
    "Stale: 412 and nothing is written. `*` or absent: unconditional. Anything else: 400.",
}
_STALE = (
    "`If-Match` names another version than the current one; nothing was written",
    "Error",
)
_ETAG_HEADER = {
    "description": 'The subscription\'s `version`, quoted (`"3"`): send it as `If-Match`.',
    "schema": {"type": "string", "pattern": '^"[0-9]+"$'},
}
OPERATIONS: list[Operation] = [
    Operation(
        "/",
        "GET",
        'Faust\'s index: {"status": "OK"}',
        "open",
        {200: ("Always OK while the web server runs", "Index")},
        tag="operations",
    ),
    Operation(
        "/health",
        "GET",
        "Liveness and readiness",
        "open",
        {200: ("Ready", "Health"), 503: ("Starting", "Health")},
        tag="operations",
    ),
    Operation(
        "/metrics",
        "GET",
        "Prometheus metrics",
        "open",
        {200: ("Prometheus text exposition", None)},
        tag="operations",
        content_type="text/plain",
    ),
    Operation(
        "/openapi.json",
        "GET",
        "This document",
        "open",
        {200: ("The OpenAPI 3.1 document", None)},
        tag="operations",
    ),
    Operation(
        "/docs",
        "GET",
        "The document rendered for people (Swagger UI)",
        "open",
        {200: ("An HTML page", None)},
        tag="operations",
        content_type="text/html",
    ),
    Operation(
        "/docs/{asset}",
        "GET",
        "Assets of the /docs page",
        "open",
        {200: ("A file of the vendored viewer", None), 404: ("No such asset", "Error")},
        tag="operations",
        content_type="application/javascript,text/css,text/plain",
    ),
    Operation(
        "/subscriptions",
        "GET",
        "List subscriptions",
        "any",
        {200: ("One page, ordered by id", "SubscriptionList")},
        parameters=[
            _q(
                "tenant_id",
                {"type": "string"},
                "Only this tenant's (admin); a tenant token may name only its own.",
            ),
            *PAGE_PARAMETERS,
        ],
        description="A tenant token lists only its own tenant's endpoints.",
    ),
    Operation(
        "/subscriptions",
        "POST",
        "Create a subscription",
        "any",
        {
            201: ("Created; `secret` is shown this once", "SubscriptionWithSecret"),
            202: ("Accepted, not yet decided or applied here", "SubscriptionWithSecret"),
            409: (
                "The id exists (decided across workers: one of two racing creates), or the "
                "tenant has MAX_ENDPOINTS_PER_TENANT endpoints (`limit_exceeded`)",
                "Error",
            ),
        },
        body="SubscriptionCreate",
        description="A tenant token creates in its own tenant (filled in when omitted; "
        "another tenant is 403). The new subscription is at `version` 1 or, after a "
        "delete of the same id, the next version.",
        etag=(201,),
    ),
    Operation(
        "/subscriptions/{endpoint_id}",
        "GET",
        f"Read a {_S.lower()}",
        "any",
        {200: ("The endpoint, without secrets", _S)},
        etag=(200,),
    ),
    Operation(
        "/subscriptions/{endpoint_id}",
        "PATCH",
        f"Change a {_S.lower()}",
        "any",
        {
            200: ("Changed; the new `version` is in the body and the `ETag`", "SubscriptionStored"),
            202: ("Accepted, not yet decided or applied here", "Pending"),
            412: _STALE,
        },
        body="SubscriptionPatch",
        description="`secret`, `created_at`, `updated_at`, `version` and `tenant_id` cannot "
        "be changed (400 naming the field): to move an endpoint, delete and create it. The "
        "fields sent are merged into the *current* version (never into an older copy), so "
        "two PATCHes of different fields both take effect; with `If-Match` the PATCH "
        "applies only to that version. A header value sent back masked, exactly as read, "
        "keeps the current value.",
        etag=(200,),
        if_match=True,
    ),
    Operation(
        "/subscriptions/{endpoint_id}",
        "DELETE",
        f"Delete a {_S.lower()}",
        "any",
        {200: ("Deleted", "Deleted"), 202: ("Accepted", "Deleted"), 412: _STALE},
        if_match=True,
    ),
    Operation(
        "/subscriptions/{endpoint_id}/rotate-secret",
        "POST",
        "Rotate the signing secret",
        "any",
        {
            200: ("The new secret, shown once", "RotatedSecret"),
            202: ("Accepted, not yet decided or applied here", "RotatedSecret"),
            412: _STALE,
        },
        description="The old secret keeps signing for the grace period; under `ed25519` or "
        "`both` a new key pair too (its `public_key` in the answer), the old private key "
        "signing alongside for the same period.",
        etag=(200,),
        if_match=True,
    ),
    Operation(
        "/subscriptions/{endpoint_id}/test",
        "POST",
        "Send a test event",
        "any",
        {202: ("Queued", "TestEvent")},
        description="Sends the first example of a catalogued, not deprecated event type the "
        "endpoint subscribes to (exact names first; `GET /event-types`), else a "
        "`webhook.test` event. Signed and delivered like any event; filters do not apply.",
    ),
    Operation(
        "/subscriptions/{endpoint_id}/attempts",
        "GET",
        "The attempt log",
        "any",
        {200: ("One page, newest first", "AttemptList")},
        parameters=ATTEMPT_PARAMETERS,
    ),
    Operation(
        "/deliveries/{delivery_id}",
        "GET",
        "Status of one delivery",
        "any",
        {200: ("The delivery and its attempts", "DeliveryStatus")},
        parameters=[
            _q(
                "endpoint_id",
                {"type": "string"},
                "The delivery's endpoint, if known: asks the owner of its status partition "
                "directly instead of every worker.",
            )
        ],
        tag="deliveries",
    ),
    Operation(
        "/replay",
        "POST",
        "Replay dead letters or a time range of events",
        "any",
        {200: ("What was (or, on a dry run, would be) re-queued", "ReplaySummary")},
        body="ReplayRequest",
        tag="deliveries",
        description="A tenant token replays only to its own endpoints; naming another "
        "tenant is 403, another tenant's endpoint 404.",
    ),
    Operation(
        "/tenants/{tenant_id}/tokens",
        "GET",
        "List a tenant's tokens",
        "admin",
        {200: ("One page, ordered by id; never the token", "TokenList")},
        parameters=PAGE_PARAMETERS,
        tag="tenants",
    ),
    Operation(
        "/tenants/{tenant_id}/tokens",
        "POST",
        "Issue a tenant token",
        "admin",
        {
            201: ("Issued; `token` is shown this once", "TokenCreated"),
            202: ("Accepted, not yet applied", "TokenCreated"),
        },
        body="TokenCreate",
        tag="tenants",
        description="Only the SHA-256 of the token is stored.",
    ),
    Operation(
        "/tenants/{tenant_id}/tokens/{token_id}",
        "DELETE",
        "Revoke a tenant token",
        "admin",
        {200: ("Revoked on every worker within seconds", "Revoked"), 202: ("Accepted", "Revoked")},
        tag="tenants",
    ),
    *CONSOLE_OPERATIONS,
    *EVENT_TYPE_OPERATIONS,
]

_PATH_PARAMS = {
    "endpoint_id": "The endpoint (subscription) id.",
    "delivery_id": "The delivery id (the `webhook-id` header receivers get).",
    "tenant_id": "The tenant.",
    "token_id": "The token id (`tok_<hex>`), not the token.",
    "asset": "A file name of the viewer.",
    "name": "The event type name (`order.created`).",
}

_ERRORS = {
    400: "Invalid input; `error.field` names it",
    401: "Missing, wrong, revoked or expired token; or no admin token configured",
    403: "A tenant token on an admin-only route, or naming another tenant",
    404: "No such object, or another tenant's",
    429: "A tenant token's writes are over `TENANT_WRITES_PER_S` on this worker; retry "
    "after `Retry-After` seconds",
    503: "Tenant tokens or the status view are (re)loading, or a subscription write could "
    "not be decided now; retry",
}


def _error_headers(status: int) -> dict[str, Any]:
    """The headers every answer of ``status`` carries (a 401's challenge, a 429's wait)."""
    if status == 429:
        wait = {"type": "string", "pattern": "^[0-9]+$"}
        return {"headers": {"Retry-After": {"required": True, "schema": wait}}}
    if status == 401:
        challenge = {"type": "string", "const": WWW_AUTHENTICATE}
        return {"headers": {"WWW-Authenticate": {"required": True, "schema": challenge}}}
    return {}


def registered_routes(router: Any) -> set[tuple[str, str]]:
    """``(path, METHOD)`` of every route of an aiohttp router."""
    out = set()
    for route in router.routes():
        path = route.resource.canonical if route.resource is not None else None
        if path and route.method not in ("HEAD", "OPTIONS", "*"):
            out.add((path, route.method))
    return out


def _operation(op: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, (text, schema) in sorted(op.responses.items()):
        if schema is None:
            types = op.content_type.split(",")
            responses[str(status)] = {"description": text, "content": {t: {} for t in types}}
        else:
            ref = {"$ref": f"#/components/schemas/{schema}"}
            responses[str(status)] = {
                "description": text,
                "content": {"application/json": {"schema": ref}},
            }
        if status in op.etag:
            responses[str(status)]["headers"] = {"ETag": {**_ETAG_HEADER, "required": True}}
    for status in [] if op.access == "open" else _ERRORS:
        if status == 429 and (op.access == "admin" or op.method.upper() in ("GET", "HEAD")):
            continue
        responses.setdefault(str(status), {"$ref": f"#/components/responses/E{status}"})
    params = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "description": _PATH_PARAMS[name],
        }
        for name in _path_names(op.path)
    ]
    out: dict[str, Any] = {
        "operationId": _operation_id(op),
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": [*params, *op.parameters, *([_IF_MATCH] if op.if_match else [])],
        "responses": responses,
        "security": [] if op.access == "open" else [{"bearer": []}],
    }
    access = {"any": "Admin or tenant token.", "admin": "Admin token only (tenant tokens: 403)."}
    text = " ".join(t for t in (access.get(op.access, ""), op.description) if t)
    if text:
        out["description"] = text
    if op.body is not None:
        ref = {"$ref": f"#/components/schemas/{op.body}"}
        out["requestBody"] = {
            "required": op.method == "POST" and op.body != "TokenCreate",
            "content": {"application/json": {"schema": ref}},
        }
    if not out["parameters"]:
        del out["parameters"]
    return out


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _operation_id(op: Operation) -> str:
    words = [w.strip("{}").replace("-", "_").replace(".", "_") for w in op.path.split("/") if w]
    return op.method.lower() + "_" + "_".join(words or ["root"])


def build_document(routes: Iterable[tuple[str, str]] | None = None) -> dict[str, Any]:
    """The document; with ``routes``, first check they and :data:`OPERATIONS` match."""
    if routes is not None:
        have = set(routes)
        described = {(op.path, op.method) for op in OPERATIONS}
        if have - described:
            raise UndocumentedRoute(f"routes without an Operation: {sorted(have - described)}")
        if described - have:
            raise UndocumentedRoute(f"Operations without a route: {sorted(described - have)}")
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "webhook-stream management API",
            "version": __version__,
            "description": "Outbound webhooks from Kafka. Authenticate with "
            "`Authorization: Bearer <token>`: the admin token (`WEBHOOK_STREAM_API_TOKEN`) "
            "sees every tenant; a tenant token (`POST /tenants/{tenant_id}/tokens`) sees "
            "only its own: another tenant's objects answer 404, naming another tenant 403. "
            'Every error is `{"error": {"code", "message", "field"?}}`.',
        },
        "tags": [
            {"name": "subscriptions", "description": "Endpoints, secrets, test events, attempts"},
            {"name": "deliveries", "description": "Delivery status and replay"},
            {"name": "tenants", "description": "Tenant-scoped API tokens (admin only)"},
            {"name": "event-types", "description": "The event-type catalog: schemas, examples"},
            {"name": "operations", "description": "Health, metrics, this document"},
        ],
        "paths": paths,
        "webhooks": webhooks(),
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The admin token or a tenant token (`wst_...`).",
                }
            },
            "schemas": {**schemas(), **webhook_schemas()},
            "responses": {
                f"E{status}": {"description": text, **error, **_error_headers(status)}
                for status, text in _ERRORS.items()
            },
        },
    }
