"""Endpoint health rule: when it disables, and what it writes (only on changes)."""

from __future__ import annotations

import orjson

from webhook_stream.core.schemas import validation_errors
from webhook_stream.core.settings import Settings
from webhook_stream.delivery.health import NO_WRITE, EndpointHealth


def test_healthy_traffic_writes_nothing_and_changes_write_once_each() -> None:
    health = EndpointHealth(Settings.from_env({}))
    ok = {"succeeded": True, "status": 200, "dead_lettered": False}
    bad = {"succeeded": False, "status": 400, "dead_lettered": True}
    for i in range(100):
        assert health.record("ep", 1, now=float(i), **ok) == (None, NO_WRITE)
    reason, written = health.record("ep", 1, now=100.0, **bad)
    assert reason is None and written is not None and written is not NO_WRITE
    doc = orjson.loads(written)
    assert doc["consecutive_dead_letters"] == 1 and doc["version"] == 1
    assert validation_errors("endpoint_health", doc) == []
    assert health.record("ep", 1, now=101.0, **ok) == (None, None)  # streak over: tombstone
    assert health.record("ep", 1, now=102.0, **ok) == (None, NO_WRITE)
    # A new version (the user changed the endpoint) starts afresh.
    health.record("ep", 1, now=103.0, **bad)
    _, written = health.record("ep", 2, now=104.0, **bad)
    assert orjson.loads(written)["consecutive_failures"] == 1


def test_410_disables_and_records_when() -> None:
    health = EndpointHealth(Settings.from_env({}))
    reason, written = health.record(
        "ep", 3, succeeded=False, status=410, dead_lettered=True, now=1_800_000_000.0
    )
    assert reason == "gone"
    doc = orjson.loads(written)
    assert doc["disabled_reason"] == "gone" and doc["disabled_at"].startswith("2027-01-15")
