"""The records the worker writes conform to ``schemas/*.avsc``; single-object encoding."""

from __future__ import annotations

import copy
from typing import Any

import avro.schema
import orjson
import pytest

from webhook_stream.core.errors import RejectedEvent
from webhook_stream.core.records import (
    AttemptRecord,
    DeadLetterRecord,
    Delivery,
    Event,
    RejectedRecord,
    SourceRef,
    delivery_id_for,
)
from webhook_stream.core.schemas import (
    conforms,
    decode_single_object,
    encode_single_object,
    fingerprint,
    load_schema,
    schema_names,
    validation_errors,
)


def make_event(tenant_id: str | None = "acme") -> Event:
    return Event(
        id="evt_1",
        type="order.created",
        occurred_at="2026-11-23T10:00:00.000Z",
        data='{"order":42,"items":[1,2]}',
        source=SourceRef("events.orders", 3, 2**40),
        tenant_id=tenant_id,
    )


def make_delivery(**changes: Any) -> Delivery:
    event = make_event()
    fields: dict[str, Any] = {
        "delivery_id": delivery_id_for(event.id, "ep_orders"),
        "endpoint_id": "ep_orders",
        "tenant_id": event.tenant_id,
        "event": event,
        "created_at": "2026-11-23T10:00:01.000Z",
    }
    fields.update(changes)
    return Delivery(**fields)


def retried_delivery() -> Delivery:
    return make_delivery(
        attempts=3,
        first_attempt_at="2026-11-23T10:00:01.000Z",
        last_attempt_at="2026-11-23T10:05:00.000Z",
        last_status_code=503,
        last_error="http_503",
        due_at_ms=1_795_000_000_000,
        origin="retry",
    )


def test_every_schema_parses_and_has_distinct_fingerprint() -> None:
    names = schema_names()
    assert set(names) >= {
        "attempt",
        "deadletter",
        "delivery",
        "delivery_progress",
        "endpoint_flow",
        "event",
        "event_envelope",
        "rejected",
        "subscription",
    }
    fps = {fingerprint(load_schema(n)) for n in names}
    assert len(fps) == len(names)
    assert load_schema("event_envelope").fullname == "webhook_stream.EventEnvelope"
    assert load_schema("delivery") is load_schema("delivery")


def test_unknown_schema_name() -> None:
    with pytest.raises(KeyError):
        load_schema("nope")
    with pytest.raises(KeyError):
        load_schema("../pyproject")


@pytest.mark.parametrize("tenant_id", ["acme", None])
def test_event_conforms(tenant_id: str | None) -> None:
    assert conforms("event", make_event(tenant_id).to_dict())


@pytest.mark.parametrize("delivery", [make_delivery(), retried_delivery()])
def test_delivery_conforms(delivery: Delivery) -> None:
    datum = orjson.loads(delivery.encode())
    assert validation_errors("delivery", datum) == []
    assert conforms("delivery", datum)


@pytest.mark.parametrize(
    "record",
    [
        AttemptRecord(
            delivery_id="msg_1",
            endpoint_id="ep_orders",
            tenant_id="acme",
            event_id="evt_1",
            event_type="order.created",
            attempt=1,
            outcome="succeeded",
            status_code=200,
            error=None,
            duration_ms=12.5,
            response_body="ok",
            attempted_at="2026-11-23T10:00:01.000Z",
        ),
        AttemptRecord(
            delivery_id="msg_1",
            endpoint_id="ep_orders",
            tenant_id=None,
            event_id="evt_1",
            event_type="order.created",
            attempt=4,
            outcome="retrying",
            status_code=None,
            error="timeout",
            duration_ms=10_000.0,
            response_body="",
            attempted_at="2026-11-23T10:00:01.000Z",
        ),
    ],
)
def test_attempt_conforms(record: AttemptRecord) -> None:
    datum = orjson.loads(record.encode())
    assert validation_errors("attempt", datum) == []


@pytest.mark.parametrize("delivery", [make_delivery(), retried_delivery()])
def test_deadletter_conforms(delivery: Delivery) -> None:
    datum = orjson.loads(DeadLetterRecord(delivery, reason="http_410").encode())
    assert validation_errors("deadletter", datum) == []


@pytest.mark.parametrize(
    ("key", "value", "headers"),
    [
        (b"k", b"\xff\x00garbage", [("ce_type", b"x"), ("empty", b"")]),
        (None, None, []),
    ],
)
def test_rejected_conforms(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
) -> None:
    record = RejectedRecord("invalid_json: x", SourceRef("events.a", 0, 7), key, value, headers)
    datum = orjson.loads(record.encode())
    assert validation_errors("rejected", datum) == []


def test_subscription_conforms() -> None:
    minimal = {
        "id": "ep_orders",
        "url": "https://example.com/hooks",
        "event_types": ["order.*"],
        "headers": {},
        "disabled": False,
    }
    full = minimal | {
        "tenant_id": "acme",
        "secret": "whsec_c2VjcmV0",
        "headers": {"X-Team": "a"},
        "description": "orders",
        "timeout_s": 10.0,
        "max_attempts": 5,
        "retry_schedule": ["5s", "30s"],
        "retry_status_codes": [409],
        "rate_limit_per_s": 2.5,
        "max_in_flight": 1,
        "ordering": "strict",
        "previous_secrets": [{"secret": "whsec_b2xk", "expires_at": "2026-11-24T10:00:00Z"}],
        "created_at": "2026-11-23T10:00:00Z",
        "updated_at": "2026-11-23T10:00:00Z",
    }
    assert validation_errors("subscription", minimal) == []
    assert validation_errors("subscription", full) == []


def test_validation_errors_name_the_field() -> None:
    datum = orjson.loads(retried_delivery().encode())
    bad = copy.deepcopy(datum)
    bad["event"]["source"]["offset"] = "12"
    bad["attempts"] = None
    del bad["created_at"]
    bad["extra"] = 1
    errors = validation_errors("delivery", bad)
    assert not conforms("delivery", bad)
    assert "event.source.offset: expected long, got str" in errors
    assert "attempts: expected int, got NoneType" in errors
    assert "created_at: missing required field (string)" in errors
    assert "extra: unexpected field" in errors
    assert len(errors) == 4


def test_validation_errors_never_show_values() -> None:
    sub = {
        "id": "ep",
        "url": "https://example.com",
        "event_types": ["*"],
        "headers": {"X-A": 1},
        "disabled": False,
        "secret": 12345,
        "previous_secrets": [{"secret": "whsec_topsecret"}],
    }
    errors = validation_errors("subscription", sub)
    assert "secret: expected [null, string], got int" in errors
    assert "headers['X-A']: expected string, got int" in errors
    assert "previous_secrets[0].expires_at: missing required field (string)" in errors
    assert not any("12345" in e or "topsecret" in e for e in errors)


def test_validation_errors_on_non_record() -> None:
    assert validation_errors("attempt", [1]) == [
        "<root>: expected webhook_stream.Attempt, got list"
    ]


def test_fingerprint_matches_avro_reference_vectors() -> None:
    # CRC-64-AVRO test vectors from the Avro project, little-endian as in single-object encoding.
    assert fingerprint(avro.schema.parse('"null"')).hex() == "8a8f25cce724dd63"
    assert fingerprint(avro.schema.parse('"int"')).hex() == "8f5c393f1ad57572"


def envelope(**changes: Any) -> dict[str, Any]:
    return {
        "id": "evt_1",
        "type": "order.created",
        "tenant_id": None,
        "occurred_at": None,
        "data": '{"a":1}',
    } | changes


def test_single_object_round_trip() -> None:
    datum = envelope(tenant_id="acme", occurred_at="2026-11-23T10:00:00Z")
    raw = encode_single_object("event_envelope", datum)
    assert raw[:2] == b"\xc3\x01"
    assert raw[2:10] == fingerprint(load_schema("event_envelope"))
    assert decode_single_object(raw) == ("event_envelope", datum)


def test_single_object_other_schema_round_trip() -> None:
    datum = orjson.loads(retried_delivery().encode())
    assert decode_single_object(encode_single_object("delivery", datum)) == ("delivery", datum)


def test_encode_refuses_non_conforming() -> None:
    with pytest.raises(ValueError, match="type: expected string, got int"):
        encode_single_object("event_envelope", envelope(type=5))


def test_decode_unknown_fingerprint() -> None:
    raw = b"\xc3\x01" + bytes.fromhex("0102030405060708") + b"\x00"
    with pytest.raises(RejectedEvent) as info:
        decode_single_object(raw)
    assert info.value.reason == "unknown_avro_fingerprint: 0102030405060708"


@pytest.mark.parametrize("cut", [1, 5, 10])
def test_decode_truncated(cut: int) -> None:
    raw = encode_single_object("event_envelope", envelope())
    with pytest.raises(RejectedEvent) as info:
        decode_single_object(raw[: len(raw) - cut])
    assert info.value.reason.startswith("invalid_avro: ")


def test_decode_trailing_bytes_and_bad_header() -> None:
    raw = encode_single_object("event_envelope", envelope())
    with pytest.raises(RejectedEvent, match="invalid_avro: event_envelope: 2 trailing bytes"):
        decode_single_object(raw + b"\x00\x00")
    with pytest.raises(RejectedEvent, match="invalid_avro: not single-object"):
        decode_single_object(b"\xc3\x01\x00")


def test_decode_invalid_utf8_string() -> None:
    raw = encode_single_object("event_envelope", envelope(data="ab"))
    with pytest.raises(RejectedEvent, match="invalid_avro: malformed event_envelope"):
        decode_single_object(raw[:-2] + b"\xff\xfe")
