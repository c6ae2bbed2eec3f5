"""Building blocks of the OpenAPI document's schemas (shared by its schema modules)."""

from __future__ import annotations

from typing import Any

__all__ = ["ISO", "NO_CONTROL", "list_of", "nullable", "obj", "ref"]

NO_CONTROL = "^[^\\u0000-\\u001f\\u007f]+$"
ISO = {"type": "string", "format": "date-time"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(props: dict[str, Any], required: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props, **extra}
    if required:
        out["required"] = list(required)
    return out


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def list_of(name: str) -> dict[str, Any]:
    return obj(
        {
            "items": {"type": "array", "items": ref(name)},
            "next": {
                "type": ["string", "null"],
                "description": "Cursor for the next page (pass as `after`); null on the last.",
            },
        },
        ("items", "next"),
    )
