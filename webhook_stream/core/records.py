"""Every record webhook-stream writes to Kafka, in one place.

Each record is JSON on the wire (orjson) and has an Avro schema of the same shape in
``schemas/``. ``data`` fields hold the event's data as JSON *text*: it is parsed once on
the way in and spliced verbatim into the webhook body, never decoded again.
"""

from __future__ import annotations

import base64
import hashlib
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = [
    "H_DELIVERY",
    "H_INCARNATION",
    "H_STATUS",
    "AttemptRecord",
    "DeadLetterRecord",
    "Delivery",
    "EndpointStatusRecord",
    "Event",
    "RejectedRecord",
    "SourceRef",
    "delivery_id_for",
    "derived_event_id",
    "iso_now",
    "record_headers",
    "to_iso",
]

# Kafka headers on what the worker writes; the status view reads only these.
H_DELIVERY = "ws-delivery-id"
H_STATUS = "ws-status"
#: The endpoint's incarnation (``Subscription.incarnation``); absent on older records.
H_INCARNATION = "ws-incarnation"


def record_headers(
    delivery_id: str,
    status: str,
    traceparent: str | None = None,
    tracestate: str | None = None,
    *,
    incarnation: str | None = None,
) -> list[tuple[str, bytes]]:
    """The ``ws-*`` headers of a delivery, attempt or dead-letter record, and its trace
    context as W3C headers (what Kafka instrumentations of its consumers read)."""
    headers = [(H_DELIVERY, delivery_id.encode()), (H_STATUS, status.encode())]
    if incarnation is not None:
        headers.append((H_INCARNATION, incarnation.encode()))
    if traceparent is not None:
        headers.append(("traceparent", traceparent.encode()))
        if tracestate is not None:
            headers.append(("tracestate", tracestate.encode()))
    return headers


#: Date-time text of recent whole seconds. More than one: a record's own timestamp and
#: "now" are often a second apart, and one entry would be reformatted on every call.
_seconds: dict[int, str] = {}


def to_iso(ts: float) -> str:
    """Unix seconds to ISO-8601 UTC with millisecond precision (``2026-11-23T10:00:00.000Z``).

    Called several times per delivery: each whole second's date-time is formatted once.
    """
    frac, whole = math.modf(ts)  # rounded the way datetime.fromtimestamp rounds
    second, micros = int(whole), round(frac * 1_000_000)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    elif micros < 0:
        second, micros = second - 1, micros + 1_000_000
    text = _seconds.get(second)
    if text is None:
        if len(_seconds) >= 64:
            _seconds.clear()
        text = _seconds[second] = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{micros // 1000:03d}Z"


def iso_now() -> str:
    return to_iso(time.time())


def derived_event_id(topic: str, partition: int, offset: int) -> str:
    """Deterministic id for an event that has none, so replays of the same offsets dedup."""
    digest = hashlib.sha256(f"{topic}\x00{partition}\x00{offset}".encode()).hexdigest()
    return f"evt_{digest[:26]}"


def delivery_id_for(event_id: str, endpoint_id: str) -> str:
    """The ``webhook-id``: stable for one (event, endpoint) pair across retries and replays."""
    digest = hashlib.sha256(f"{event_id}\x00{endpoint_id}".encode()).hexdigest()
    return f"msg_{digest[:26]}"


@dataclass(slots=True)
class SourceRef:
    """Where an event was read from."""

    topic: str
    partition: int
    offset: int

    def to_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SourceRef:
        return cls(d["topic"], d["partition"], d["offset"])


@dataclass(slots=True)
class Event:
    """A parsed domain event, whatever its input form."""

    id: str
    type: str
    occurred_at: str
    data: str  # JSON text
    source: SourceRef
    tenant_id: str | None = None
    #: W3C trace context the event came with (headers or CloudEvents extension). Not part
    #: of the event's record: each delivery carries its own (:attr:`Delivery.traceparent`).
    traceparent: str | None = None
    tracestate: str | None = None
    #: ``data`` as decoding parsed it, for content filters and schema checks (no second
    #: parse); ``()`` when not known (``None`` is JSON null). Never written anywhere.
    decoded: Any = field(default=(), repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "occurred_at": self.occurred_at,
            "tenant_id": self.tenant_id,
            "data": self.data,
            "source": self.source.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        return cls(
            id=d["id"],
            type=d["type"],
            occurred_at=d["occurred_at"],
            data=d["data"],
            source=SourceRef.from_dict(d["source"]),
            tenant_id=d.get("tenant_id"),
        )

    def webhook_body(self) -> bytes:
        """The Standard Webhooks body: ``{id, type, timestamp, data}``."""
        return orjson.dumps(
            {
                "id": self.id,
                "type": self.type,
                "timestamp": self.occurred_at,
                "data": orjson.Fragment(self.data),
            }
        )


@dataclass(slots=True)
class Delivery:
    """One (event, endpoint) pair on ``webhooks.deliveries`` and ``webhooks.retry.*``."""

    delivery_id: str
    endpoint_id: str
    tenant_id: str | None
    event: Event
    created_at: str
    attempts: int = 0
    first_attempt_at: str | None = None
    last_attempt_at: str | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    #: Unix milliseconds before which the next attempt must not start (retries only).
    due_at_ms: int | None = None
    #: Why this delivery exists: ``event``, ``retry``, ``replay`` or ``test``.
    origin: str = "event"
    #: W3C trace context every attempt continues (sent as ``traceparent``/``tracestate``):
    #: the event's own, or its fan-out span's when tracing is on.
    traceparent: str | None = None
    tracestate: str | None = None
    #: The incarnation of the endpoint it was made for (None: an endpoint without one,
    #: or a record written before incarnations existed).
    incarnation: str | None = None
    #: Attempts made before a replay re-queued it: the attempt log numbers on from them,
    #: while ``attempts`` (and so the retry schedule) starts again at zero.
    prior_attempts: int = 0

    @property
    def attempt_number(self) -> int:
        """The number of the latest attempt, counting those before any replay."""
        return self.prior_attempts + self.attempts

    def to_dict(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "endpoint_id": self.endpoint_id,
            "tenant_id": self.tenant_id,
            "event": self.event.to_dict(),
            "created_at": self.created_at,
            "attempts": self.attempts,
            "first_attempt_at": self.first_attempt_at,
            "last_attempt_at": self.last_attempt_at,
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
            "due_at_ms": self.due_at_ms,
            "origin": self.origin,
            "traceparent": self.traceparent,
            "tracestate": self.tracestate,
            "incarnation": self.incarnation,
            "prior_attempts": self.prior_attempts,
        }

    def encode(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def decode(cls, raw: bytes) -> Delivery:
        d = orjson.loads(raw)
        return cls(
            delivery_id=d["delivery_id"],
            endpoint_id=d["endpoint_id"],
            tenant_id=d.get("tenant_id"),
            event=Event.from_dict(d["event"]),
            created_at=d["created_at"],
            attempts=d.get("attempts", 0),
            first_attempt_at=d.get("first_attempt_at"),
            last_attempt_at=d.get("last_attempt_at"),
            last_status_code=d.get("last_status_code"),
            last_error=d.get("last_error"),
            due_at_ms=d.get("due_at_ms"),
            origin=d.get("origin", "event"),
            traceparent=d.get("traceparent"),
            tracestate=d.get("tracestate"),
            incarnation=d.get("incarnation"),
            prior_attempts=d.get("prior_attempts", 0),
        )


@dataclass(slots=True)
class AttemptRecord:
    """One HTTP attempt, on ``webhooks.attempts`` (the delivery log)."""

    delivery_id: str
    endpoint_id: str
    tenant_id: str | None
    event_id: str
    event_type: str
    attempt: int
    #: ``succeeded``, ``retrying``, ``failed`` (dead-lettered after this attempt).
    outcome: str
    status_code: int | None
    #: Error class when there was no usable response: ``timeout``, ``connect``, ...
    error: str | None
    duration_ms: float
    response_body: str
    attempted_at: str
    incarnation: str | None = None

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "delivery_id": self.delivery_id,
                "endpoint_id": self.endpoint_id,
                "tenant_id": self.tenant_id,
                "event_id": self.event_id,
                "event_type": self.event_type,
                "attempt": self.attempt,
                "outcome": self.outcome,
                "status_code": self.status_code,
                "error": self.error,
                "duration_ms": self.duration_ms,
                "response_body": self.response_body,
                "attempted_at": self.attempted_at,
                "incarnation": self.incarnation,
            }
        )


@dataclass(slots=True)
class DeadLetterRecord:
    """A delivery that will not be attempted again, on ``webhooks.deadletter``."""

    delivery: Delivery
    reason: str
    dead_lettered_at: str = field(default_factory=iso_now)

    def to_dict(self) -> dict[str, Any]:
        d = self.delivery
        return {
            "delivery_id": d.delivery_id,
            "endpoint_id": d.endpoint_id,
            "tenant_id": d.tenant_id,
            "event": d.event.to_dict(),
            "attempts": d.attempt_number,
            "last_status_code": d.last_status_code,
            "last_error": d.last_error,
            "first_attempt_at": d.first_attempt_at,
            "last_attempt_at": d.last_attempt_at,
            "created_at": d.created_at,
            "dead_lettered_at": self.dead_lettered_at,
            "reason": self.reason,
            "traceparent": d.traceparent,
            "tracestate": d.tracestate,
            "incarnation": d.incarnation,
        }

    def encode(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @staticmethod
    def to_delivery(raw: bytes) -> Delivery:
        """The delivery to re-queue when replaying this record (same ``delivery_id``)."""
        d = orjson.loads(raw)
        return Delivery(
            delivery_id=d["delivery_id"],
            endpoint_id=d["endpoint_id"],
            tenant_id=d.get("tenant_id"),
            event=Event.from_dict(d["event"]),
            created_at=d.get("created_at") or iso_now(),
            origin="replay",
            traceparent=d.get("traceparent"),
            tracestate=d.get("tracestate"),
            incarnation=d.get("incarnation"),
            prior_attempts=d.get("attempts", 0),
        )


@dataclass(slots=True)
class EndpointStatusRecord:
    """An endpoint was disabled (or re-enabled), on ``webhooks.endpoint_status``."""

    endpoint_id: str
    tenant_id: str | None
    status: str
    reason: str
    consecutive_failures: int
    first_failure_at: str | None
    at: str

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "endpoint_id": self.endpoint_id,
                "tenant_id": self.tenant_id,
                "status": self.status,
                "reason": self.reason,
                "consecutive_failures": self.consecutive_failures,
                "first_failure_at": self.first_failure_at,
                "at": self.at,
            }
        )


@dataclass(slots=True)
class RejectedRecord:
    """An input record that could not be parsed or was refused, on ``webhooks.rejected``."""

    reason: str
    source: SourceRef
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    rejected_at: str = field(default_factory=iso_now)
    #: Size of the original value; ``value`` is a prefix of it when ``truncated``.
    value_bytes: int | None = None
    #: Part of the original (value, headers, key) was left out to fit the record limit;
    #: fetch it from ``source`` while the input topic retains it.
    truncated: bool = False
    #: Reason ``undecodable``: the last offset skipped (``source.offset`` is the first).
    last_offset: int | None = None

    def encode(self) -> bytes:
        b64 = base64.b64encode
        return orjson.dumps(
            {
                "reason": self.reason,
                "source": self.source.to_dict(),
                "key_b64": None if self.key is None else b64(self.key).decode(),
                "value_b64": None if self.value is None else b64(self.value).decode(),
                "headers": [
                    {"key": k, "value_b64": b64(v or b"").decode()} for k, v in self.headers
                ],
                "rejected_at": self.rejected_at,
                "value_bytes": self.value_bytes,
                "truncated": self.truncated,
                "last_offset": self.last_offset,
            }
        )
