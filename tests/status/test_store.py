"""The status store and the assignor's arithmetic, without a broker (pure units)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from webhook_stream.api.status_query import parse_attempt_query
from webhook_stream.core.errors import InvalidQuery
from webhook_stream.core.records import H_DELIVERY, H_STATUS, to_iso
from webhook_stream.core.topics import ATTEMPTS, DEADLETTER, DELIVERIES
from webhook_stream.status.owners import spread
from webhook_stream.status.store import AttemptQuery, StatusStore


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
    assert store.apply(batch[:3]) == 3  # applied again after a crash: ignored by offset
    assert store.counts()["attempts"] == 11

    seen, after = [], None
    while True:  # pages of 4, newest first, the cursor ends with None
        page = store.attempts("ep1", AttemptQuery(limit=4, after=after))
        seen += ids(page)
        if page["next"] is None:
            break
        after = parse_attempt_query({"after": page["next"]}).after
    assert seen == list(range(10, -1, -1))
    failed = store.attempts("ep1", AttemptQuery(limit=50, status="failed"))
    assert ids(failed) == [10, 8, 6, 4, 2, 0]  # retried and final failures alike
    window = AttemptQuery(since_ms=int((now + 2) * 1000), until_ms=int((now + 5) * 1000))
    assert ids(store.attempts("ep1", window)) == [4, 3, 2]
    assert ids(store.attempts("ep1", AttemptQuery(event_type="t.y"))) == [10]
    assert store.attempts("other", AttemptQuery()) == {"items": [], "next": None}
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
    found = store.delivery(did, {1})
    assert found is not None and found["status"] == "dead_lettered"
    assert found["dead_letter"]["reason"] == "exhausted" and len(found["attempts"]) == 1
    assert store.delivery(did, {0, 2}) is None  # not a partition this worker serves
    store.forget(1)
    assert store.delivery(did, {1}) is None and store.next_offsets() == {}


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
    assert ids(store.attempts("ep", AttemptQuery())) == [1]


@pytest.mark.parametrize(
    ("params", "field_name"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"status": "retrying"}, "status"),
        ({"since": "not a time"}, "since"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
        ({"after": "%%%"}, "after"),
        ({"page": "2"}, "page"),
    ],
)
def test_bad_attempt_query_names_the_field(params: dict[str, str], field_name: str) -> None:
    with pytest.raises(InvalidQuery) as exc:
        parse_attempt_query(params)
    assert exc.value.field == field_name


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
