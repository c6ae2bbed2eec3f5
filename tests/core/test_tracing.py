"""Trace context: parsed from events, kept on every record, free when tracing is off."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest

from webhook_stream.core import tracing
from webhook_stream.core.records import (
    DeadLetterRecord,
    Delivery,
    Event,
    SourceRef,
    record_headers,
)
from webhook_stream.core.schemas import conforms, validation_errors
from webhook_stream.ingest.decoding import parse_event

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TS = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (TP, TP),
        (TP.upper().encode(), TP),
        (f" {TP} ", TP),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None),  # zero trace id
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", None),  # zero span id
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None),  # version ff
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", None),
        (TP + "\r\nx-evil: 1", None),
        (b"\xff\xfe", None),
        ("", None),
        (None, None),
    ],
)
def test_valid_traceparent(raw: str | bytes | None, expected: str | None) -> None:
    assert tracing.valid_traceparent(raw) == expected


def test_valid_tracestate_refuses_what_is_not_header_safe() -> None:
    assert tracing.valid_tracestate(TS) == TS
    assert tracing.valid_tracestate("a=b\r\nx: y") is None
    assert tracing.valid_tracestate("a=" + "x" * 600) is None
    assert tracing.valid_tracestate("") is None


def test_log_ids() -> None:
    expected = "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7"
    assert tracing.log_ids(TP) == expected
    assert tracing.log_ids(None) == "trace_id=- span_id=-"


def _parse(value: bytes, headers: list[tuple[str, bytes]]) -> Event:
    return parse_event("events.t", 0, 7, value, headers, 1_700_000_000_000, 100_000)


def test_trace_context_from_record_headers() -> None:
    ev = _parse(b'{"type": "a.b"}', [("traceparent", TP.encode()), ("tracestate", TS.encode())])
    assert (ev.traceparent, ev.tracestate) == (TP, TS)


def test_trace_context_from_binary_cloudevent() -> None:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_type", b"a.b"),
        ("ce_id", b"1"),
        ("ce_traceparent", TP.encode()),
        ("content-type", b"application/json"),
    ]
    ev = _parse(b'{"x": 1}', headers)
    assert (ev.traceparent, ev.tracestate) == (TP, None)


def test_trace_context_from_structured_cloudevent() -> None:
    ce = {"specversion": "1.0", "id": "1", "type": "a.b", "source": "/s", "data": {}}
    value = orjson.dumps({**ce, "traceparent": TP, "tracestate": TS})
    ev = _parse(value, [])
    assert (ev.traceparent, ev.tracestate) == (TP, TS)


def test_header_wins_and_garbage_is_dropped_not_rejected() -> None:
    other = "00-11111111111111111111111111111111-2222222222222222-00"
    value = orjson.dumps({"specversion": "1.0", "type": "a.b", "traceparent": other})
    assert _parse(value, [("traceparent", TP.encode())]).traceparent == TP
    ev = _parse(b'{"type": "a.b"}', [("traceparent", b"not-a-traceparent")])
    assert ev.type == "a.b" and ev.traceparent is None
    # An envelope's own "traceparent" field is data, not the CloudEvents extension.
    assert _parse(orjson.dumps({"type": "a.b", "traceparent": TP}), []).traceparent is None


def _delivery(**changes: object) -> Delivery:
    event = Event("e1", "a.b", "2026-11-23T10:00:00.000Z", "{}", SourceRef("events.t", 0, 7))
    return Delivery("msg_1", "ep_1", None, event, "2026-11-23T10:00:00.000Z", **changes)  # type: ignore[arg-type]


def test_delivery_and_deadletter_carry_trace_context_and_conform() -> None:
    delivery = _delivery(traceparent=TP, tracestate=TS, attempts=2)
    raw = delivery.encode()
    assert conforms("delivery", orjson.loads(raw)), validation_errors("delivery", orjson.loads(raw))
    back = Delivery.decode(raw)
    assert (back.traceparent, back.tracestate) == (TP, TS)
    dead = DeadLetterRecord(back, "exhausted").encode()
    assert conforms("deadletter", orjson.loads(dead))
    replayed = DeadLetterRecord.to_delivery(dead)
    assert (replayed.traceparent, replayed.tracestate, replayed.origin) == (TP, TS, "replay")


def test_records_written_before_tracing_still_read() -> None:
    old = _delivery().to_dict()
    del old["traceparent"], old["tracestate"]
    assert Delivery.decode(orjson.dumps(old)).traceparent is None
    dead = DeadLetterRecord(_delivery(), "exhausted").to_dict()
    del dead["traceparent"], dead["tracestate"]
    assert DeadLetterRecord.to_delivery(orjson.dumps(dead)).traceparent is None


def test_record_headers_carry_trace_context() -> None:
    assert ("traceparent", TP.encode()) in record_headers("msg_1", "pending", TP, TS)
    assert ("tracestate", TS.encode()) in record_headers("msg_1", "pending", TP, TS)
    assert [k for k, _ in record_headers("msg_1", "pending")] == ["ws-delivery-id", "ws-status"]


@pytest.mark.parametrize("env", [{}, {"OTEL_TRACES_EXPORTER": "none"}])
def test_off_by_default_loads_no_sdk(env: dict[str, str]) -> None:
    """Tracing off: the worker's modules and ``from_env`` create no tracer provider or
    exporter -- the SDK is not even imported (checked in a clean interpreter)."""
    code = (
        "import sys\n"
        "import webhook_stream.runtime, webhook_stream.application\n"
        "from webhook_stream.core import tracing\n"
        "t = tracing.from_env()\n"
        "assert t is tracing.OFF and not t.enabled, t\n"
        "assert t.attempt('http://x/', 'm', 'e', 1, None, None) is None\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')"
        " or m.startswith('opentelemetry.exporter'))\n"
        "assert not loaded, loaded\n"
        "from opentelemetry import trace\n"
        "assert type(trace.get_tracer_provider()).__name__ == 'ProxyTracerProvider'\n"
        "print('ok')\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_off_passes_the_events_context_on() -> None:
    assert tracing.OFF.fanout("events.t", 0, 1, "a.b", 2, TP, TS) == (TP, TS)
    assert tracing.OFF.attempt("http://x/", "m", "e", 1, TP, TS) is None


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"},
        {"OTEL_TRACES_EXPORTER": " None "},
    ],
)
def test_disabled_forms(env: dict[str, str]) -> None:
    assert not tracing.enabled_in(env)


def test_safe_url_drops_userinfo_query_and_fragment() -> None:
    full, host, port = tracing._safe_url("https://u:pw@hooks.example.com/p/a?token=s3cret#f")
    assert (full, host, port) == ("https://hooks.example.com/p/a", "hooks.example.com", 443)
    assert tracing._safe_url("http://[::1]:8080/x?y=1")[0] == "http://[::1]:8080/x"


def test_safe_url_redacts_token_like_path_segments() -> None:
    slack = "https://hooks.slack.com/services/T0AAAA1/B0BBBB2/Xk29fjslQp3nd8Ws91mZqr7T"
    assert tracing._safe_url(slack)[0] == (
        "https://hooks.slack.com/services/T0AAAA1/B0BBBB2/REDACTED"
    )
    plain = "https://example.com/webhooks/orders-created-v2/incoming"
    assert tracing._safe_url(plain)[0] == plain
