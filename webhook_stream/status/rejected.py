"""Rejected input in the status store: what ``GET /rejected`` and the console list.

The status view tails ``webhooks.rejected`` with the delivery topics (same partitions, same
owners) and keeps one row per rejected record: the reason, where the input came from, a
short preview and the tenant it is attributed to. Retention is the store's
(``WEBHOOK_STREAM_STATUS_RETENTION``), and at most :data:`KEPT_PER_PARTITION` rows per
partition whatever the rate of rejections: the topic keeps the whole records longer.

**Tenant attribution** is best effort, from the original value and headers: a JSON object's
``tenant_id`` (or CloudEvents ``tenantid``), else a ``ce_tenantid`` header. A record it
cannot be read from (not JSON, a Schema Registry payload) is the admin's only. Header
values are never kept (they may hold credentials): only their names.
"""

from __future__ import annotations

import base64
import binascii
import sqlite3
from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

import orjson

__all__ = [
    "KEPT_PER_PARTITION",
    "PREVIEW_BYTES",
    "REJECTED_SCHEMA",
    "RejectedRow",
    "expire_rejected",
    "rejected_key",
    "rejected_page",
    "rejected_row",
]

KEPT_PER_PARTITION = 10_000
#: Bytes of the original value shown (as text, invalid UTF-8 replaced).
PREVIEW_BYTES = 512

REJECTED_SCHEMA = """
CREATE TABLE IF NOT EXISTS rejected (
    part INTEGER NOT NULL, off INTEGER NOT NULL, ts_ms INTEGER NOT NULL,
    topic TEXT NOT NULL, reason TEXT NOT NULL, tenant TEXT, item BLOB NOT NULL,
    PRIMARY KEY (part, off)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rejected_by_time ON rejected (ts_ms, part, off);
"""


class RejectedRow(NamedTuple):
    """One rejected record as the store keeps it, keyed by its (partition, offset)."""

    part: int
    off: int
    ts_ms: int
    topic: str  # the source topic
    reason: str  # the code: the reason up to its first colon
    tenant: str | None
    item: bytes  # what GET /rejected answers (JSON)


def rejected_key(ts_ms: int, part: int, off: int) -> str:
    """The sort key (newest first across every partition) and the page cursor."""
    return f"{ts_ms:015d}|{part:05d}|{off:020d}"


def rejected_row(part: int, record: Any) -> RejectedRow | None:
    """The row of one ``webhooks.rejected`` record (None: not one of ours)."""
    try:
        doc = orjson.loads(record.value)
        source = doc["source"]
        reason = str(doc["reason"])
        topic = str(source["topic"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    ts_ms = _ms_of(doc.get("rejected_at"), record.timestamp)
    value = _b64(doc.get("value_b64"))
    headers = [h for h in doc.get("headers") or () if isinstance(h, dict)]
    tenant = _tenant_of(value, headers)
    item = {
        "reason": reason,
        "code": _code(reason),
        "source": {
            "topic": topic,
            "partition": source.get("partition"),
            "offset": source.get("offset"),
        },
        "rejected_at": doc.get("rejected_at"),
        "tenant_id": tenant,
        "preview": None if value is None else value[:PREVIEW_BYTES].decode("utf-8", "replace"),
        "value_bytes": doc.get("value_bytes"),
        "truncated": bool(doc.get("truncated")),
        "preview_truncated": len(value or b"") > PREVIEW_BYTES,
        "header_names": [str(h.get("key")) for h in headers],
    }
    return RejectedRow(part, record.offset, ts_ms, topic, _code(reason), tenant, orjson.dumps(item))


def _code(reason: str) -> str:
    return reason.split(":", 1)[0].strip()


def _b64(text: Any) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text)
    except (binascii.Error, ValueError):
        return None


def _tenant_of(value: bytes | None, headers: list[dict[str, Any]]) -> str | None:
    if value and value[:1] == b"{":
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            tenant = obj.get("tenant_id", obj.get("tenantid"))
            if isinstance(tenant, str) and tenant:
                return tenant
    for header in headers:
        if str(header.get("key", "")).lower() == "ce_tenantid":
            raw = _b64(header.get("value_b64"))
            if raw:
                return raw.decode("utf-8", "replace")
    return None


def _ms_of(iso: Any, fallback: int) -> int:
    try:
        return int(datetime.fromisoformat(iso).timestamp() * 1000)
    except (TypeError, ValueError):
        return fallback


def expire_rejected(db: sqlite3.Connection, cutoff_ms: int) -> None:
    """Forget rows older than ``cutoff_ms`` and all but the newest rows of each partition
    (inside the caller's transaction)."""
    db.execute("DELETE FROM rejected WHERE ts_ms < ?", (cutoff_ms,))
    parts = [p for (p,) in db.execute("SELECT DISTINCT part FROM rejected")]
    for part in parts:
        db.execute(
            "DELETE FROM rejected WHERE part = ? AND off < (SELECT off FROM rejected"
            " WHERE part = ? ORDER BY off DESC LIMIT 1 OFFSET ?)",
            (part, part, KEPT_PER_PARTITION - 1),
        )


def rejected_page(
    db: sqlite3.Connection,
    parts: Iterable[int],
    *,
    tenant_id: str | None = None,
    scoped: bool = False,
    topic: str | None = None,
    reason: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    limit: int = 50,
    after: str | None = None,
) -> dict[str, Any]:
    """Up to ``limit + 1`` rejected records, newest first: ``{"items", "keys"}``.

    ``scoped`` keeps only those attributed to ``tenant_id``; ``reason`` is the code (the
    reason up to its first colon: ``unknown_schema``); ``after`` a :func:`rejected_key`.
    """
    parts = list(parts)
    if not parts:
        return {"items": [], "keys": []}
    sql = [
        "SELECT ts_ms, part, off, item FROM rejected",
        f"WHERE part IN ({','.join('?' * len(parts))})",
    ]
    args: list[Any] = list(parts)
    for column, value in (("topic", topic), ("reason", reason)):
        if value is not None:
            sql.append(f"AND {column} = ?")
            args.append(value)
    if scoped:
        sql.append("AND tenant IS ?")
        args.append(tenant_id)
    if since_ms is not None:
        sql.append("AND ts_ms >= ?")
        args.append(since_ms)
    if until_ms is not None:
        sql.append("AND ts_ms <= ?")
        args.append(until_ms)
    if after is not None:
        at, part, off = (int(n) for n in after.split("|"))
        sql.append("AND (ts_ms, part, off) < (?, ?, ?)")
        args += [at, part, off]
    sql.append("ORDER BY ts_ms DESC, part DESC, off DESC LIMIT ?")
    args.append(limit + 1)
    items, keys = [], []
    for ts_ms, part, off, item in db.execute(" ".join(sql), args):
        items.append(orjson.loads(item))
        keys.append(rejected_key(ts_ms, part, off))
    return {"items": items, "keys": keys}
