"""Input records on ``events.*`` to :class:`~webhook_stream.core.records.Event` (SPEC section 3).

Accepted forms, tried in this order:

1. Avro single-object encoding of ``schemas/event_envelope.avsc`` (value starts ``C3 01``).
2. CloudEvents binary mode: a ``ce_specversion`` header; ``ce_*`` headers carry the
   attributes and the value is the data.
3. JSON: CloudEvents structured mode when the object has ``specversion``, else the
   envelope ``{"id", "type", "tenant_id", "occurred_at", "data"}``.

Anything else raises :class:`~webhook_stream.core.errors.RejectedEvent` whose ``reason`` starts
with a machine-friendly code (``too_large``, ``empty_value``, ``invalid_json``, ...).

Choices where the contract is silent:

* An integer ``id`` is accepted and turned into its decimal string; a missing ``id`` (in
  every form, CloudEvents included) is derived from topic, partition and offset.
* ``occurred_at`` is normalised to UTC ``...T10:00:00.000Z``; a timestamp without an offset
  is taken as UTC; one that does not parse as ISO-8601 is rejected rather than replaced.
* Data must become JSON. ``application/json``, ``text/json`` and ``*+json`` bodies are
  parsed; ``text/*`` bodies (UTF-8) become a JSON string; other content types are
  rejected. Structured-mode ``data_base64`` is decoded and handled by the same rule
  (default content type JSON), so binary payloads are refused rather than silently
  delivered as an opaque base64 string.
* A binary-mode CloudEvent may have an empty value (no data, ``null``); in the other forms
  an empty value or tombstone is rejected as ``empty_value``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from webhook_stream.core.errors import RejectedEvent
from webhook_stream.core.records import Event, SourceRef, derived_event_id, iso_now, to_iso
from webhook_stream.core.schemas import SINGLE_OBJECT_MAGIC, decode_single_object
from webhook_stream.core.tracing import valid_traceparent, valid_tracestate

__all__ = ["MAX_ATTR_LEN", "event_from_attrs", "parse_event", "parse_record"]

MAX_ATTR_LEN = 256
_MISSING = object()
_BAD_TYPE_CHARS = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_JSON_NAMES = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}


def parse_record(record: Any, max_bytes: int) -> Event:
    """:func:`parse_event` for an aiokafka ``ConsumerRecord``."""
    return parse_event(
        record.topic,
        record.partition,
        record.offset,
        record.value,
        list(record.headers or ()),
        record.timestamp,
        max_bytes,
    )


def parse_event(
    topic: str,
    partition: int,
    offset: int,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]],
    timestamp_ms: int | None,
    max_bytes: int,
) -> Event:
    """Parse one input record; ``RejectedEvent`` says why it cannot be delivered."""
    if value is not None and len(value) > max_bytes:
        raise RejectedEvent(f"too_large: {len(value)} bytes > limit {max_bytes}")
    hdrs: dict[str, bytes] = {}
    for name, raw in headers:
        hdrs.setdefault(name.lower(), raw or b"")
    if value and value.startswith(SINGLE_OBJECT_MAGIC):
        attrs = _from_avro(value)
    elif "ce_specversion" in hdrs:
        attrs = _from_binary_cloudevent(value or b"", hdrs)
    elif not value:
        raise RejectedEvent("empty_value")
    else:
        attrs = _from_json(value)
    return event_from_attrs(attrs, SourceRef(topic, partition, offset), hdrs, value, timestamp_ms)


def event_from_attrs(
    attrs: tuple[Any, Any, Any, Any, Any],
    source: SourceRef,
    hdrs: Mapping[str, bytes],
    value: bytes | None,
    timestamp_ms: int | None,
) -> Event:
    """The event of raw (id, type, tenant_id, occurred_at, data), validated.

    ``hdrs`` are the record's headers by lower-case name, ``value`` its bytes (for the
    trace context). Shared with the Schema Registry and mapping paths
    (:mod:`webhook_stream.ingest.sources`).
    """
    raw_id, raw_type, raw_tenant, raw_time, data = attrs
    traceparent, tracestate = _trace_context(hdrs, value)
    return Event(
        id=_event_id(raw_id, source),
        type=_event_type(raw_type),
        occurred_at=_occurred_at(raw_time, timestamp_ms),
        data=orjson.dumps(data).decode(),
        source=source,
        tenant_id=_tenant_id(raw_tenant),
        traceparent=traceparent,
        tracestate=tracestate,
        decoded=data,
    )


def _trace_context(hdrs: Mapping[str, bytes], value: bytes | None) -> tuple[str | None, str | None]:
    """The event's W3C trace context: the ``traceparent`` record header (what Kafka
    instrumentations write), else the CloudEvents distributed-tracing extension
    (``ce_traceparent`` in binary mode, ``traceparent`` in structured mode). A malformed
    value is dropped, never rejected: tracing must not cost an event its delivery."""
    for parent, state in (("traceparent", "tracestate"), ("ce_traceparent", "ce_tracestate")):
        if parent in hdrs:
            traceparent = valid_traceparent(hdrs[parent])
            if traceparent is not None:
                return traceparent, valid_tracestate(hdrs.get(state))
    # Structured mode: only events that name the attribute pay for a second parse.
    if value and value[:1] == b"{" and b'"traceparent"' in value and "ce_specversion" not in hdrs:
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None, None
        if isinstance(obj, dict) and "specversion" in obj:
            found, found_state = obj.get("traceparent"), obj.get("tracestate")
            traceparent = valid_traceparent(found) if isinstance(found, str) else None
            if traceparent is not None:
                tracestate = found_state if isinstance(found_state, str) else None
                return traceparent, valid_tracestate(tracestate)
    return None, None


# (id, type, tenant_id, occurred_at, data); validated by the caller.
_Attrs = tuple[Any, Any, Any, Any, Any]


def _from_avro(value: bytes) -> _Attrs:
    name, env = decode_single_object(value)
    if name != "event_envelope":
        raise RejectedEvent(f"unsupported_avro_schema: {name} (expected event_envelope)")
    data = _loads(env["data"].encode(), "invalid_json: data: ")
    return env["id"], env["type"], env["tenant_id"], env["occurred_at"], data


def _from_binary_cloudevent(value: bytes, hdrs: Mapping[str, bytes]) -> _Attrs:
    def header(name: str) -> str | None:
        raw = hdrs.get(name)
        if raw is None:
            return None
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise RejectedEvent(f"invalid_header: {name} is not UTF-8") from None

    content_type = header("content-type") or header("ce_datacontenttype")
    data = _data_from_bytes(value, content_type) if value else None
    return header("ce_id"), header("ce_type"), header("ce_tenantid"), header("ce_time"), data


def _from_json(value: bytes) -> _Attrs:
    obj = _loads(value, "invalid_json: ")
    if not isinstance(obj, dict):
        raise RejectedEvent(f"invalid_envelope: expected a JSON object, got {_json_name(obj)}")
    if "specversion" not in obj:
        return (
            obj.get("id"),
            obj.get("type", _MISSING),
            obj.get("tenant_id"),
            obj.get("occurred_at"),
            obj.get("data"),
        )
    data = obj.get("data")
    if "data_base64" in obj:
        if "data" in obj:
            raise RejectedEvent("invalid_cloudevent: both data and data_base64")
        encoded = obj["data_base64"]
        if not isinstance(encoded, str):
            raise RejectedEvent("invalid_cloudevent: data_base64 must be a string")
        try:
            body = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise RejectedEvent("invalid_cloudevent: data_base64 is not base64") from None
        content_type = obj.get("datacontenttype")
        data = _data_from_bytes(body, content_type if isinstance(content_type, str) else None)
    return obj.get("id"), obj.get("type", _MISSING), obj.get("tenantid"), obj.get("time"), data


def _data_from_bytes(body: bytes, content_type: str | None) -> Any:
    media = (content_type or "application/json").split(";", 1)[0].strip().lower()
    if media in ("application/json", "text/json") or media.endswith("+json"):
        return _loads(body, "invalid_json: ")
    if media.startswith("text/"):
        try:
            return body.decode()
        except UnicodeDecodeError:
            raise RejectedEvent("invalid_text: text body is not UTF-8") from None
    raise RejectedEvent(f"unsupported_content_type: {_short(media)}")


def _loads(raw: bytes, prefix: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RejectedEvent(f"{prefix}{exc}") from None


def _event_id(raw: Any, source: SourceRef) -> str:
    if raw is None:
        return derived_event_id(source.topic, source.partition, source.offset)
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    if not isinstance(raw, str) or not raw.strip():
        raise RejectedEvent("invalid_id: id must be a non-empty string")
    _check_attr("id", raw, _CONTROL_CHARS, "control characters")
    return raw


def _event_type(raw: Any) -> str:
    if raw is _MISSING or raw is None:
        raise RejectedEvent("missing_type")
    if not isinstance(raw, str) or not raw:
        raise RejectedEvent("invalid_type: type must be a non-empty string")
    _check_attr("type", raw, _BAD_TYPE_CHARS, "whitespace or control characters")
    return raw


def _tenant_id(raw: Any) -> str | None:
    if raw is None:
        return None
    # An empty tenant is refused rather than read as "no tenant": that would cross tenants.
    if not isinstance(raw, str) or not raw.strip():
        raise RejectedEvent("invalid_tenant_id: tenant_id must be a non-empty string")
    _check_attr("tenant_id", raw, _CONTROL_CHARS, "control characters")
    return raw


def _check_attr(name: str, raw: str, forbidden: re.Pattern[str], what: str) -> None:
    if len(raw) > MAX_ATTR_LEN:
        raise RejectedEvent(f"invalid_{name}: {name} longer than {MAX_ATTR_LEN} characters")
    if forbidden.search(raw):
        raise RejectedEvent(f"invalid_{name}: {name} contains {what}")


def _occurred_at(raw: Any, timestamp_ms: int | None) -> str:
    if raw is not None:
        if not isinstance(raw, str):
            raise RejectedEvent("invalid_occurred_at: must be an ISO-8601 string")
        try:
            when = datetime.fromisoformat(raw)
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return to_iso(when.timestamp())
        except (ValueError, OverflowError, OSError):
            raise RejectedEvent(
                f"invalid_occurred_at: not a valid ISO-8601 timestamp: {_short(raw)}"
            ) from None
    # Kafka uses -1 for "no timestamp".
    if timestamp_ms is not None and timestamp_ms > 0:
        return to_iso(timestamp_ms / 1000)
    return iso_now()


def _json_name(value: Any) -> str:
    return _JSON_NAMES.get(type(value), "number")


def _short(text: str, limit: int = 64) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
