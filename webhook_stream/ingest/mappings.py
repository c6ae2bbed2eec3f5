"""Events in their own shape: per-topic JMESPath mappings to the envelope's attributes.

``WEBHOOK_STREAM_EVENT_MAPPINGS`` names a JSON file::

    {"mappings": [
      {"topics": "^events\\\\.dbz\\\\..+",
       "type": "join('.', [value.payload.source.table, value.payload.op])",
       "occurred_at": "value.payload.ts_ms",
       "data": "value.payload"}
    ]}

For a record of a topic that the first matching ``topics`` regex names, each expression
is evaluated against ``{"value", "key", "headers", "topic", "partition", "offset",
"timestamp"}``: the decoded value (Schema Registry or JSON), the key (JSON if it parses,
else its text), the headers as text. ``type`` is required; ``id`` (default: derived from
topic, partition and offset), ``tenant_id`` (default: none), ``occurred_at`` (ISO-8601
text, or a number of epoch milliseconds as Debezium's ``ts_ms``; default: the record's
timestamp) and ``data`` (default: ``value``) are optional. Expressions are compiled once,
when the file is loaded; a file that does not load stops the worker at start-up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping as MappingABC
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jmespath
import jmespath.exceptions
import orjson

from webhook_stream.core.errors import ConfigError, RejectedEvent
from webhook_stream.core.records import to_iso

__all__ = ["FIELDS", "EventMapping", "Mappings", "compile_mapping", "load_mappings"]

#: The attributes a mapping may set, in the envelope's order.
FIELDS = ("id", "type", "tenant_id", "occurred_at", "data")
_SETTING = "WEBHOOK_STREAM_EVENT_MAPPINGS"


@dataclass(frozen=True, slots=True)
class EventMapping:
    """One entry of the file: a topic regex and a compiled expression per attribute."""

    topics: re.Pattern[str]
    expressions: dict[str, Any]  # field -> compiled jmespath expression
    sources: dict[str, str]  # field -> the expression's text (named in rejections)

    def apply(
        self,
        value: Any,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes]],
        where: tuple[str, int, int, int | None],
    ) -> tuple[Any, Any, Any, Any, Any]:
        """(id, type, tenant_id, occurred_at, data) of one record; ``RejectedEvent`` if
        the type cannot be had."""
        topic, partition, offset, timestamp = where
        context = {
            "value": value,
            "key": _key(key),
            "headers": {name: (raw or b"").decode(errors="replace") for name, raw in headers},
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "timestamp": timestamp,
        }
        found = {name: self._search(name, context) for name in self.expressions}
        kind = found.get("type")
        if kind is None or kind == "":
            raise RejectedEvent(
                f"missing_type: mapping for {self.topics.pattern!r}: type expression "
                f"{self.sources['type']!r} yielded {'null' if kind is None else 'empty text'}"
            )
        if isinstance(kind, int | float) and not isinstance(kind, bool):
            kind = str(kind)
        when = found.get("occurred_at")
        if isinstance(when, int | float) and not isinstance(when, bool):
            when = to_iso(when / 1000)
        data = found["data"] if "data" in self.expressions else value
        return found.get("id"), kind, found.get("tenant_id"), when, data

    def _search(self, name: str, context: dict[str, Any]) -> Any:
        try:
            return self.expressions[name].search(context)
        except jmespath.exceptions.JMESPathError as exc:
            raise RejectedEvent(
                f"mapping_error: mapping for {self.topics.pattern!r}: {name} expression "
                f"{self.sources[name]!r}: {exc}"[:400]
            ) from None


class Mappings:
    """Every mapping of the file; :meth:`match` says which one a topic uses (cached)."""

    def __init__(self, mappings: Sequence[EventMapping] = ()) -> None:
        self.mappings = tuple(mappings)
        self._by_topic: dict[str, EventMapping | None] = {}

    def __bool__(self) -> bool:
        return bool(self.mappings)

    def match(self, topic: str) -> EventMapping | None:
        try:
            return self._by_topic[topic]
        except KeyError:
            found = next((m for m in self.mappings if m.topics.match(topic)), None)
            self._by_topic[topic] = found
            return found


def _key(key: bytes | None) -> Any:
    if not key:
        return None
    try:
        return orjson.loads(key)
    except orjson.JSONDecodeError:
        return key.decode(errors="replace")


def load_mappings(path: str) -> Mappings:
    """The mappings in the file at ``path`` (empty path: none); ``ConfigError`` names what
    is wrong and where."""
    if not path:
        return Mappings()
    try:
        doc = orjson.loads(Path(path).read_bytes())
    except OSError as exc:
        raise ConfigError(f"{_SETTING}: cannot read {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{_SETTING}: {path} is not JSON: {exc}") from None
    entries = doc.get("mappings") if isinstance(doc, MappingABC) else None
    if not isinstance(entries, list):
        raise ConfigError(f'{_SETTING}: {path} needs {{"mappings": [...]}}')
    return Mappings(
        [compile_mapping(entry, f"{path}: mappings[{i}]") for i, entry in enumerate(entries)]
    )


def compile_mapping(entry: Any, where: str) -> EventMapping:
    """One entry of the file, its expressions compiled; ``ConfigError`` names ``where``."""
    where = f"{_SETTING}: {where}"
    if not isinstance(entry, MappingABC):
        raise ConfigError(f"{where}: must be an object")
    unknown = sorted(set(entry) - {"topics", *FIELDS})
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
    topics = entry.get("topics")
    if not isinstance(topics, str) or not topics:
        raise ConfigError(f"{where}.topics: a regular expression is required")
    try:
        pattern = re.compile(topics)
    except re.error as exc:
        raise ConfigError(f"{where}.topics: {exc}") from None
    if "type" not in entry:
        raise ConfigError(f"{where}.type: an expression is required")
    expressions: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in FIELDS:
        text = entry.get(name)
        if text is None:
            continue
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{where}.{name}: must be a JMESPath expression (text)")
        try:
            expressions[name] = jmespath.compile(text)
        except jmespath.exceptions.JMESPathError as exc:
            raise ConfigError(f"{where}.{name}: not a JMESPath expression: {exc}") from None
        sources[name] = text
    return EventMapping(pattern, expressions, sources)
