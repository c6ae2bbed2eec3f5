"""The status store: one SQLite file per worker, the history of the partitions it owns.

Rows come from ``webhooks.deliveries``, ``webhooks.attempts`` and ``webhooks.deadletter``
(all keyed by endpoint id, so one partition number is one set of endpoints on all three).
Each batch of records and the next offset per (topic, partition) are written in one
transaction: after a crash or a restart the store resumes where it stopped, and a record
applied twice (the batch re-read after a crash) is ignored by its (partition, offset) key.
History is bounded by ``status_retention``, not by memory: SQLite keeps its page cache
bounded (``_CACHE_KIB``) and the rest on disk. Beside the history, per endpoint and minute,
the attempts that succeeded and failed (the console's rates; the last hour is kept), and
the dead-lettered deliveries are indexed, so no console query scans the attempts.
Every row carries the endpoint's incarnation (header ``ws-incarnation``, '' on older
records): the reads ask for one incarnation, so an endpoint id deleted and created again
(by anyone) starts with an empty history. The reads are in :mod:`.queries`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from webhook_stream.core.fetch import Undecodable
from webhook_stream.core.records import H_DELIVERY, H_INCARNATION, H_STATUS
from webhook_stream.core.topics import ATTEMPTS, DEADLETTER, DELIVERIES, REJECTED
from webhook_stream.status.rejected import REJECTED_SCHEMA, expire_rejected, rejected_row

__all__ = ["AttemptQuery", "StatusStore", "decode_cursor", "encode_cursor"]

#: Bumped when the tables change: a store of another version is rebuilt from Kafka.
SCHEMA_VERSION = 4

#: SQLite page cache per store (KiB): the bound on the store's memory.
_CACHE_KIB = 16_384
_PAGE_SIZE = 8192
_CHECKPOINT_PAGES = 5000
#: Attempt outcome -> delivery status.
_STATUS_OF_OUTCOME = {"succeeded": "succeeded", "retrying": "retrying", "failed": "dead_lettered"}
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
    dead_ms INTEGER, tenant TEXT, inc TEXT NOT NULL,
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
CREATE INDEX IF NOT EXISTS attempts_by_delivery ON attempts (delivery);
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


def _ms_of(iso: Any, fallback: int) -> int:
    try:
        return int(datetime.fromisoformat(iso).timestamp() * 1000)
    except (TypeError, ValueError):
        return fallback


_Row = tuple[str, str, int, str, int, int, str]


def _fold(rows: list[_Row]) -> list[_Row]:
    """One row per (delivery id, incarnation), as if ``rows`` (in time order) were
    upserted one by one."""
    folded: dict[tuple[str, str], _Row] = {}
    for row in rows:
        key = (row[0], row[6])
        first = folded.get(key)
        if first is None:
            folded[key] = row
        elif row[4] >= 0 and row[4] >= first[4]:
            folded[key] = (*first[:3], row[3], row[4], first[5], row[6])
    return list(folded.values())


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
        db.executescript(_SCHEMA + REJECTED_SCHEMA)
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

        A record below the offset already applied (read again after a crash) is skipped,
        so counts are never doubled. Rows are gathered per statement and written with
        ``executemany``, a delivery row inserted and its status set in one upsert (together
        20 % less CPU than one statement per row and record, measured).
        """
        applied = self._next
        ends: dict[tuple[str, int], int] = {}
        deliveries: list[_Row] = []
        attempts: list[tuple[int, int, str, str, int, str, str, bytes, str]] = []
        minutes: dict[tuple[str, str, int], list[int]] = {}
        dead: list[tuple[bytes, int, str | None, str, str]] = []
        rejected: list[Any] = []
        n = 0
        for topic, part, record in batch:
            if record.offset < applied.get((topic, part), -1):
                continue
            ends[(topic, part)] = record.offset + 1
            n += 1
            if isinstance(record, Undecodable):
                continue  # skipped past (the delivery consumer rejects it); offsets applied
            if topic == REJECTED:  # GET /rejected (status/rejected.py)
                if (row := rejected_row(part, record)) is not None:
                    rejected.append(row)
                continue
            headers = dict(record.headers or ())
            raw_id = headers.get(H_DELIVERY)
            if raw_id is None or record.key is None:
                continue
            did = raw_id.decode()
            # The endpoint's incarnation ('' on records written before there were any).
            inc = headers.get(H_INCARNATION, b"").decode("utf-8", "replace")
            at = record.timestamp
            endpoint = record.key.decode("utf-8", "replace")
            status: str | None = None
            if topic == DELIVERIES:
                status = "pending" if headers.get(H_STATUS) == b"replay" else None
            elif topic == ATTEMPTS:
                outcome = headers.get(H_STATUS, b"").decode()
                status = _STATUS_OF_OUTCOME.get(outcome)
                try:
                    doc = orjson.loads(record.value)
                except orjson.JSONDecodeError:
                    continue
                ts_ms = _ms_of(doc.get("attempted_at"), at)
                outcome = doc.get("outcome", outcome)
                attempts.append(
                    (
                        part,
                        record.offset,
                        endpoint,
                        did,
                        ts_ms,
                        outcome,
                        doc.get("event_type") or "",
                        record.value,
                        inc,
                    )
                )
                counts = minutes.get((endpoint, inc, ts_ms // 60_000))
                if counts is None:
                    counts = minutes[(endpoint, inc, ts_ms // 60_000)] = [part, 0, 0]
                counts[1 if outcome == "succeeded" else 2] += 1
            elif topic == DEADLETTER:
                status = "dead_lettered"
                try:
                    doc = orjson.loads(record.value)
                except orjson.JSONDecodeError:
                    doc = {}
                dead_ms = _ms_of(doc.get("dead_lettered_at"), at)
                dead.append((record.value, dead_ms, doc.get("tenant_id"), did, inc))
            # A record that sets no status (status_ms -1) only creates the row.
            if status is None:
                deliveries.append((did, endpoint, part, "pending", -1, at, inc))
            else:
                deliveries.append((did, endpoint, part, status, at, at, inc))
        if not n:
            return 0
        # Newest record wins, whatever order the three topics were read in: rows go in
        # time order (stable: the later record of a tie wins, as it would one by one),
        # and one delivery's rows in a batch are folded into one (its first sighting, its
        # newest status): a delivery and its attempt usually arrive in the same batch.
        deliveries.sort(key=lambda row: row[5])
        deliveries = _fold(deliveries)
        db = self.db
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT INTO deliveries (id, endpoint, part, status, status_ms, seen_ms, inc)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id, inc) DO UPDATE"
                " SET status = excluded.status, status_ms = excluded.status_ms"
                " WHERE excluded.status_ms >= 0 AND excluded.status_ms >= deliveries.status_ms",
                deliveries,
            )
            db.executemany(
                "INSERT OR IGNORE INTO attempts"
                " (part, off, endpoint, delivery, ts_ms, outcome, event_type, body, inc)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                attempts,
            )
            db.executemany(
                "INSERT INTO minutes (endpoint, inc, minute, part, succeeded, failed)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (endpoint, inc, minute) DO UPDATE"
                " SET succeeded = succeeded + excluded.succeeded,"
                " failed = failed + excluded.failed",
                [(e, i, m, p, ok, bad) for (e, i, m), (p, ok, bad) in minutes.items()],
            )
            db.executemany(
                "UPDATE deliveries SET dead_letter = ?, dead_ms = ?, tenant = ?"
                " WHERE id = ? AND inc = ?",
                dead,
            )
            db.executemany("INSERT OR IGNORE INTO rejected VALUES (?, ?, ?, ?, ?, ?, ?)", rejected)
            db.executemany(
                "INSERT INTO applied (topic, part, next) VALUES (?, ?, ?)"
                " ON CONFLICT (topic, part) DO UPDATE SET next = max(next, excluded.next)",
                [(t, p, o) for (t, p), o in ends.items()],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        for key, nxt in ends.items():
            applied[key] = max(nxt, applied.get(key, 0))
        return n

    def expire(self, now_ms: int | None = None) -> int:
        """Forget what is older than the retention; return the attempts removed."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        cutoff = now_ms - self.retention_ms
        db = self.db
        db.execute("BEGIN")
        removed = db.execute("DELETE FROM attempts WHERE ts_ms < ?", (cutoff,)).rowcount
        db.execute("DELETE FROM deliveries WHERE seen_ms < ?", (cutoff,))
        db.execute("DELETE FROM minutes WHERE minute < ?", (now_ms // 60_000 - MINUTES_KEPT,))
        expire_rejected(db, cutoff)
        db.execute("COMMIT")
        return removed

    def forget(self, partition: int) -> None:
        """Drop what the store holds of ``partition``: it is read again from Kafka."""
        db = self.db
        db.execute("BEGIN")
        for table in ("attempts", "deliveries", "minutes", "applied", "rejected"):
            db.execute(f"DELETE FROM {table} WHERE part = ?", (partition,))  # noqa: S608
        db.execute("COMMIT")
        self._next = self.next_offsets()

    def counts(self) -> dict[str, int]:
        (attempts,) = self.db.execute("SELECT count(*) FROM attempts").fetchone()
        (deliveries,) = self.db.execute("SELECT count(*) FROM deliveries").fetchone()
        return {"attempts": attempts, "deliveries": deliveries}
