"""The status view's console indexes, fed records directly: counters and dead letters.

Unit tests of :class:`DeliveryLog`'s bookkeeping (no broker); the routes on top are tested
end to end in ``tests/api/test_console_routes.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import orjson

from webhook_stream.core.records import record_headers, to_iso
from webhook_stream.core.settings import Settings
from webhook_stream.core.topics import ATTEMPTS, DEADLETTER, DELIVERIES
from webhook_stream.status.stats import BUCKETS, MinuteCounts
from webhook_stream.status.view import DeliveryLog

NOW = int(time.time() * 1000)


@dataclass
class Rec:
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    timestamp: int


def attempt(did: str, ep: str, outcome: str, at: int, n: int = 1, code: int = 500) -> Rec:
    body = {
        "delivery_id": did,
        "endpoint_id": ep,
        "tenant_id": "t",
        "event_id": "e",
        "event_type": "x.y",
        "attempt": n,
        "outcome": outcome,
        "status_code": code,
        "error": None,
        "duration_ms": 1.0,
        "response_body": "",
        "attempted_at": to_iso(at / 1000),
    }
    return Rec(ep.encode(), orjson.dumps(body), record_headers(did, outcome), at)


def dead(did: str, ep: str, at: int, tenant: str | None = "t") -> Rec:
    body = {
        "delivery_id": did,
        "endpoint_id": ep,
        "tenant_id": tenant,
        "event": {"id": "e", "type": "x.y"},
        "attempts": 1,
        "last_status_code": 500,
        "last_error": None,
        "dead_lettered_at": to_iso(at / 1000),
        "reason": "exhausted",
    }
    return Rec(ep.encode(), orjson.dumps(body), record_headers(did, "dead_lettered"), at)


def test_minute_counts_keep_the_last_hour_only() -> None:
    ring = MinuteCounts()
    ring.add(NOW, True)
    ring.add(NOW, False)
    ring.add(NOW - 30 * 60_000, True)
    ring.add(NOW - 61 * 60_000, True)  # older than the hour: not counted
    assert ring.totals(NOW) == (2, 1)
    # An hour later the slot of NOW is reused, and the old counts are gone.
    later = NOW + BUCKETS * 60_000
    ring.add(later, False)
    assert ring.totals(later) == (0, 1)
    ring.add(NOW, True)  # a late record for a minute the slot no longer holds
    assert ring.totals(later) == (0, 1)
    assert len(ring.series(later)) == BUCKETS


def test_dead_letter_index_follows_the_delivery_status() -> None:
    view = DeliveryLog(Settings())
    view._apply(ATTEMPTS, attempt("d1", "ep", "failed", NOW))
    assert view.deadletters()["items"] == []  # the dead-letter record is not read yet
    view._apply(DEADLETTER, dead("d1", "ep", NOW + 1))
    view._apply(ATTEMPTS, attempt("d2", "ep", "failed", NOW + 5))
    view._apply(DEADLETTER, dead("d2", "ep", NOW + 6, tenant="other"))
    listed = view.deadletters()
    assert [d["delivery_id"] for d in listed["items"]] == ["d2", "d1"]  # newest first
    assert listed["items"][0]["reason"] == "exhausted" and listed["next"] is None
    assert [d["delivery_id"] for d in view.deadletters(tenant_id="t", scoped=True)["items"]] == [
        "d1"
    ]
    first = view.deadletters(limit=1)
    assert [d["delivery_id"] for d in first["items"]] == ["d2"]
    rest = view.deadletters(limit=1, after=first["next"])
    assert [d["delivery_id"] for d in rest["items"]] == ["d1"] and rest["next"] is None
    assert view.deadletters(since_ms=NOW + 3)["items"][0]["delivery_id"] == "d2"
    assert view.overview()["dead_letters"] == 2
    assert view.endpoint_stats(["ep"])[0]["dead_letters"] == 2

    # Replayed (a delivery record marked replay), then succeeded: it leaves the index.
    replayed = Rec(b"ep", b"{}", record_headers("d1", "replay"), NOW + 10)
    view._apply(DELIVERIES, replayed)
    assert [d["delivery_id"] for d in view.deadletters()["items"]] == ["d2"]
    view._apply(ATTEMPTS, attempt("d1", "ep", "succeeded", NOW + 11, n=2, code=200))
    stats = view.endpoint_stats(["ep", "nope"])
    assert stats[0]["dead_letters"] == 1
    assert stats[0]["succeeded_last_hour"] == 1 and stats[0]["failed_last_hour"] == 2
    assert stats[0]["last_attempt"]["outcome"] == "succeeded"
    assert stats[1] == {
        "endpoint_id": "nope",
        "succeeded_last_hour": 0,
        "failed_last_hour": 0,
        "success_rate": None,
        "last_attempt": None,
        "dead_letters": 0,
    }
    overview = view.overview(["ep"])
    assert overview["succeeded_last_hour"] == 1 and overview["dead_letters"] == 1


def test_evicted_deliveries_leave_the_dead_letter_index() -> None:
    view = DeliveryLog(replace(Settings(), status_cache_size=20))
    for i in range(30):
        view._apply(ATTEMPTS, attempt(f"d{i}", "ep", "failed", NOW + i))
        view._apply(DEADLETTER, dead(f"d{i}", "ep", NOW + i))
    assert len(view.deadletters(limit=100)["items"]) == 20
    assert view.overview()["dead_letters"] == 20
    assert view.endpoint_stats(["ep"])[0]["dead_letters"] == 20
