"""The event-type catalog entry: what one event type is, and the check of its events.

An entry names a type (``order.created``), describes it, carries a JSON Schema (draft
2020-12) of the event's ``data``, example payloads and a ``deprecated`` flag. Entries live
on the compacted ``webhooks.event_types`` (:mod:`.catalog_store`); :func:`parse_event_type`
is the one gate for the API and for that topic. It checks the schema itself, that it only
refers within itself (``$ref: "#..."``: no schema is ever fetched), and every example
against it, so a catalog never holds an example its own schema refuses.

Enforcement (``WEBHOOK_STREAM_VALIDATE_EVENTS``) is decided by :func:`enforced`; an event
that fails is described by :meth:`EventType.violation`: the failing path and why. Events
and examples are checked with ``jsonschema_rs`` (compiled, about 100x faster); the schema
itself with ``jsonschema``, whose errors locate the problem in the schema.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import jsonschema_rs
import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from webhook_stream.core.errors import InvalidSubscription

__all__ = [
    "MAX_ENTRY_BYTES",
    "MAX_EXAMPLES",
    "MAX_SCHEMA_DEPTH",
    "NAME",
    "VALIDATE_MODES",
    "EventType",
    "InvalidEventType",
    "enforced",
    "parse_event_type",
]

#: ``PUT /event-types/{name}``: a type name (no wildcard, no ``/``: it is a path segment).
NAME = re.compile(r"[A-Za-z0-9_.:-]{1,256}")
#: The stored entry, schema and examples included, and the examples of one entry.
MAX_ENTRY_BYTES = 256 * 1024
MAX_EXAMPLES = 10
#: Nesting of a schema (objects and lists).
MAX_SCHEMA_DEPTH = 32
#: ``off``: never; ``per_type``: types whose entry says ``"enforce": true``; ``all``:
#: every catalogued type. Uncatalogued types are never checked.
VALIDATE_MODES = ("off", "per_type", "all")

_FIELDS = frozenset(
    {
        "name",
        "description",
        "schema",
        "examples",
        "deprecated",
        "enforce",
        "created_at",
        "updated_at",
    }
)
_MAX_REASON = 300


class InvalidEventType(InvalidSubscription):
    """An event-type entry is invalid; ``field`` names the input (the API answers 400)."""


def _pointer(path: Any) -> str:
    """``$.a.b[0]`` style path of a jsonschema error location."""
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


@dataclass(frozen=True, slots=True)
class EventType:
    """One catalogued type. Build it with :func:`parse_event_type`."""

    name: str
    description: str | None = None
    schema: Mapping[str, Any] | None = None
    examples: tuple[Any, ...] = ()
    deprecated: bool = False
    #: Checked under ``WEBHOOK_STREAM_VALIDATE_EVENTS=per_type`` (``all`` checks every type).
    enforce: bool = False
    created_at: str | None = None
    updated_at: str | None = None
    #: The compiled schema (``jsonschema_rs``: about 1 µs per event where the pure-Python
    #: ``jsonschema`` took about 100 µs; its regular expressions are Rust's).
    validator: Any = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "schema": self.schema,
            "examples": list(self.examples),
            "deprecated": self.deprecated,
            "enforce": self.enforce,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    def violation(self, data: Any) -> str | None:
        """Why ``data`` (the event's decoded ``data``) fails the schema, or None.

        ``$.data.amount: "x" is not of type "number"``: the path from the event's root.
        """
        if self.validator is None:
            return None
        try:
            if self.validator.is_valid(data):
                return None
            error = next(iter(self.validator.iter_errors(data)), None)
        except Exception as exc:  # noqa: BLE001 (never stop the fan-out loop)
            # What PUT could not foresee (it checks the schema and each reference): refuse.
            return f"$.data: the schema could not be applied ({type(exc).__name__})"
        if error is None:
            return None
        where = _pointer(error.instance_path).replace("$", "$.data", 1)
        return f"{where}: {error.message}"[:_MAX_REASON]


def enforced(mode: str, entry: EventType | None) -> bool:
    """Is an event of this (catalogued or not) type checked under ``mode``?"""
    if entry is None or entry.validator is None or mode == "off":
        return False
    return mode == "all" or entry.enforce


def _pointer_target(schema: Any, ref: str) -> bool:
    """Does the local reference ``ref`` (``#``, ``#/a/b`` or ``#anchor``) lead somewhere?"""
    if ref == "#":
        return True
    if not ref.startswith("#/"):
        return _has_anchor(schema, ref[1:])
    node = schema
    for raw in ref[2:].split("/"):
        part = unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def _has_anchor(node: Any, name: str) -> bool:
    if isinstance(node, Mapping):
        if node.get("$anchor") == name or node.get("$dynamicAnchor") == name:
            return True
        return any(_has_anchor(v, name) for v in node.values())
    if isinstance(node, list):
        return any(_has_anchor(v, name) for v in node)
    return False


def _refs(node: Any, path: str, found: list[tuple[str, str]]) -> None:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key in ("$ref", "$dynamicRef") and isinstance(value, str):
                found.append((f"{path}.{key}", value))
            _refs(value, f"{path}.{key}", found)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _refs(value, f"{path}[{i}]", found)


def _local_refs_only(node: Any, path: str, depth: int = 0) -> None:
    if depth > MAX_SCHEMA_DEPTH:  # the checker recurses: keep it far from Python's limit
        raise InvalidEventType(path, f"nests deeper than {MAX_SCHEMA_DEPTH} levels")
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key in ("$ref", "$dynamicRef") and not (
                isinstance(value, str) and value.startswith("#")
            ):
                raise InvalidEventType(
                    f"{path}.{key}", "only references within the schema ('#...') are allowed"
                )
            _local_refs_only(value, f"{path}.{key}", depth + 1)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _local_refs_only(value, f"{path}[{i}]", depth + 1)


def _schema(value: object) -> tuple[Mapping[str, Any] | None, Any]:
    if value is None:
        return None, None
    if not isinstance(value, Mapping | bool):
        raise InvalidEventType("schema", "must be a JSON Schema (an object)")
    if isinstance(value, bool):
        value = {} if value else {"not": {}}
    _local_refs_only(value, "schema")
    refs: list[tuple[str, str]] = []
    _refs(value, "schema", refs)
    for where, ref in refs:
        if not _pointer_target(value, ref):
            raise InvalidEventType(where, "refers to nothing in this schema")
    try:
        Draft202012Validator.check_schema(value)  # the clearest paths for a bad schema
    except SchemaError as exc:
        where = _pointer(exc.absolute_path).replace("$", "schema", 1)
        raise InvalidEventType(where, f"not a valid 2020-12 schema: {exc.message}"[:300]) from None
    try:
        return value, jsonschema_rs.Draft202012Validator(dict(value))
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        # What only the compiler sees, e.g. a pattern no regular-expression engine takes.
        raise InvalidEventType("schema", f"cannot be compiled: {exc}"[:300]) from None


def _text(value: object, f: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidEventType(f, f"must be a string of at most {limit} characters")
    return value


def _flag(value: object, f: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidEventType(f, "must be true or false")
    return value


def parse_event_type(data: object, name: str) -> EventType:
    """Validate ``data`` (decoded JSON) as the entry of type ``name``."""
    if not NAME.fullmatch(name):
        raise InvalidEventType("name", "must be 1-256 characters of A-Z a-z 0-9 _ . : -")
    if not isinstance(data, Mapping):
        raise InvalidEventType("body", "must be a JSON object")
    for key in data:
        if key not in _FIELDS:
            raise InvalidEventType(str(key)[:128], "unknown field")
    if data.get("name") not in (None, name):
        raise InvalidEventType("name", "must be the name in the path")
    if len(orjson.dumps(data)) > MAX_ENTRY_BYTES:
        raise InvalidEventType("body", f"at most {MAX_ENTRY_BYTES} bytes")
    schema, validator = _schema(data.get("schema"))
    examples = data.get("examples") or []
    if not isinstance(examples, list) or len(examples) > MAX_EXAMPLES:
        raise InvalidEventType("examples", f"must be a list of at most {MAX_EXAMPLES} payloads")
    entry = EventType(
        name=name,
        description=_text(data.get("description"), "description", 4096),
        schema=schema,
        examples=tuple(examples),
        deprecated=_flag(data.get("deprecated"), "deprecated"),
        enforce=_flag(data.get("enforce"), "enforce"),
        created_at=_text(data.get("created_at"), "created_at", 64),
        updated_at=_text(data.get("updated_at"), "updated_at", 64),
        validator=validator,
    )
    for i, example in enumerate(entry.examples):
        problem = entry.violation(example)
        if problem is not None:
            raise InvalidEventType(f"examples[{i}]", f"fails the schema: {problem}")
    return entry
