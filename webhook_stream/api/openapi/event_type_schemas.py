"""The schemas of the event-type catalog and of the filter check."""

from __future__ import annotations

from typing import Any

from webhook_stream.api.openapi.parts import ISO as _ISO
from webhook_stream.api.openapi.parts import list_of as _list_of
from webhook_stream.api.openapi.parts import nullable as _nullable
from webhook_stream.api.openapi.parts import obj as _obj
from webhook_stream.subscriptions.catalog import MAX_EXAMPLES
from webhook_stream.subscriptions.filters import FIELDS

__all__ = ["event_type_schemas"]


def event_type_schemas() -> dict[str, Any]:
    """Catalog entries (read and write), the delete answer, the filter check."""
    writable = {
        "description": _nullable({"type": "string", "maxLength": 4096}),
        "schema": _nullable(
            {
                "type": "object",
                "description": "JSON Schema (2020-12) of the event's `data`; references "
                "only within itself.",
            }
        ),
        "examples": {
            "type": "array",
            "maxItems": MAX_EXAMPLES,
            "description": "Example `data` payloads, each valid against `schema`; the first "
            "is what `POST /subscriptions/{endpoint_id}/test` sends.",
        },
        "deprecated": {"type": "boolean", "default": False},
        "enforce": {
            "type": "boolean",
            "default": False,
            "description": "Check events of this type against `schema` when "
            "`WEBHOOK_STREAM_VALIDATE_EVENTS=per_type` (the default); `all` checks every "
            "catalogued type. A failing event goes to `webhooks.rejected` "
            "(`schema_violation: <path>: <why>`).",
        },
    }
    entry = _obj(
        {
            "name": {"type": "string"},
            **writable,
            "created_at": _nullable(_ISO),
            "updated_at": _nullable(_ISO),
            "pending": {"type": "boolean"},
        },
        ("name", "examples", "deprecated", "enforce"),
    )
    check_event = _obj(
        {name: {} for name in FIELDS},
        additionalProperties=False,
        description="The event as filters see it; every field optional. `headers`: an "
        "object of strings (the record headers); `data`: any JSON.",
    )
    return {
        "EventType": entry,
        "EventTypeList": _list_of("EventType"),
        "EventTypeWrite": _obj(
            {"name": {"type": "string"}, **writable}, additionalProperties=False
        ),
        "EventTypeDeleted": _obj(
            {
                "name": {"type": "string"},
                "deleted": {"type": "boolean"},
                "pending": {"type": "boolean"},
            },
            ("name", "deleted"),
        ),
        "FilterCheck": _obj(
            {"filter": _nullable({"type": "object"}), "event": check_event},
            ("event",),
            additionalProperties=False,
        ),
        "FilterCheckResult": _obj({"matches": {"type": "boolean"}}, ("matches",)),
    }
