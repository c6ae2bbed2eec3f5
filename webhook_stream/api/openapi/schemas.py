"""The JSON Schemas of the OpenAPI document (``components.schemas``).

The subscription fields carry the constraints :mod:`webhook_stream.subscriptions.validation`
enforces; ``tests/api/test_openapi.py`` checks each bound against the validator, so the two
cannot drift apart silently.
"""

from __future__ import annotations

from typing import Any

from webhook_stream.api.errors import CODES
from webhook_stream.api.openapi.console_schemas import console_schemas
from webhook_stream.api.openapi.event_type_schemas import event_type_schemas
from webhook_stream.api.openapi.parts import ISO as _ISO
from webhook_stream.api.openapi.parts import NO_CONTROL as _NO_CONTROL
from webhook_stream.api.openapi.parts import list_of as _list_of
from webhook_stream.api.openapi.parts import nullable as _nullable
from webhook_stream.api.openapi.parts import obj as _obj
from webhook_stream.api.openapi.parts import ref as _ref
from webhook_stream.api.openapi.receivers import PUBLIC_KEY, RECEIVER_FIELDS
from webhook_stream.api.pagination import DEFAULT_LIMIT, MAX_LIMIT
from webhook_stream.subscriptions.filters import (
    FIELDS,
    MAX_FILTER_BYTES,
    MAX_FILTER_DEPTH,
    MAX_FILTER_NODES,
    OPERATORS,
)

__all__ = ["SUBSCRIPTION_FIELDS", "schemas"]

#: Every writable field of a subscription with the validator's constraints.
SUBSCRIPTION_FIELDS: dict[str, dict[str, Any]] = {
    "id": {
        "type": "string",
        "pattern": "^[A-Za-z0-9_.:-]{1,128}$",
        "maxLength": 128,
        "description": "Endpoint id; generated (`ep_<hex>`) when omitted on create.",
    },
    "url": {
        "type": "string",
        "format": "uri",
        "maxLength": 2048,
        "description": "Absolute `https://` URL on a public address (the worker's "
        "`WEBHOOK_STREAM_ALLOW_INSECURE_TARGETS=1` also permits `http://` and private "
        "addresses). No credentials, no fragment, never followed on redirect.",
    },
    "event_types": {
        "type": "array",
        "minItems": 1,
        "maxItems": 100,
        "items": {
            "type": "string",
            "minLength": 1,
            "maxLength": 256,
            "pattern": "^[A-Za-z0-9_.:/*?-]+$",
        },
        "description": "Exact event types or glob patterns (`order.*`, `*`).",
    },
    "tenant_id": _nullable(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "pattern": _NO_CONTROL,
            "description": "The tenant; a tenant token fills in its own. Cannot be changed.",
        }
    ),
    "secret": {
        "type": "string",
        # Canonical base64 of 24-64 bytes: 8-20 full quads, then an optional tail.
        "pattern": "^whsec_(?:[A-Za-z0-9+/]{4}){8,20}"
        "(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4}(?:[A-Za-z0-9+/]{2}==)?)?$",
        "minLength": 38,
        "maxLength": 94,
        "writeOnly": True,
        "description": "`whsec_` + base64 of 24-64 bytes; generated when omitted. Shown once.",
    },
    "headers": {
        "type": "object",
        "maxProperties": 50,
        "propertyNames": {"pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$"},
        "additionalProperties": {
            "type": "string",
            "maxLength": 4096,
            "pattern": "^[^\\u0000-\\u0008\\u000a-\\u001f\\u007f]*$",
        },
        "description": "Custom request headers, at most 16384 bytes together. Reserved: "
        "hop-by-hop headers, `Host`, "
        "`Content-Length`, `Content-Type`, `User-Agent` and `webhook-*`.",
    },
    "disabled": {"type": "boolean", "default": False},
    "description": _nullable({"type": "string", "maxLength": 1024}),
    "timeout_s": _nullable({"type": "number", "exclusiveMinimum": 0, "maximum": 60}),
    "max_attempts": _nullable({"type": "integer", "minimum": 1, "maximum": 50}),
    "retry_schedule": _nullable(
        {
            "type": "array",
            "minItems": 1,
            "maxItems": 20,
            "items": {
                "anyOf": [
                    {"type": "string", "pattern": "^\\s*\\d+(\\.\\d+)?\\s*(ms|s|m|h|d)?\\s*$"},
                    {"type": "number", "minimum": 0.1, "maximum": 604800},
                ]
            },
            "description": "Delays (`5s`, `2m`, `1h` or seconds), each at least 100ms and at "
            "most 7 days; all retries together (with `max_attempts` repeating the last step) "
            "at most 30 days.",
        }
    ),
    "retry_status_codes": _nullable(
        {
            "type": "array",
            "maxItems": 200,
            "items": {"type": "integer", "minimum": 400, "maximum": 599},
        }
    ),
    "rate_limit_per_s": _nullable({"type": "number", "minimum": 0.01, "maximum": 100000}),
    "max_in_flight": _nullable({"type": "integer", "minimum": 1, "maximum": 100}),
    "ordering": _nullable(
        {
            "type": "string",
            "enum": ["best_effort", "strict"],
            "description": "`strict`: no delivery is attempted while an earlier one to this "
            "endpoint is unfinished (FIFO across retries, one call at a time); "
            "`best_effort` (default): order holds while attempts succeed.",
        }
    ),
    "filter": _nullable(
        {
            "type": "object",
            "maxProperties": MAX_FILTER_NODES,
            "propertyNames": {"enum": [*FIELDS, "$and", "$or", "$not"]},
            "description": "Content filter: only events it matches are delivered (after "
            "`event_types`). Keys are event fields (`id`, `type`, `tenant_id`, `source`, "
            "`occurred_at`, `data`, `headers`), nested objects are paths, and operators are "
            f"{', '.join(f'`{op}`' for op in OPERATORS)} (no `$regex`). At most "
            f"{MAX_FILTER_BYTES} bytes, {MAX_FILTER_DEPTH} levels, {MAX_FILTER_NODES} "
            "conditions. `null` or `{}`: no filter. An invalid filter is refused (400) with "
            "`field` naming its path, e.g. `filter.data.amount.$gt`.",
            "example": {
                "data": {"amount": {"$gte": 100}, "currency": {"$in": ["EUR", "GBP"]}},
                "$not": {"headers": {"x-test": {"$exist": True}}},
            },
        }
    ),
    **RECEIVER_FIELDS,
}

#: Fields the server manages: accepted on the compacted topic, never set through the API.
SERVER_FIELDS = (
    "previous_secrets",
    "signing_key",
    "previous_signing_keys",
    "public_key",
    "created_at",
    "updated_at",
    "version",
    "incarnation",
)


def schemas() -> dict[str, Any]:
    """``components.schemas`` of the document."""
    readable = {k: v for k, v in SUBSCRIPTION_FIELDS.items() if k != "secret"}
    subscription = _obj(
        {
            **readable,
            "public_key": PUBLIC_KEY,
            "created_at": _nullable(_ISO),
            "updated_at": _nullable(_ISO),
            "version": {
                "type": "integer",
                "minimum": 0,
                "readOnly": True,
                "description": "Goes up by one with every write (API or automatic disable), "
                "across deletes too; the `ETag` of reads and what `If-Match` compares.",
            },
            "warnings": {
                "type": "array",
                "items": {"type": "string"},
                "readOnly": True,
                "description": "Answers of writes only, when the catalog is not empty: "
                "event types it does not hold, deprecated ones, patterns matching none.",
            },
            "incarnation": {
                **_nullable({"type": "string"}),
                "readOnly": True,
                "description": "Set when the endpoint is created: an id deleted and created "
                "again is another incarnation and starts with an empty history "
                "(attempts, delivery status, stats, overview, dead letters).",
            },
            "flow": _obj(
                {
                    "owned": {"type": "boolean"},
                    "blocked_by": _nullable(
                        _obj(
                            {"delivery_id": {"type": "string"}, "since": _nullable(_ISO)},
                            ("delivery_id",),
                        )
                    ),
                    "parked": {"type": "integer", "minimum": 0},
                    "throttled": _nullable({"type": "string", "enum": ["endpoint", "tenant"]}),
                },
                ("owned", "blocked_by", "parked"),
                description="Flow control as known to the answering worker (GET of one "
                "subscription only): the strict head blocking it, deliveries parked, and "
                "which budget made it park (its own share, or its tenant's).",
            ),
        },
        (
            "id",
            "url",
            "event_types",
            "tenant_id",
            "headers",
            "disabled",
            "max_in_flight",
            "version",
        ),
    )
    pending = {
        "type": "boolean",
        "description": "Accepted but not yet applied on this worker (202).",
    }
    with_secret = {
        "allOf": [
            _ref("Subscription"),
            _obj({"secret": {"type": "string"}, "pending": pending}, ("secret",)),
        ]
    }
    token = _obj(
        {
            "id": {"type": "string"},
            "tenant_id": {"type": "string"},
            "created_at": _ISO,
            "expires_at": _nullable(_ISO),
            "description": {"type": ["string", "null"]},
        },
        ("id", "tenant_id", "created_at", "expires_at"),
    )
    attempt = _obj(
        {
            "delivery_id": {"type": "string"},
            "endpoint_id": {"type": "string"},
            "tenant_id": {"type": ["string", "null"]},
            "event_id": {"type": "string"},
            "event_type": {"type": "string"},
            "attempt": {"type": "integer", "minimum": 1},
            "outcome": {"type": "string", "enum": ["succeeded", "retrying", "failed"]},
            "status_code": {"type": ["integer", "null"]},
            "error": {"type": ["string", "null"]},
            "duration_ms": {"type": "number"},
            "response_body": {"type": "string"},
            "attempted_at": _ISO,
        },
        ("delivery_id", "endpoint_id", "attempt", "outcome", "attempted_at"),
    )
    return {
        "Error": _obj(
            {
                "error": _obj(
                    {
                        "code": {"type": "string", "enum": sorted(CODES)},
                        "message": {"type": "string"},
                        "field": {"type": "string", "description": "The offending input."},
                    },
                    ("code", "message"),
                    additionalProperties=False,
                )
            },
            ("error",),
            additionalProperties=False,
        ),
        "SubscriptionCreate": _obj(
            SUBSCRIPTION_FIELDS, ("url", "event_types"), additionalProperties=False
        ),
        "SubscriptionPatch": _obj(
            {k: v for k, v in SUBSCRIPTION_FIELDS.items() if k not in ("id", "secret")},
            additionalProperties=False,
            description="Fields to change; `tenant_id` only to its current value.",
        ),
        "Subscription": subscription,
        "SubscriptionWithSecret": with_secret,
        "SubscriptionStored": {"allOf": [_ref("Subscription"), _obj({"pending": pending})]},
        "Pending": _obj(
            {
                "id": {"type": "string"},
                "pending": {"const": True},
                "version": {
                    "type": "integer",
                    "description": "The version decided, when the decision came in time.",
                },
            },
            ("id", "pending"),
            description="Accepted: not decided within the write timeout (no owner of the "
            "endpoint id's writes yet), or decided but not yet applied on this worker.",
        ),
        "RotatedSecret": {
            "allOf": [
                _ref("SubscriptionWithSecret"),
                _obj({"old_secret_valid_for_s": {"type": "number"}}, ("old_secret_valid_for_s",)),
            ]
        },
        "Deleted": _obj(
            {"id": {"type": "string"}, "deleted": {"const": True}, "pending": pending},
            ("id", "deleted"),
        ),
        "SubscriptionList": _list_of("Subscription"),
        "TestEvent": _obj(
            {"delivery_id": {"type": "string"}, "event_id": {"type": "string"}},
            ("delivery_id", "event_id"),
        ),
        "Attempt": attempt,
        "AttemptList": _list_of("Attempt"),
        "DeliveryStatus": _obj(
            {
                "delivery_id": {"type": "string"},
                "endpoint_id": {"type": "string"},
                "status": {
                    "type": "string",
                    "enum": ["pending", "retrying", "succeeded", "dead_lettered"],
                },
                "attempts": {"type": "array", "items": _ref("Attempt")},
                "dead_letter": _obj(
                    {
                        "reason": {"type": "string"},
                        "dead_lettered_at": {"type": ["string", "null"]},
                        "last_error": {"type": ["string", "null"]},
                    }
                ),
            },
            ("delivery_id", "endpoint_id", "status", "attempts"),
        ),
        "ReplayRequest": _obj(
            {
                "source": {"type": "string", "enum": ["deadletter", "events"]},
                "topic": {"type": "string", "description": "An `events.*` topic (source=events)."},
                "since": {"type": "string", "description": "ISO-8601 or an age (`2h`)."},
                "until": {"type": "string", "description": "ISO-8601 or an age (`30m`)."},
                "endpoint_id": {"type": "string"},
                "tenant_id": {"type": "string", "description": "A tenant token: its own only."},
                "delivery_id": {
                    "type": "string",
                    "description": "Only this dead-lettered delivery (source=deadletter).",
                },
                "dry_run": {"type": "boolean", "default": False},
                "force": {"type": "boolean", "default": False},
            },
            ("source",),
            additionalProperties=False,
        ),
        "ReplaySummary": _obj(
            {
                "scanned": {"type": "integer"},
                "matched": {"type": "integer"},
                "requeued": {"type": "integer"},
                "skipped_succeeded": {"type": "integer"},
                "dry_run": {"type": "boolean"},
            },
            ("scanned", "matched", "requeued", "skipped_succeeded", "dry_run"),
        ),
        "TokenCreate": _obj(
            {
                "expires_at": {"type": "string", "format": "date-time"},
                "description": {"type": "string", "maxLength": 256, "pattern": _NO_CONTROL},
            },
            additionalProperties=False,
        ),
        "Token": token,
        "TokenCreated": {
            "allOf": [
                _ref("Token"),
                _obj(
                    {
                        "token": {"type": "string", "description": "Shown once; stored hashed."},
                        "pending": pending,
                    },
                    ("token",),
                ),
            ]
        },
        "TokenList": _list_of("Token"),
        "Revoked": _obj(
            {"id": {"type": "string"}, "revoked": {"const": True}, "pending": pending},
            ("id", "revoked"),
        ),
        **console_schemas(),
        **event_type_schemas(),
        "Index": _obj({"status": {"const": "OK"}}, ("status",)),
        "Health": _obj(
            {
                "status": {"type": "string", "enum": ["ok", "starting"]},
                "ready": {"type": "boolean"},
                "checks": {"type": "object", "additionalProperties": {"type": "boolean"}},
                "subscriptions": {"type": "integer"},
                "throttled_tenants": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Tenants whose endpoints park because a budget is full",
                },
                "schema_registry": _obj(
                    {
                        "reachable": {"type": "boolean"},
                        "waiting_partitions": {"type": "integer", "minimum": 0},
                    },
                    ("reachable", "waiting_partitions"),
                ),
            },
            ("status", "ready", "checks"),
        ),
    }


#: Query parameters of the paginated list routes.
PAGE_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        "description": "Items per page.",
    },
    {
        "name": "after",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "Opaque cursor: the previous page's `next`.",
    },
]
