"""The event-type catalog: the compacted ``webhooks.event_types``, read whole by every worker.

Keyed by type name; a tombstone deletes. The admin writes through the API (last write
wins: entries are few and written by one party). Fan-out asks :meth:`EventTypeCatalog.check`
whether an event breaks its type's schema; the API asks for warnings about the types a
subscription names (:meth:`EventTypeCatalog.warnings`).
"""

from __future__ import annotations

import logging
from fnmatch import fnmatchcase
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord

from webhook_stream.core.records import Event
from webhook_stream.core.settings import Settings
from webhook_stream.core.table import CompactedTable
from webhook_stream.core.topics import EVENT_TYPES
from webhook_stream.subscriptions.catalog import (
    EventType,
    InvalidEventType,
    enforced,
    parse_event_type,
)
from webhook_stream.subscriptions.filters import decoded_data

__all__ = ["EventTypeCatalog"]

log = logging.getLogger(__name__)

_WILD = "*?["


class EventTypeCatalog(CompactedTable):
    """Tails ``webhooks.event_types`` into memory; ``ready`` once caught up."""

    topic = EVENT_TYPES

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._types: dict[str, EventType] = {}
        self.mode = settings.validate_events

    def __len__(self) -> int:
        return len(self._types)

    def get(self, name: str) -> EventType | None:
        return self._types.get(name)

    def all(self) -> list[EventType]:
        return [self._types[name] for name in sorted(self._types)]

    def check(self, event: Event) -> str | None:
        """``schema_violation: <path>: <why>`` if ``event`` must be refused, else None."""
        entry = self._types.get(event.type)
        if not enforced(self.mode, entry):
            return None
        assert entry is not None
        problem = entry.violation(decoded_data(event))
        return None if problem is None else f"schema_violation: {problem}"

    def warnings(self, patterns: Any) -> list[str]:
        """What a subscription naming ``patterns`` should hear about its types; nothing
        while the catalog is empty (an operator who does not keep one is not nagged)."""
        if not self._types or not isinstance(patterns, list | tuple):
            return []
        out: list[str] = []
        for pattern in patterns:
            if not isinstance(pattern, str):
                continue
            if any(c in pattern for c in _WILD):
                hits = [t for t in self._types.values() if fnmatchcase(t.name, pattern)]
                if not hits:
                    out.append(f"event type pattern {pattern!r} matches no catalogued type")
                continue
            entry = self._types.get(pattern)
            if entry is None:
                out.append(f"event type {pattern!r} is not in the catalog")
            elif entry.deprecated:
                out.append(f"event type {pattern!r} is deprecated")
        return out

    def example_for(self, patterns: tuple[str, ...]) -> EventType | None:
        """The first catalogued type with an example that ``patterns`` match (exact names
        before patterns), for the "send test event" action."""
        exact = [self._types.get(p) for p in patterns]
        candidates = [e for e in exact if e is not None]
        candidates += [t for t in self.all() if any(fnmatchcase(t.name, p) for p in patterns)]
        return next((e for e in candidates if e.examples and not e.deprecated), None)

    async def loaded(self) -> None:
        log.info("event types loaded: %d (validation: %s)", len(self._types), self.mode)

    async def apply(self, record: ConsumerRecord) -> None:
        if record.key is None:
            log.warning("event type record without key at offset %s ignored", record.offset)
            return
        name = record.key.decode("utf-8", "replace")
        if record.value is None:
            self._types.pop(name, None)
            return
        try:
            self._types[name] = parse_event_type(orjson.loads(record.value), name)
        except (orjson.JSONDecodeError, InvalidEventType) as exc:
            # Written past the API: keep nothing rather than a half-understood entry.
            self._types.pop(name, None)
            log.warning("event type record %r at offset %s invalid: %s", name, record.offset, exc)
