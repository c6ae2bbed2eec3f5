"""The status store and the assignor's arithmetic, without a broker (pure units)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from webhook_stream.core.records import (
    H_DELIVERY,
    H_INCARNATION,
    H_STATUS,
    DeadLetterRecord,
    Delivery,
    to_iso,
)
from webhook_stream.core.settings import Settings
from webhook_stream.core.topics import ATTEMPTS, DEADLETTER, DELIVERIES
from webhook_stream.status import queries
from webhook_stream.status.owners import spread
from webhook_stream.status.process import StatusProcess
from webhook_stream.status.stats import overview_body
from webhook_stream.status.store import AttemptQuery, StatusStore, decode_cursor


@dataclass
class Rec:
    """The fields of an aiokafka ConsumerRecord the store reads."""

    offset: int
    key: bytes
    value: bytes
    timestamp: int
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def attempt(off: int, ep: str, did: str, outcome: str, at: float, etype: str = "t.x") -> Rec:
    body = {
        "delivery_id": did,
        "endpoint_id": ep,
        "attempt": off,
        "outcome": outcome,
        "event_type": etype,
        "attempted_at": to_iso(at),
    }
    headers = [(H_DELIVERY, did.encode()), (H_STATUS, outcome.encode())]
    return Rec(off, ep.encode(), orjson.dumps(body), int(at * 1000), headers)


def ids(page: dict[str, Any]) -> list[int]:
    return [a["attempt"] for a in page["items"]]


def test_pages_filters_and_restart_resume(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = StatusStore(path, retention_s=3600)
    now = time.time()
    batch = [
        (ATTEMPTS, 3, attempt(i, "ep1", f"msg_{i}", "succeeded" if i % 2 else "retrying", now + i))
        for i in range(10)
    ]
    batch.append((ATTEMPTS, 3, attempt(10, "ep1", "msg_10", "failed", now + 10, etype="t.y")))
    assert store.apply(batch) == 11
    assert store.apply(batch[:3]) == 0  # applied again after a crash: ignored by offset
    assert store.counts()["attempts"] == 11

    seen, after = [], None
    while True:  # pages of 4, newest first, the cursor ends with None
        page = queries.attempts(store.db, "ep1", AttemptQuery(limit=4, after=after))
        seen += ids(page)
        if page["next"] is None:
            break
        after = decode_cursor(page["next"])
    assert seen == list(range(10, -1, -1))
    retried = queries.attempts(store.db, "ep1", AttemptQuery(limit=50, outcome="retrying"))
    assert ids(retried) == [8, 6, 4, 2, 0]
    failed = queries.attempts(store.db, "ep1", AttemptQuery(outcome="failed"))
    assert ids(failed) == [10]
    window = AttemptQuery(since_ms=int((now + 2) * 1000), until_ms=int((now + 4) * 1000))
    assert ids(queries.attempts(store.db, "ep1", window)) == [4, 3, 2]
    assert ids(queries.attempts(store.db, "ep1", AttemptQuery(event_type="t.y"))) == [10]
    assert queries.attempts(store.db, "other", AttemptQuery()) == {"items": [], "next": None}
    store.close()

    reopened = StatusStore(path, retention_s=3600)  # a restart resumes after what it applied
    assert reopened.next_offsets() == {(ATTEMPTS, 3): 11}
    assert reopened.counts()["attempts"] == 11
    reopened.close()


def test_delivery_status_newest_record_wins_and_only_served_partitions(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "s.sqlite3", retention_s=3600)
    t = time.time()
    did, ep = "msg_a", "ep1"
    headers = [(H_DELIVERY, did.encode()), (H_STATUS, b"pending")]
    dl_headers = [(H_DELIVERY, did.encode()), (H_STATUS, b"dead_lettered")]
    dead = orjson.dumps({"reason": "exhausted", "dead_lettered_at": "x", "last_error": "503"})
    store.apply(
        [
            (DELIVERIES, 1, Rec(0, ep.encode(), b"{}", int(t * 1000), headers)),
            (DEADLETTER, 1, Rec(0, ep.encode(), dead, int((t + 2) * 1000), dl_headers)),
            # read later from its own topic, but older: it must not win
            (ATTEMPTS, 1, attempt(0, ep, did, "retrying", t + 1)),
        ]
    )
    found = queries.delivery(store.db, did, {1})
    assert found is not None and found["status"] == "dead_lettered"
    assert found["dead_letter"]["reason"] == "exhausted" and len(found["attempts"]) == 1
    assert queries.delivery(store.db, did, {0, 2}) is None  # not a partition served here
    store.forget(1)
    assert queries.delivery(store.db, did, {1}) is None and store.next_offsets() == {}


def test_one_batch_ends_as_the_same_records_applied_one_by_one(tmp_path: Path) -> None:
    """The store folds a delivery's rows of one batch into one: the result must not differ
    from upserting them one by one in time order (how a batch is defined to apply)."""
    t = time.time()
    rows = []
    for n in range(6):
        did, ep = f"msg_{n}", f"ep{n % 2}"
        pending = [(H_DELIVERY, did.encode())]
        rows.append((DELIVERIES, n % 2, Rec(n, ep.encode(), b"{}", int((t + n) * 1000), pending)))
        rows.append((ATTEMPTS, n % 2, attempt(10 * n + 1, ep, did, "retrying", t + n + 0.5)))
        rows.append((ATTEMPTS, n % 2, attempt(10 * n + 2, ep, did, "succeeded", t + n + 0.5)))
    rows.append((ATTEMPTS, 1, attempt(10, "ep1", "msg_1", "retrying", t - 5)))  # older, last
    one = StatusStore(tmp_path / "one.sqlite3", retention_s=3600)
    each = StatusStore(tmp_path / "each.sqlite3", retention_s=3600)
    one.apply(rows[:3])  # a row that already exists when its next records come
    each.apply(rows[:3])
    one.apply(rows[3:])
    for row in sorted(rows[3:], key=lambda row: row[2].timestamp):
        each.apply([row])

    def table(store: StatusStore) -> list[tuple[Any, ...]]:
        return store.db.execute("SELECT * FROM deliveries ORDER BY id").fetchall()

    assert table(one) == table(each)
    assert {r[3] for r in table(one)} == {"succeeded"}


def test_retention_expires_old_rows(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "s.sqlite3", retention_s=60)
    now = time.time()
    store.apply(
        [
            (ATTEMPTS, 0, attempt(0, "ep", "msg_old", "succeeded", now - 120)),
            (ATTEMPTS, 0, attempt(1, "ep", "msg_new", "succeeded", now)),
        ]
    )
    assert store.expire() == 1
    assert ids(queries.attempts(store.db, "ep", AttemptQuery())) == [1]


def dead_letter(off: int, ep: str, did: str, at: float, tenant: str | None) -> Rec:
    body = {
        "delivery_id": did,
        "endpoint_id": ep,
        "tenant_id": tenant,
        "reason": "exhausted",
        "dead_lettered_at": to_iso(at),
        "event": {"id": f"evt_{did}", "type": "t.x"},
    }
    headers = [(H_DELIVERY, did.encode()), (H_STATUS, b"dead_lettered")]
    return Rec(off, ep.encode(), orjson.dumps(body), int(at * 1000), headers)


def test_dead_letters_paged_scoped_and_left_when_replayed(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "s.sqlite3", retention_s=3600)
    now = time.time()
    store.apply(
        [(DEADLETTER, 0, dead_letter(i, "ep_a", f"msg_{i}", now + i, "acme")) for i in range(5)]
        + [(DEADLETTER, 1, dead_letter(0, "ep_b", "msg_b", now + 9, None))]
    )
    every = queries.deadletters(store.db, [0, 1], limit=10)
    assert [i["delivery_id"] for i in every["items"]] == [
        "msg_b",
        *(f"msg_{i}" for i in (4, 3, 2, 1, 0)),
    ]
    assert every["items"][1]["event_id"] == "evt_msg_4" and every["items"][1]["tenant_id"] == "acme"
    # Limit + 1 items come back (the router decides about "next"); keys are the cursors.
    page = queries.deadletters(store.db, [0, 1], limit=2)
    assert len(page["items"]) == 3
    rest = queries.deadletters(store.db, [0, 1], limit=10, after=page["keys"][1])
    assert [i["delivery_id"] for i in rest["items"]] == ["msg_3", "msg_2", "msg_1", "msg_0"]
    acme = queries.deadletters(store.db, [0, 1], tenant_id="acme", scoped=True)
    assert len(acme["items"]) == 5
    tenantless = queries.deadletters(store.db, [0, 1], tenant_id=None, scoped=True)
    assert [i["delivery_id"] for i in tenantless["items"]] == ["msg_b"]
    assert queries.deadletters(store.db, [1], endpoint_id="ep_a")["items"] == []  # not served
    # Replayed: a newer delivery record sets it pending, and it leaves the list.
    replayed = [(H_DELIVERY, b"msg_4"), (H_STATUS, b"replay")]
    store.apply([(DELIVERIES, 0, Rec(0, b"ep_a", b"{}", int((now + 20) * 1000), replayed))])
    left = queries.deadletters(store.db, [0], limit=10)
    assert [i["delivery_id"] for i in left["items"]] == [f"msg_{i}" for i in (3, 2, 1, 0)]
    stats = queries.endpoint_stats(store.db, [("ep_a", "")], int(now * 1000))
    assert stats[0]["dead_letters"] == 4


def test_minute_counts_endpoint_stats_and_overview(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = StatusStore(path, retention_s=3600)
    now = time.time()
    batch = [
        (ATTEMPTS, 2, attempt(i, "ep1", f"m{i}", "succeeded" if i < 6 else "retrying", now))
        for i in range(8)
    ]
    batch.append((ATTEMPTS, 3, attempt(0, "ep2", "x", "failed", now - 120)))
    store.apply(batch)
    store.apply(batch)  # read again after a crash: counted once
    now_ms = int(now * 1000)
    one, two, none = queries.endpoint_stats(
        store.db, [("ep1", ""), ("ep2", ""), ("ep_none", "")], now_ms
    )
    assert (one["succeeded_last_hour"], one["failed_last_hour"]) == (6, 2)
    assert one["success_rate"] == 0.75 and one["last_attempt"]["delivery_id"] == "m7"
    assert (two["succeeded_last_hour"], two["failed_last_hour"]) == (0, 1)
    assert none["success_rate"] is None and none["last_attempt"] is None
    # Shares of two owners add up; an endpoint list counts only those endpoints.
    shares = [
        queries.overview(store.db, [2], None, now_ms),
        queries.overview(store.db, [3], None, now_ms),
    ]
    body = overview_body(shares, now_ms)
    assert (body["succeeded_last_hour"], body["failed_last_hour"]) == (6, 3)
    assert len(body["minutes"]) == 60 and body["minutes"][-1]["succeeded"] == 6
    only = overview_body([queries.overview(store.db, [2, 3], [("ep2", "")], now_ms)], now_ms)
    assert (only["succeeded_last_hour"], only["failed_last_hour"]) == (0, 1)
    store.close()
    reopened = StatusStore(path, retention_s=3600)  # counts survive a restart
    assert queries.endpoint_stats(reopened.db, [("ep1", "")], now_ms)[0]["succeeded_last_hour"] == 6
    assert reopened.expire(now_ms + 2 * 3600_000) >= 0
    assert queries.endpoint_stats(reopened.db, [("ep1", "")], now_ms)[0]["succeeded_last_hour"] == 0


def test_a_store_of_another_layout_is_rebuilt(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "s.sqlite3"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE applied (topic TEXT, part INTEGER, next INTEGER)")
    old.execute("INSERT INTO applied VALUES ('webhooks.attempts', 0, 99)")
    old.commit()
    old.close()
    store = StatusStore(path, retention_s=60)
    assert store.next_offsets() == {}  # read again from Kafka


def test_spread_is_balanced_and_sticky_to_data() -> None:
    fresh = spread(8, ["a", "b", "c"], {"a": {}, "b": {}, "c": {}})
    assert sorted(list(fresh.values()).count(m) for m in "abc") == [2, 3, 3]
    # b was killed: a and c took its partitions 3, 4 (and 5); b comes back with its store.
    applied = {
        "a": {0: 100, 1: 100, 2: 100, 3: 120, 4: 120},
        "b": {3: 90, 4: 90, 5: 90},
        "c": {5: 130, 6: 100, 7: 100},
    }
    back = spread(8, ["a", "b", "c"], applied)
    assert {p for p, m in back.items() if m == "b"} <= {3, 4, 5}
    assert {p for p, m in back.items() if m == "a"} >= {0, 1, 2}
    assert {p for p, m in back.items() if m == "c"} >= {6, 7}
    # one member owns everything
    assert set(spread(4, ["a"], {"a": {}}).values()) == {"a"}


def test_history_is_per_incarnation_and_old_records_read_as_none(tmp_path: Path) -> None:
    """Records of two incarnations of one endpoint id (and one without any, as written
    before incarnations existed) never mix: one delivery id in both is two rows."""
    store = StatusStore(tmp_path / "s.sqlite3", retention_s=3600)
    now = time.time()

    def of(rec: Rec, inc: str | None) -> Rec:
        if inc is not None:
            rec.headers.append((H_INCARNATION, inc.encode()))
        return rec

    dead = {"delivery_id": "msg_x", "tenant_id": "b", "dead_lettered_at": to_iso(now + 1)}
    batch = [
        (ATTEMPTS, 1, of(attempt(0, "ep", "msg_x", "failed", now), "inc_b")),
        (
            DEADLETTER,
            1,
            of(
                Rec(
                    0,
                    b"ep",
                    orjson.dumps(dead),
                    int(now * 1000) + 1,
                    [(H_DELIVERY, b"msg_x"), (H_STATUS, b"dead_lettered")],
                ),
                "inc_b",
            ),
        ),
        (ATTEMPTS, 1, of(attempt(1, "ep", "msg_x", "succeeded", now + 2), "inc_a")),
        (ATTEMPTS, 1, of(attempt(2, "ep", "msg_old", "succeeded", now + 3), None)),
    ]
    store.apply(batch)
    assert ids(queries.attempts(store.db, "ep", AttemptQuery(), "inc_a")) == [1]
    assert ids(queries.attempts(store.db, "ep", AttemptQuery(), "inc_b")) == [0]
    assert ids(queries.attempts(store.db, "ep", AttemptQuery(), "")) == [2]
    a, b = queries.endpoint_stats(store.db, [("ep", "inc_a"), ("ep", "inc_b")], int(now * 1000))
    assert (a["succeeded_last_hour"], a["failed_last_hour"], a["dead_letters"]) == (1, 0, 0)
    assert (b["succeeded_last_hour"], b["failed_last_hour"], b["dead_letters"]) == (0, 1, 1)
    # The newest incarnation's row answers for the shared delivery id, with its attempts.
    found = queries.delivery(store.db, "msg_x", [1])
    assert found is not None and found["incarnation"] == "inc_a"
    assert [x["attempt"] for x in found["attempts"]] == [1] and found["status"] == "succeeded"
    only_a = queries.overview(store.db, [1], [("ep", "inc_a")], int(now * 1000))
    assert only_a["dead_letters"] == 0 and sum(m[2] for m in only_a["minutes"]) == 0
    listed = queries.deadletters(store.db, [1], scopes=[("ep", "inc_a")])
    assert listed["items"] == []
    listed = queries.deadletters(store.db, [1], scopes=[("ep", "inc_b")])
    assert [d["delivery_id"] for d in listed["items"]] == ["msg_x"]


def test_records_without_an_incarnation_still_decode() -> None:
    old = {
        "delivery_id": "msg_1",
        "endpoint_id": "ep",
        "tenant_id": None,
        "event": {
            "id": "e1",
            "type": "t.x",
            "occurred_at": to_iso(0),
            "data": "{}",
            "source": {"topic": "events.x", "partition": 0, "offset": 0},
        },
        "created_at": to_iso(0),
    }
    assert Delivery.decode(orjson.dumps(old)).incarnation is None
    dead = {**old, "reason": "x", "dead_lettered_at": to_iso(0)}
    assert DeadLetterRecord.to_delivery(orjson.dumps(dead)).incarnation is None
    again = Delivery.decode(Delivery.decode(orjson.dumps(old)).encode())
    assert again.incarnation is None


async def test_a_question_that_cannot_be_sent_leaves_nothing_pending(tmp_path: Path) -> None:
    """An unencodable question (an integer over 64 bits) fails before it is registered."""
    process = StatusProcess(Settings(), str(tmp_path / "s.sqlite3"), "http://127.0.0.1:1")
    written: list[bytes] = []

    class Stdin:
        def is_closing(self) -> bool:
            return False

        def write(self, data: bytes) -> None:
            written.append(data)

    class Proc:
        stdin = Stdin()

    process._proc = Proc()  # type: ignore[assignment]
    for _ in range(3):
        with pytest.raises(TypeError):
            await process.ask("attempts", {"query": {"after": [2**70, 1]}})
    assert process._waiting == {} and process.pending() == 0 and written == []


def test_a_deliverys_attempts_from_any_batch_in_time_order_each_once(tmp_path: Path) -> None:
    """The row lists its attempts (no index by delivery id): attempts in one batch, in
    later batches, read before the delivery record, and a batch applied twice."""
    store = StatusStore(tmp_path / "s.sqlite3", retention_s=3600)
    t = time.time()
    did, ep = "msg_r", "ep1"
    first = [
        (ATTEMPTS, 1, attempt(0, ep, did, "retrying", t + 1)),  # before the delivery record
        (DELIVERIES, 1, Rec(0, ep.encode(), b"{}", int(t * 1000), [(H_DELIVERY, did.encode())])),
        (ATTEMPTS, 1, attempt(1, ep, did, "retrying", t + 2)),
        (ATTEMPTS, 1, attempt(2, ep, "msg_other", "succeeded", t + 2)),
    ]
    store.apply(first)
    store.apply([(ATTEMPTS, 1, attempt(3, ep, did, "succeeded", t + 3))])
    store.apply(first)  # read again after a crash: below the offsets applied
    found = queries.delivery(store.db, did, {1})
    assert found is not None and found["status"] == "succeeded"
    assert [a["attempt"] for a in found["attempts"]] == [0, 1, 3]
    other = queries.delivery(store.db, "msg_other", {1})
    assert other is not None and [a["attempt"] for a in other["attempts"]] == [2]
