"""Every accepted input form of SPEC section 3, and every rejection reason."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from webhook_stream.core.errors import RejectedEvent
from webhook_stream.core.records import Event, SourceRef, derived_event_id
from webhook_stream.core.schemas import encode_single_object
from webhook_stream.ingest.decoding import parse_event

TOPIC = "events.orders"
TS_MS = 1_795_428_000_000  # 2026-11-23T10:00:00Z
TS_ISO = "2026-11-23T10:00:00.000Z"
LIMIT = 1 << 20


def parse(
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]] = (),
    *,
    offset: int = 7,
    timestamp_ms: int | None = TS_MS,
    max_bytes: int = LIMIT,
) -> Event:
    return parse_event(TOPIC, 2, offset, value, headers, timestamp_ms, max_bytes)


def reject(value: bytes | None, headers: Sequence[tuple[str, bytes]] = (), **kw: Any) -> str:
    with pytest.raises(RejectedEvent) as info:
        parse(value, headers, **kw)
    return info.value.reason


def js(obj: Any) -> bytes:
    return orjson.dumps(obj)


# -- JSON envelope ---------------------------------------------------------------------


def test_envelope_with_everything() -> None:
    ev = parse(
        js(
            {
                "id": "evt_1",
                "type": "order.created",
                "tenant_id": "acme",
                "occurred_at": "2026-11-23T11:00:00+01:00",
                "data": {"order": 42, "tags": ["a"]},
            }
        )
    )
    assert ev == Event(
        id="evt_1",
        type="order.created",
        occurred_at=TS_ISO,
        data='{"order":42,"tags":["a"]}',
        source=SourceRef(TOPIC, 2, 7),
        tenant_id="acme",
    )
    assert orjson.loads(ev.webhook_body())["data"] == {"order": 42, "tags": ["a"]}


def test_envelope_without_id_gets_deterministic_id() -> None:
    value = js({"type": "order.created", "data": 1})
    first, again, other = parse(value), parse(value), parse(value, offset=8)
    assert first.id == again.id == derived_event_id(TOPIC, 2, 7)
    assert other.id != first.id
    assert first.tenant_id is None
    assert first.data == "1"


def test_envelope_without_data_is_null_and_time_from_kafka() -> None:
    ev = parse(js({"type": "t"}))
    assert ev.data == "null"
    assert ev.occurred_at == TS_ISO


def test_time_falls_back_to_now_without_kafka_timestamp() -> None:
    for ts in (None, -1):
        ev = parse(js({"type": "t"}), timestamp_ms=ts)
        assert ev.occurred_at.endswith("Z")
        assert ev.occurred_at > "2024"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2026-11-23T10:00:00Z", TS_ISO),
        ("2026-11-23T10:00:00.123456+00:00", "2026-11-23T10:00:00.123Z"),
        ("2026-11-23T10:00:00", TS_ISO),  # no offset: UTC
    ],
)
def test_occurred_at_normalised(given: str, expected: str) -> None:
    assert parse(js({"type": "t", "occurred_at": given})).occurred_at == expected


def test_integer_id_becomes_string() -> None:
    assert parse(js({"id": 1234, "type": "t"})).id == "1234"


def test_data_is_compact_json_text() -> None:
    ev = parse(b'{"type": "t", "data": {"b" : [1, 2.5, "\\u00e9", null] }}')
    assert ev.data == '{"b":[1,2.5,"\xe9",null]}'


# -- CloudEvents structured mode -------------------------------------------------------


def cloudevent(**changes: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": "ce-1",
        "type": "com.example.order.created",
        "source": "/orders",
        "time": "2026-11-23T10:00:00Z",
        "tenantid": "acme",
        "datacontenttype": "application/json",
        "data": {"order": 42},
    } | changes


def test_structured_cloudevent() -> None:
    ev = parse(js(cloudevent()))
    assert (ev.id, ev.type, ev.tenant_id, ev.occurred_at) == (
        "ce-1",
        "com.example.order.created",
        "acme",
        TS_ISO,
    )
    assert ev.data == '{"order":42}'


def test_structured_cloudevent_ignores_envelope_names() -> None:
    ev = parse(js(cloudevent(tenant_id="other", tenantid=None, id=None)))
    assert ev.tenant_id is None
    assert ev.id == derived_event_id(TOPIC, 2, 7)


def test_structured_cloudevent_data_base64_json() -> None:
    b64 = base64.b64encode(b'{"order": 42}').decode()
    value = cloudevent(data_base64=b64)
    del value["data"], value["datacontenttype"]
    assert parse(js(value)).data == '{"order":42}'


def test_structured_cloudevent_data_base64_text() -> None:
    value = cloudevent(
        data_base64=base64.b64encode(b"hello").decode(), datacontenttype="text/plain"
    )
    del value["data"]
    assert parse(js(value)).data == '"hello"'


def test_structured_cloudevent_data_base64_binary_refused() -> None:
    value = cloudevent(
        data_base64=base64.b64encode(b"\x00\x01").decode(),
        datacontenttype="application/octet-stream",
    )
    del value["data"]
    assert reject(js(value)) == "unsupported_content_type: 'application/octet-stream'"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"data_base64": "e30="}, "invalid_cloudevent: both data and data_base64"),
        ({"data": None, "data_base64": 5}, "invalid_cloudevent: both data and data_base64"),
    ],
)
def test_structured_cloudevent_bad_data(changes: dict[str, Any], reason: str) -> None:
    assert reject(js(cloudevent(**changes))) == reason


@pytest.mark.parametrize(
    ("data_base64", "reason"),
    [
        (5, "invalid_cloudevent: data_base64 must be a string"),
        ("not base64!", "invalid_cloudevent: data_base64 is not base64"),
    ],
)
def test_structured_cloudevent_bad_base64(data_base64: Any, reason: str) -> None:
    value = cloudevent(data_base64=data_base64)
    del value["data"]
    assert reject(js(value)) == reason


# -- CloudEvents binary mode -----------------------------------------------------------


def ce_headers(**extra: str) -> list[tuple[str, bytes]]:
    headers = {
        "ce_specversion": "1.0",
        "ce_id": "ce-9",
        "ce_type": "order.paid",
        "ce_source": "/orders",
        "ce_time": "2026-11-23T10:00:00Z",
        "ce_tenantid": "acme",
    } | extra
    return [(k, v.encode()) for k, v in headers.items()]


def test_binary_cloudevent_json_body() -> None:
    ev = parse(b'{"order": 42}', ce_headers(**{"content-type": "application/json; charset=utf-8"}))
    assert (ev.id, ev.type, ev.tenant_id, ev.occurred_at, ev.data) == (
        "ce-9",
        "order.paid",
        "acme",
        TS_ISO,
        '{"order":42}',
    )


def test_binary_cloudevent_header_names_case_insensitive() -> None:
    headers = [(k.upper(), v) for k, v in ce_headers()]
    ev = parse(b"[1]", headers)
    assert (ev.id, ev.type, ev.data) == ("ce-9", "order.paid", "[1]")


@pytest.mark.parametrize(
    ("header", "content_type"),
    [("content-type", "application/vnd.api+json"), ("ce_datacontenttype", "text/json")],
)
def test_binary_cloudevent_jsonish_content_types(header: str, content_type: str) -> None:
    assert parse(b'{"a":1}', ce_headers(**{header: content_type})).data == '{"a":1}'


def test_binary_cloudevent_text_body_becomes_json_string() -> None:
    ev = parse('héllo "x"'.encode(), ce_headers(**{"content-type": "text/plain"}))
    assert orjson.loads(ev.data) == 'héllo "x"'


def test_binary_cloudevent_without_body_has_null_data() -> None:
    for value in (None, b""):
        ev = parse(value, ce_headers())
        assert ev.data == "null"


def test_binary_cloudevent_without_id_or_time() -> None:
    headers = [(k, v) for k, v in ce_headers() if k not in ("ce_id", "ce_time")]
    ev = parse(b"{}", headers)
    assert ev.id == derived_event_id(TOPIC, 2, 7)
    assert ev.occurred_at == TS_ISO


@pytest.mark.parametrize(
    ("headers", "value", "reason"),
    [
        (ce_headers(**{"content-type": "application/xml"}), b"<a/>", "unsupported_content_type"),
        (ce_headers(**{"content-type": "text/plain"}), b"\xff", "invalid_text"),
        (ce_headers(), b"{nope", "invalid_json"),
        ([(k, v) for k, v in ce_headers() if k != "ce_type"], b"{}", "missing_type"),
        ([*ce_headers(), ("CE_TYPE", b"x")], b"{}", None),  # first header wins
        ([*ce_headers()[:2], ("ce_type", b"\xff")], b"{}", "invalid_header"),
    ],
)
def test_binary_cloudevent_rejections(
    headers: list[tuple[str, bytes]], value: bytes, reason: str | None
) -> None:
    if reason is None:
        assert parse(value, headers).type == "order.paid"
    else:
        assert reject(value, headers).split(":")[0] == reason


# -- Avro single-object ----------------------------------------------------------------


def avro_value(**changes: Any) -> bytes:
    datum = {
        "id": "evt_avro",
        "type": "order.created",
        "tenant_id": "acme",
        "occurred_at": "2026-11-23T10:00:00Z",
        "data": '{"order": 42}',
    } | changes
    return encode_single_object("event_envelope", datum)


def test_avro_envelope() -> None:
    ev = parse(avro_value())
    assert (ev.id, ev.type, ev.tenant_id, ev.occurred_at, ev.data) == (
        "evt_avro",
        "order.created",
        "acme",
        TS_ISO,
        '{"order":42}',
    )


def test_avro_envelope_minimal() -> None:
    ev = parse(avro_value(id=None, tenant_id=None, occurred_at=None, data="null"))
    assert ev.id == derived_event_id(TOPIC, 2, 7)
    assert (ev.tenant_id, ev.occurred_at, ev.data) == (None, TS_ISO, "null")


def test_avro_rejections() -> None:
    unknown = b"\xc3\x01" + b"\x11" * 8 + b"\x00"
    assert reject(unknown) == "unknown_avro_fingerprint: 1111111111111111"
    assert reject(avro_value()[:-3]).startswith("invalid_avro: ")
    assert reject(avro_value(data="{bad")).startswith("invalid_json: data: ")
    assert reject(avro_value(type="")) == "invalid_type: type must be a non-empty string"
    delivery = {
        "delivery_id": "msg_1",
        "endpoint_id": "ep",
        "tenant_id": None,
        "event": {
            "id": "e",
            "type": "t",
            "occurred_at": TS_ISO,
            "tenant_id": None,
            "data": "1",
            "source": {"topic": TOPIC, "partition": 0, "offset": 1},
        },
        "created_at": TS_ISO,
        "attempts": 0,
        "first_attempt_at": None,
        "last_attempt_at": None,
        "last_status_code": None,
        "last_error": None,
        "due_at_ms": None,
        "origin": "event",
        "prior_attempts": 0,
    }
    assert reject(encode_single_object("delivery", delivery)) == (
        "unsupported_avro_schema: delivery (expected event_envelope)"
    )


# -- rejections common to all forms ----------------------------------------------------


def test_size_checked_first() -> None:
    assert reject(b"x" * 2_000_123, max_bytes=1_048_576) == (
        "too_large: 2000123 bytes > limit 1048576"
    )
    big = js({"type": "t", "data": "x" * 100})
    assert reject(big, ce_headers(), max_bytes=50).startswith("too_large: ")
    assert parse(big, max_bytes=len(big)).type == "t"


@pytest.mark.parametrize("value", [None, b""])
def test_empty_value(value: bytes | None) -> None:
    assert reject(value) == "empty_value"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{nope", "invalid_json: "),
        (b"\xff\xfe", "invalid_json: "),
        (b"[1, 2]", "invalid_envelope: expected a JSON object, got array"),
        (b'"order.created"', "invalid_envelope: expected a JSON object, got string"),
        (b"42", "invalid_envelope: expected a JSON object, got number"),
        (b"null", "invalid_envelope: expected a JSON object, got null"),
    ],
)
def test_not_an_envelope(value: bytes, reason: str) -> None:
    assert reject(value).startswith(reason)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"data": 1}, "missing_type"),
        ({"type": None}, "missing_type"),
        ({"type": ""}, "invalid_type: type must be a non-empty string"),
        ({"type": 5}, "invalid_type: type must be a non-empty string"),
        ({"type": "a" * 257}, "invalid_type: type longer than 256 characters"),
        ({"type": "order created"}, "invalid_type: type contains whitespace or control characters"),
        ({"type": "order\x00"}, "invalid_type: type contains whitespace or control characters"),
        ({"type": "t", "id": ""}, "invalid_id: id must be a non-empty string"),
        ({"type": "t", "id": "  "}, "invalid_id: id must be a non-empty string"),
        ({"type": "t", "id": True}, "invalid_id: id must be a non-empty string"),
        ({"type": "t", "id": {"a": 1}}, "invalid_id: id must be a non-empty string"),
        ({"type": "t", "id": "x" * 257}, "invalid_id: id longer than 256 characters"),
        ({"type": "t", "id": "a\nb"}, "invalid_id: id contains control characters"),
        ({"type": "t", "tenant_id": ""}, "invalid_tenant_id: tenant_id must be a non-empty string"),
        ({"type": "t", "tenant_id": 3}, "invalid_tenant_id: tenant_id must be a non-empty string"),
        (
            {"type": "t", "occurred_at": 1700000000},
            "invalid_occurred_at: must be an ISO-8601 string",
        ),
        (
            {"type": "t", "occurred_at": "yesterday"},
            "invalid_occurred_at: not a valid ISO-8601 timestamp: 'yesterday'",
        ),
    ],
)
def test_envelope_rejections(event: dict[str, Any], reason: str) -> None:
    assert reject(js(event)) == reason


def test_type_limits_accepted() -> None:
    assert parse(js({"type": "a" * 256, "id": "i" * 256})).type == "a" * 256
