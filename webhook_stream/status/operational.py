"""Recent operational events per endpoint in the status store (the console's endpoint page).

``webhooks.operational`` is keyed by endpoint id like the three delivery topics, so the
status view tails its partitions with theirs and the owner of an endpoint's partition
answers for its events too. Rows are bounded like the others (``status_retention``) and
read per endpoint and incarnation, newest first.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any, NamedTuple

import orjson

__all__ = ["SCHEMA", "OperationalRow", "expire", "operational_row", "recent", "write"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS operational (
    part INTEGER NOT NULL, off INTEGER NOT NULL, endpoint TEXT NOT NULL, inc TEXT NOT NULL,
    ts_ms INTEGER NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (part, off)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS operational_by_endpoint ON operational (endpoint, inc, ts_ms, off);
CREATE INDEX IF NOT EXISTS operational_by_time ON operational (ts_ms);
"""

#: Events one endpoint page shows at most.
MAX_LISTED = 100


class OperationalRow(NamedTuple):
    part: int
    off: int
    endpoint: str
    inc: str
    ts_ms: int
    body: bytes


def operational_row(part: int, record: Any) -> OperationalRow | None:
    """The row of one ``webhooks.operational`` record (None: not one of ours)."""
    if record.key is None or record.value is None:
        return None
    try:
        env = orjson.loads(record.value)
        data = env["data"]
        ts_ms = int(datetime.fromisoformat(env["occurred_at"]).timestamp() * 1000)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    inc = data.get("incarnation") if isinstance(data, dict) else None
    endpoint = record.key.decode("utf-8", "replace")
    return OperationalRow(part, record.offset, endpoint, inc or "", ts_ms, record.value)


def write(db: sqlite3.Connection, rows: list[OperationalRow]) -> None:
    db.executemany(
        "INSERT OR IGNORE INTO operational (part, off, endpoint, inc, ts_ms, body)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )


def expire(db: sqlite3.Connection, cutoff_ms: int) -> None:
    db.execute("DELETE FROM operational WHERE ts_ms < ?", (cutoff_ms,))


def recent(
    db: sqlite3.Connection, endpoint_id: str, incarnation: str, limit: int = MAX_LISTED
) -> dict[str, Any]:
    """The incarnation's operational events, newest first: ``{"items"}``."""
    rows = db.execute(
        "SELECT body FROM operational WHERE endpoint = ? AND inc = ?"
        " ORDER BY ts_ms DESC, off DESC LIMIT ?",
        (endpoint_id, incarnation, min(limit, MAX_LISTED)),
    ).fetchall()
    return {"items": [orjson.loads(body) for (body,) in rows]}
