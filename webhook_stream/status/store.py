"""The status store: one SQLite file per worker, the history of the partitions it owns.

Rows come from ``webhooks.deliveries``, ``webhooks.attempts`` and ``webhooks.deadletter``
(all keyed by endpoint id, so one partition number is one set of endpoints on all three),
and from ``webhooks.rejected`` (same partition numbers, its rows: :mod:`.rejected`).
Each batch of records and the next offset per (topic, partition) are written in one
transaction: after a crash or a restart the store resumes where it stopped, and a record
applied twice (the batch re-read after a crash) is ignored by its (partition, offset) key.
History is bounded by ``status_retention``, not by memory: SQLite keeps its page cache
bounded (``_CACHE_KIB``) and the rest on disk. Beside the history, per endpoint and minute,
the attempts that succeeded and failed (the console's rates; the last hour is kept), and
the dead-lettered deliveries are indexed, so no console query scans the attempts. A
delivery's row lists its attempts' keys in the log: a delivery id is a hash, and a second
tree keyed by it (an index of the attempts by delivery) wrote a random page per delivery.
Every row carries the endpoint's incarnation (header ``ws-incarnation``, '' on older
records): the reads ask for one incarnation, so an endpoint id deleted and created again
(by anyone) starts with an empty history. The reads are in :mod:`.queries`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from webhook_stream.status import operational
from webhook_stream.status.rejected import REJECTED_SCHEMA, expire_rejected
from webhook_stream.status.rows import rows_of

__all__ = ["AttemptQuery", "StatusStore", "decode_cursor", "encode_cursor"]

#: Bumped when the tables change: a store of another version is rebuilt from Kafka.
SCHEMA_VERSION = 5

#: SQLite page cache per store (KiB): the bound on the store's memory.
_CACHE_KIB = 16_384
_PAGE_SIZE = 8192
_CHECKPOINT_PAGES = 5000
#: A delivery row: its record sets the status only if newer than the stored one, and
#: appends the attempts it adds (a row with neither is left as it is, not written).
_UPSERT_DELIVERY = """
INSERT INTO deliveries (id, endpoint, part, status, status_ms, seen_ms, inc, attempts)
VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id, inc) DO UPDATE SET
    status = CASE WHEN excluded.status_ms >= 0 AND excluded.status_ms >= deliveries.status_ms
        THEN excluded.status ELSE deliveries.status END,
    status_ms = CASE WHEN excluded.status_ms >= 0 AND excluded.status_ms >= deliveries.status_ms
        THEN excluded.status_ms ELSE deliveries.status_ms END,
    attempts = deliveries.attempts || excluded.attempts
WHERE excluded.attempts != ''
    OR (excluded.status_ms >= 0 AND excluded.status_ms >= deliveries.status_ms)
"""
#: Minutes of per-endpoint counts kept (the console shows the last hour).
MINUTES_KEPT = 61

_SCHEMA = """
CREATE TABLE IF NOT EXISTS applied (
    topic TEXT NOT NULL, part INTEGER NOT NULL, next INTEGER NOT NULL,
    PRIMARY KEY (topic, part)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT NOT NULL, endpoint TEXT NOT NULL, part INTEGER NOT NULL,
    status TEXT NOT NULL, status_ms INTEGER NOT NULL, dead_letter BLOB, seen_ms INTEGER NOT NULL,
    dead_ms INTEGER, tenant TEXT, inc TEXT NOT NULL, attempts TEXT NOT NULL,
    PRIMARY KEY (id, inc)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_by_seen ON deliveries (seen_ms);
CREATE INDEX IF NOT EXISTS dead_by_time ON deliveries (dead_ms, id)
    WHERE status = 'dead_lettered' AND dead_letter IS NOT NULL;
CREATE INDEX IF NOT EXISTS dead_by_endpoint ON deliveries (endpoint, inc)
    WHERE status = 'dead_lettered' AND dead_letter IS NOT NULL;
CREATE TABLE IF NOT EXISTS minutes (
    endpoint TEXT NOT NULL, inc TEXT NOT NULL, minute INTEGER NOT NULL, part INTEGER NOT NULL,
    succeeded INTEGER NOT NULL, failed INTEGER NOT NULL,
    PRIMARY KEY (endpoint, inc, minute)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS minutes_by_minute ON minutes (minute, part);
CREATE TABLE IF NOT EXISTS attempts (
    part INTEGER NOT NULL, off INTEGER NOT NULL, endpoint TEXT NOT NULL,
    delivery TEXT NOT NULL, ts_ms INTEGER NOT NULL, outcome TEXT NOT NULL,
    event_type TEXT NOT NULL, body BLOB NOT NULL, inc TEXT NOT NULL,
    PRIMARY KEY (part, off)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS attempts_by_endpoint ON attempts (endpoint, inc, ts_ms, off);
CREATE INDEX IF NOT EXISTS attempts_by_time ON attempts (ts_ms);
"""


def encode_cursor(ts_ms: int, offset: int) -> str:
    """The position after an attempt, as the page's ``next`` (the API wraps it once more)."""
    return f"{ts_ms}:{offset}"


def decode_cursor(text: str) -> tuple[int, int]:
    """The (time, offset) a cursor points after; ValueError if it is not one of ours."""
    ts_ms, sep, offset = text.partition(":")
    if not sep:
        raise ValueError("not a cursor from a previous page's 'next'")
    try:
        position = int(ts_ms), int(offset)
    except ValueError:
        raise ValueError("not a cursor from a previous page's 'next'") from None
    if not all(-(2**63) <= n < 2**63 for n in position):  # SQLite's (and JSON's) integers
        raise ValueError("not a cursor from a previous page's 'next'")
    return position


class AttemptQuery:
    """The filters and page of ``GET /subscriptions/{id}/attempts``, already validated.

    ``outcome`` is exact (succeeded, retrying, failed); ``since_ms``/``until_ms`` are
    inclusive, on ``attempted_at``.
    """

    __slots__ = ("after", "event_type", "limit", "outcome", "since_ms", "until_ms")

    def __init__(
        self,
        *,
        limit: int = 50,
        after: tuple[int, int] | None = None,
        outcome: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        event_type: str | None = None,
    ) -> None:
        self.limit, self.after, self.outcome = limit, after, outcome
        self.since_ms, self.until_ms, self.event_type = since_ms, until_ms, event_type

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AttemptQuery:
        after = d.get("after")
        return cls(**{**d, "after": tuple(after) if after else None})


class StatusStore:
    """SQLite tables of deliveries, attempts and minute counts, plus the offsets applied."""

    def __init__(self, path: Path, retention_s: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.retention_ms = int(retention_s * 1000)
        self.db = db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # Each batch dirties pages all over the two id-keyed trees (deliveries, attempts by
        # delivery): bigger pages and fewer checkpoints cost less CPU per delivery (measured,
        # 1,000-record batches: 46 us with 4 KiB pages and the default 1,000-page checkpoint,
        # 28 us with these). page_size takes effect on a new file only.
        db.execute(f"PRAGMA page_size={_PAGE_SIZE}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_PAGES}")  # a WAL of <= ~40 MiB
        db.execute("PRAGMA synchronous=NORMAL")  # WAL: a crash loses no committed batch
        db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version != SCHEMA_VERSION:
            # A cache of Kafka, not a source of truth: another layout is read again.
            for (table,) in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            ).fetchall():
                db.execute(f'DROP TABLE IF EXISTS "{table}"')
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.executescript(_SCHEMA + REJECTED_SCHEMA + operational.SCHEMA)
        self._next = self.next_offsets()

    def close(self) -> None:
        self.db.close()

    # -- offsets
    def next_offsets(self) -> dict[tuple[str, int], int]:
        rows = self.db.execute("SELECT topic, part, next FROM applied")
        return {(topic, part): nxt for topic, part, nxt in rows}

    # -- writes
    def apply(self, batch: Iterable[tuple[str, int, Any]]) -> int:
        """Apply ``(topic, partition, record)`` in one transaction; return how many were new.

        What to write is decided by :func:`~.rows.rows_of` (pure); this writes it. Rows are
        written per statement with ``executemany``, a delivery row inserted and its status
        set in one upsert (together 20 % less CPU than one statement per row and record,
        measured).
        """
        applied = self._next
        rows = rows_of(batch, applied)
        if not rows.n:
            return 0
        db = self.db
        db.execute("BEGIN")
        try:
            db.executemany(
                _UPSERT_DELIVERY,
                rows.deliveries,
            )
            db.executemany(
                "INSERT OR IGNORE INTO attempts"
                " (part, off, endpoint, delivery, ts_ms, outcome, event_type, body, inc)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows.attempts,
            )
            db.executemany(
                "INSERT INTO minutes (endpoint, inc, minute, part, succeeded, failed)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (endpoint, inc, minute) DO UPDATE"
                " SET succeeded = succeeded + excluded.succeeded,"
                " failed = failed + excluded.failed",
                [(e, i, m, c.part, c.succeeded, c.failed) for (e, i, m), c in rows.minutes.items()],
            )
            db.executemany(
                "UPDATE deliveries SET dead_letter = ?, dead_ms = ?, tenant = ?"
                " WHERE id = ? AND inc = ?",
                rows.dead,
            )
            operational.write(db, rows.operational)
            db.executemany(
                "INSERT OR IGNORE INTO rejected VALUES (?, ?, ?, ?, ?, ?, ?)", rows.rejected
            )
            db.executemany(
                "INSERT INTO applied (topic, part, next) VALUES (?, ?, ?)"
                " ON CONFLICT (topic, part) DO UPDATE SET next = max(next, excluded.next)",
                [(t, p, o) for (t, p), o in rows.ends.items()],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        for key, nxt in rows.ends.items():
            applied[key] = max(nxt, applied.get(key, 0))
        return rows.n

    def expire(self, now_ms: int | None = None) -> int:
        """Forget what is older than the retention; return the attempts removed."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        cutoff = now_ms - self.retention_ms
        db = self.db
        db.execute("BEGIN")
        removed = db.execute("DELETE FROM attempts WHERE ts_ms < ?", (cutoff,)).rowcount
        db.execute("DELETE FROM deliveries WHERE seen_ms < ?", (cutoff,))
        operational.expire(db, cutoff)
        db.execute("DELETE FROM minutes WHERE minute < ?", (now_ms // 60_000 - MINUTES_KEPT,))
        expire_rejected(db, cutoff)
        db.execute("COMMIT")
        return removed

    def forget(self, partition: int) -> None:
        """Drop what the store holds of ``partition``: it is read again from Kafka."""
        db = self.db
        db.execute("BEGIN")
        for table in ("attempts", "deliveries", "minutes", "applied", "rejected", "operational"):
            db.execute(f"DELETE FROM {table} WHERE part = ?", (partition,))  # noqa: S608
        db.execute("COMMIT")
        self._next = self.next_offsets()

    def counts(self) -> dict[str, int]:
        (attempts,) = self.db.execute("SELECT count(*) FROM attempts").fetchone()
        (deliveries,) = self.db.execute("SELECT count(*) FROM deliveries").fetchone()
        return {"attempts": attempts, "deliveries": deliveries}
