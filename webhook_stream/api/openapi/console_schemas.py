"""The schemas of the console's routes (dead letters, counters, overview, caller)."""

from __future__ import annotations

from typing import Any

from webhook_stream.api.openapi.parts import ISO as _ISO
from webhook_stream.api.openapi.parts import list_of as _list_of
from webhook_stream.api.openapi.parts import obj as _obj

__all__ = ["console_schemas"]


def console_schemas() -> dict[str, Any]:
    """Dead letters, per-endpoint counters, the overview, the caller."""
    text = {"type": ["string", "null"]}
    count = {"type": "integer", "minimum": 0}
    dead_letter = _obj(
        {
            "delivery_id": {"type": "string"},
            "endpoint_id": {"type": "string"},
            "tenant_id": text,
            "event_id": text,
            "event_type": text,
            "reason": text,
            "attempts": {"type": ["integer", "null"]},
            "last_status_code": {"type": ["integer", "null"]},
            "last_error": text,
            "first_attempt_at": text,
            "last_attempt_at": text,
            "created_at": text,
            "dead_lettered_at": text,
        },
        ("delivery_id", "endpoint_id", "reason", "dead_lettered_at"),
    )
    last = _obj(
        {
            "delivery_id": {"type": "string"},
            "attempted_at": {"type": "string"},
            "outcome": {"type": "string", "enum": ["succeeded", "retrying", "failed"]},
            "status_code": {"type": ["integer", "null"]},
            "error": text,
        },
        ("delivery_id", "attempted_at", "outcome"),
    )
    stats = _obj(
        {
            "endpoint_id": {"type": "string"},
            "succeeded_last_hour": count,
            "failed_last_hour": count,
            "success_rate": {
                "type": ["number", "null"],
                "minimum": 0,
                "maximum": 1,
                "description": "Succeeded / all attempts of the last hour; null without any.",
            },
            "last_attempt": {"anyOf": [last, {"type": "null"}]},
            "dead_letters": count,
        },
        ("endpoint_id", "succeeded_last_hour", "failed_last_hour", "success_rate"),
    )
    minute = _obj({"at": _ISO, "succeeded": count, "failed": count}, ("at", "succeeded", "failed"))
    return {
        "DeadLetter": dead_letter,
        "DeadLetterList": _list_of("DeadLetter"),
        "EndpointStats": stats,
        "EndpointStatsList": _list_of("EndpointStats"),
        "Overview": _obj(
            {
                "tenant_id": {"type": ["string", "null"]},
                "deliveries_per_s": {
                    "type": "number",
                    "minimum": 0,
                    "description": "Successful attempts per second over the last full minute.",
                },
                "succeeded_last_hour": count,
                "failed_last_hour": count,
                "dead_letters": {**count, "description": "Deliveries now dead-lettered."},
                "minutes": {
                    "type": "array",
                    "items": minute,
                    "description": "The last 60 minutes, oldest first.",
                },
                "disabled_endpoints": {
                    "type": "array",
                    "maxItems": 100,
                    "items": _obj(
                        {"id": {"type": "string"}, "tenant_id": {"type": ["string", "null"]}},
                        ("id", "tenant_id"),
                    ),
                    "description": "Disabled endpoints in scope, the first 100 by id.",
                },
                "disabled_total": {**count, "description": "Disabled endpoints in scope."},
            },
            (
                "deliveries_per_s",
                "succeeded_last_hour",
                "failed_last_hour",
                "dead_letters",
                "minutes",
            ),
        ),
        "Rejected": _obj(
            {
                "reason": {"type": "string", "description": "Why, as on the record."},
                "code": {"type": "string", "description": "The reason up to its first colon."},
                "source": _obj(
                    {
                        "topic": {"type": "string"},
                        "partition": {"type": ["integer", "null"]},
                        "offset": {"type": ["integer", "null"]},
                    },
                    ("topic",),
                ),
                "rejected_at": text,
                "tenant_id": {
                    **text,
                    "description": "Read from the value or headers, if it can be.",
                },
                "preview": {**text, "description": "The first 512 bytes of the value, as text."},
                "value_bytes": {"type": ["integer", "null"]},
                "truncated": {"type": "boolean"},
                "preview_truncated": {"type": "boolean"},
                "header_names": {"type": "array", "items": {"type": "string"}},
            },
            ("reason", "code", "source"),
        ),
        "RejectedList": _list_of("Rejected"),
        "WhoAmI": _obj(
            {"admin": {"type": "boolean"}, "tenant_id": {"type": ["string", "null"]}},
            ("admin", "tenant_id"),
        ),
    }
