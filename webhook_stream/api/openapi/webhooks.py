"""The ``webhooks:`` section of the document: the operational events a subscriber receives.

One entry per type of :mod:`webhook_stream.core.operational`, each a POST of the Standard
Webhooks body ``{id, type, timestamp, data}`` with the type's ``data`` schema.
"""

from __future__ import annotations

from typing import Any

from webhook_stream.core.operational import TYPES

__all__ = ["webhook_schemas", "webhooks"]

_STR = {"type": "string"}
_NULL_STR = {"type": ["string", "null"]}
_NULL_INT = {"type": ["integer", "null"]}

_COMMON = {
    "endpoint_id": {**_STR, "description": "The endpoint the event is about."},
    "endpoint_path": {**_STR, "description": "Its API path, `/subscriptions/{id}`."},
    "tenant_id": {**_NULL_STR, "description": "Its tenant (the envelope's `tenant_id`)."},
    "incarnation": {**_NULL_STR, "description": "Which life of the endpoint id."},
}

_ENDPOINT = {
    "type": "object",
    "required": ["endpoint_id", "endpoint_path", "tenant_id", "version"],
    "properties": {
        **_COMMON,
        "version": {"type": "integer", "description": "The subscription version written."},
        "disabled": {"type": "boolean", "description": "After the write (absent: deleted)."},
        "reason": {
            **_STR,
            "description": "disabled: `gone`, `consecutive_dead_letters`, "
            "`failing_too_long` (the health rule) or `manual` (a PATCH).",
        },
        "consecutive_failures": {"type": "integer"},
        "first_failure_at": {**_NULL_STR, "format": "date-time"},
    },
}

_ATTEMPT = {
    "type": "object",
    "required": ["endpoint_id", "endpoint_path", "tenant_id", "delivery_id", "attempt_count"],
    "properties": {
        **_COMMON,
        "delivery_id": {**_STR, "description": "The message's `webhook-id` to the endpoint."},
        "event_id": _STR,
        "event_type": _STR,
        "attempt_count": {"type": "integer", "description": "Attempts made so far."},
        "last_status": {**_NULL_INT, "description": "HTTP status; null: no response."},
        "last_error": _NULL_STR,
        "first_attempt_at": {**_NULL_STR, "format": "date-time"},
        "reason": {**_STR, "description": "exhausted: the dead-letter reason."},
    },
}


def _name(event_type: str) -> str:
    """``webhook.message.attempt.failing`` -> ``MessageAttemptFailingEvent``."""
    parts = event_type.split(".")[1:]
    return "".join(p.capitalize() for p in parts) + "Event"


def webhook_schemas() -> dict[str, Any]:
    """The component schemas: the two data shapes and one body per type."""
    out: dict[str, Any] = {"EndpointFact": _ENDPOINT, "MessageAttemptFact": _ATTEMPT}
    facts = [
        {"$ref": "#/components/schemas/EndpointFact"},
        {"$ref": "#/components/schemas/MessageAttemptFact"},
    ]
    out["OperationalRecord"] = {
        "type": "object",
        "description": "A record of webhooks.operational: the event envelope.",
        "required": ["id", "type", "tenant_id", "occurred_at", "data"],
        "properties": {
            "id": _STR,
            "type": {"type": "string", "enum": list(TYPES)},
            "tenant_id": _NULL_STR,
            "occurred_at": {**_STR, "format": "date-time"},
            "data": {"anyOf": facts},
        },
    }
    out["OperationalEventList"] = {
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": {
                "type": "array",
                "maxItems": 100,
                "items": {"$ref": "#/components/schemas/OperationalRecord"},
            }
        },
    }
    for event_type in TYPES:
        data = "EndpointFact" if ".endpoint." in event_type else "MessageAttemptFact"
        out[_name(event_type)] = {
            "type": "object",
            "required": ["id", "type", "timestamp", "data"],
            "properties": {
                "id": {**_STR, "description": "Stable per fact (`op_` + hash): deduplicate."},
                "type": {"const": event_type},
                "timestamp": {**_STR, "format": "date-time"},
                "data": {"$ref": f"#/components/schemas/{data}"},
            },
        }
    return out


def webhooks() -> dict[str, Any]:
    """The operational events, signed like every delivery (Standard Webhooks headers)."""
    return {
        event_type: {
            "post": {
                "summary": f"Operational event {event_type}",
                "description": "Delivered to subscriptions of the same tenant whose "
                "`event_types` match; see docs/concepts/operational-events.md.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{_name(event_type)}"}
                        }
                    },
                },
                "responses": {"200": {"description": "Any 2xx acknowledges it."}},
            }
        }
        for event_type in TYPES
    }
