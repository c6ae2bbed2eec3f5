"""Operational events in the status store: rows (pure), written, read per incarnation, expired."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from webhook_stream.core.operational import OPERATIONAL, OperationalEvent
from webhook_stream.status.operational import operational_row, recent
from webhook_stream.status.rows import rows_of
from webhook_stream.status.store import StatusStore


def record(offset: int, kind: str, at: str, inc: str = "inc_1") -> SimpleNamespace:
    event = OperationalEvent(f"op_{offset}", kind, "acme", at, "ep_1", {"incarnation": inc})
    return SimpleNamespace(
        key=b"ep_1", value=event.encode(), offset=offset, headers=[], timestamp=0
    )


def test_rows_of_files_operational_records_apart() -> None:
    rows = rows_of(
        [(OPERATIONAL, 2, record(7, "webhook.endpoint.created", "2026-12-06T08:00:00Z"))], {}
    )
    (row,) = rows.operational
    assert (row.part, row.off, row.endpoint, row.inc) == (2, 7, "ep_1", "inc_1")
    assert rows.deliveries == [] and rows.ends == {(OPERATIONAL, 2): 8}
    bad = SimpleNamespace(key=b"ep_1", value=b"{not json", offset=1, headers=[], timestamp=0)
    assert operational_row(0, bad) is None


def test_the_store_keeps_them_per_incarnation_newest_first_and_expires_them(
    tmp_path: Path,
) -> None:
    store = StatusStore(tmp_path / "s.sqlite3", retention_s=3600)
    batch = [
        (OPERATIONAL, 0, record(0, "webhook.endpoint.created", "2026-12-06T08:00:00Z")),
        (OPERATIONAL, 0, record(1, "webhook.endpoint.disabled", "2026-12-06T08:05:00Z")),
        (OPERATIONAL, 0, record(2, "webhook.endpoint.created", "2026-12-06T08:06:00Z", "inc_2")),
    ]
    assert store.apply(batch) == 3
    assert store.apply(batch) == 0  # read again after a crash: nothing doubled
    items = recent(store.db, "ep_1", "inc_1")["items"]
    assert [e["type"] for e in items] == ["webhook.endpoint.disabled", "webhook.endpoint.created"]
    assert [e["id"] for e in recent(store.db, "ep_1", "inc_2")["items"]] == ["op_2"]
    store.expire(now_ms=1_796_544_330_000 + 3600 * 1000)  # the cutoff: 08:05:30
    assert [e["id"] for e in recent(store.db, "ep_1", "inc_1")["items"]] == []
    assert [e["id"] for e in recent(store.db, "ep_1", "inc_2")["items"]] == ["op_2"]
    store.forget(0)
    assert recent(store.db, "ep_1", "inc_2")["items"] == []
    store.close()
