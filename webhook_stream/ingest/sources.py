"""Input records to events, whatever their encoding: the envelope forms, Schema Registry
records and mapped records in their own shape.

The envelope forms (:mod:`webhook_stream.ingest.decoding`) stay the default and the fast
path: a record goes another way only when its value is in the Confluent wire format and a
registry is configured, or when a mapping names its topic. Then:

1. the value is decoded: with its writer schema (:mod:`webhook_stream.ingest.registry`)
   when in the wire format, else as JSON;
2. with a mapping for the topic, the mapping gives the attributes
   (:mod:`webhook_stream.ingest.mappings`); without one, a decoded object that has the
   envelope's ``type`` is read as the envelope, CloudEvents attribute names included;
   anything else is rejected (``unmapped_record``).

A writer schema not yet cached raises :class:`SchemaPending`: the caller fetches it
(I/O stays out of here) and tries the record again.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import uuid
from collections.abc import Sequence
from typing import Any

import orjson

from webhook_stream.core.errors import RejectedEvent, WebhookStreamError
from webhook_stream.core.records import Event, SourceRef
from webhook_stream.ingest.decoding import event_from_attrs, parse_record
from webhook_stream.ingest.mappings import EventMapping, Mappings
from webhook_stream.ingest.registry import SchemaRegistry, wire_schema_id

__all__ = ["Decoder", "SchemaPending", "jsonable"]

_ENVELOPE_NAMES = ("id", "type", "tenant_id", "occurred_at", "data")
_CLOUDEVENT_NAMES = ("id", "type", "tenantid", "time", "data")
_OWN_ENVELOPE = "webhook_stream.EventEnvelope"


class SchemaPending(WebhookStreamError):
    """The record's writer schema must be fetched from the registry first."""

    def __init__(self, schema_id: int) -> None:
        super().__init__(f"schema id {schema_id} not fetched yet")
        self.schema_id = schema_id


class Decoder:
    """Parses input records with the registry (None: off) and mappings configured."""

    def __init__(self, max_bytes: int, registry: SchemaRegistry | None, mappings: Mappings) -> None:
        self._max_bytes = max_bytes
        self.registry = registry
        self.mappings = mappings

    def parse(self, record: Any) -> Event:
        """The event of an aiokafka record; ``RejectedEvent`` or :class:`SchemaPending`."""
        value: bytes | None = record.value
        schema_id = wire_schema_id(value)
        mapping = self.mappings.match(record.topic) if self.mappings else None
        if mapping is None and schema_id is None:
            return parse_record(record, self._max_bytes)
        if value is not None and len(value) > self._max_bytes:
            raise RejectedEvent(f"too_large: {len(value)} bytes > limit {self._max_bytes}")
        headers: list[tuple[str, bytes]] = list(record.headers or ())
        decoded = self._decode(value, schema_id)
        attrs = _attrs(decoded, mapping, record, headers)
        hdrs: dict[str, bytes] = {}
        for name, raw in headers:
            hdrs.setdefault(name.lower(), raw or b"")
        source = SourceRef(record.topic, record.partition, record.offset)
        return event_from_attrs(attrs, source, hdrs, None, record.timestamp)

    def _decode(self, value: bytes | None, schema_id: int | None) -> Any:
        if not value:
            raise RejectedEvent("empty_value")
        if schema_id is None:
            try:
                return orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                raise RejectedEvent(f"invalid_json: {exc}") from None
        if self.registry is None:
            raise RejectedEvent(
                f"undecodable: Schema Registry wire format (schema id {schema_id}) and "
                "WEBHOOK_STREAM_SCHEMA_REGISTRY_URL is not set"
            )
        schema = self.registry.cached(schema_id)  # raises unknown_schema
        if schema is None:
            raise SchemaPending(schema_id)
        decoded = schema.decode(value)
        if schema.kind != "JSON":  # Avro: bytes, decimals, dates to what JSON holds
            decoded = jsonable(decoded)
        if schema.name == _OWN_ENVELOPE and isinstance(decoded.get("data"), str):
            # schemas/event_envelope.avsc registered as is: its data is JSON text.
            try:
                decoded["data"] = orjson.loads(decoded["data"])
            except orjson.JSONDecodeError as exc:
                raise RejectedEvent(f"invalid_json: data: {exc}") from None
        return decoded


def _attrs(
    decoded: Any, mapping: EventMapping | None, record: Any, headers: Sequence[tuple[str, bytes]]
) -> tuple[Any, Any, Any, Any, Any]:
    if mapping is not None:
        where = (record.topic, record.partition, record.offset, record.timestamp)
        return mapping.apply(decoded, record.key, headers, where)
    if isinstance(decoded, dict) and decoded.get("type") is not None:
        names = _CLOUDEVENT_NAMES if "specversion" in decoded else _ENVELOPE_NAMES
        return tuple(decoded.get(name) for name in names)  # type: ignore[return-value]
    raise RejectedEvent(
        f"unmapped_record: {record.topic}: the decoded record has no type and no mapping "
        "in WEBHOOK_STREAM_EVENT_MAPPINGS names the topic"
    )


def jsonable(value: Any) -> Any:
    """``value`` as JSON can hold it: Avro ``bytes`` as base64 text, decimals as text,
    dates and times as ISO-8601, UUIDs as text."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value
