"""Reads of the status store: one delivery, an attempt page, and the console's summaries.

Every function answers for the partitions passed in (``parts``: those this worker serves
now); a store may still hold rows of partitions it gave up, which must not be shown. The
cross-partition answers (:func:`deadletters`, :func:`overview`) are one worker's share:
:mod:`.routing` merges the shares of all owners.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

import orjson

from webhook_stream.status.stats import BUCKETS
from webhook_stream.status.store import AttemptQuery, encode_cursor

__all__ = ["attempts", "dead_key", "deadletters", "delivery", "endpoint_stats", "overview"]

#: One endpoint incarnation: (endpoint id, incarnation or '' for none).
Scope = tuple[str, str]
#: Rows of a list of :data:`Scope` given as one JSON parameter.
_SCOPES = "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?)"

#: Fields of a dead-letter record a listing shows (not the event's data).
_DEAD_FIELDS = (
    "delivery_id",
    "endpoint_id",
    "tenant_id",
    "attempts",
    "last_status_code",
    "last_error",
    "first_attempt_at",
    "last_attempt_at",
    "created_at",
    "dead_lettered_at",
    "reason",
    "incarnation",
)
_LAST_FIELDS = ("delivery_id", "attempted_at", "outcome", "status_code", "error")
#: Bound parameters per ``IN (...)`` (SQLite allows a few thousand).
_CHUNK = 500


def _in(values: Iterable[Any]) -> tuple[str, list[Any]]:
    values = list(values)
    return f"({','.join('?' * len(values))})", values


def delivery(db: sqlite3.Connection, delivery_id: str, parts: Iterable[int]) -> dict | None:
    """One delivery, if it belongs to one of ``parts``: of the endpoint's latest
    incarnation that has it (the caller checks it is the current one)."""
    row = db.execute(
        "SELECT endpoint, part, status, dead_letter, inc, attempts FROM deliveries WHERE id = ?"
        " ORDER BY seen_ms DESC LIMIT 1",
        (delivery_id,),
    ).fetchone()
    if row is None or row[1] not in set(parts):
        return None
    endpoint, _, status, dead_letter, inc, keys = row
    # The row lists its attempts' keys: no index of the attempt log by delivery id (a
    # second tree keyed by a hash, a random page written per delivery).
    found = []
    for key in dict.fromkeys(keys.split(";")):
        if key:
            part, _, off = key.partition(":")
            found += db.execute(
                "SELECT ts_ms, off, body FROM attempts WHERE part = ? AND off = ?",
                (int(part), int(off)),
            ).fetchall()
    found.sort(key=lambda a: (a[0], a[1]))
    body: dict[str, Any] = {
        "delivery_id": delivery_id,
        "endpoint_id": endpoint,
        "incarnation": inc or None,
        "status": status,
        "attempts": [orjson.loads(a) for (_, _, a) in found],
    }
    if dead_letter is not None:
        dl = orjson.loads(dead_letter)
        body["dead_letter"] = {k: dl.get(k) for k in ("reason", "dead_lettered_at", "last_error")}
    return body


def attempts(
    db: sqlite3.Connection, endpoint_id: str, query: AttemptQuery, incarnation: str = ""
) -> dict[str, Any]:
    """A page of the incarnation's attempts, newest first: ``{"items", "next"}``."""
    sql = ["SELECT ts_ms, off, body FROM attempts WHERE endpoint = ? AND inc = ?"]
    args: list[Any] = [endpoint_id, incarnation]
    if query.after is not None:
        sql.append("AND (ts_ms, off) < (?, ?)")
        args += list(query.after)
    if query.outcome is not None:
        sql.append("AND outcome = ?")
        args.append(query.outcome)
    if query.since_ms is not None:
        sql.append("AND ts_ms >= ?")
        args.append(query.since_ms)
    if query.until_ms is not None:
        sql.append("AND ts_ms <= ?")
        args.append(query.until_ms)
    if query.event_type is not None:
        sql.append("AND event_type = ?")
        args.append(query.event_type)
    sql.append("ORDER BY ts_ms DESC, off DESC LIMIT ?")
    args.append(query.limit + 1)
    rows = db.execute(" ".join(sql), args).fetchall()
    page = rows[: query.limit]
    nxt = encode_cursor(page[-1][0], page[-1][1]) if len(rows) > query.limit else None
    return {"items": [orjson.loads(body) for _, _, body in page], "next": nxt}


def dead_key(dead_ms: int, delivery_id: str) -> str:
    """Sort key (and cursor) of a dead letter: newest first is descending."""
    return f"{dead_ms:015d}|{delivery_id}"


def deadletters(
    db: sqlite3.Connection,
    parts: Iterable[int],
    *,
    endpoint_id: str | None = None,
    scopes: list[Scope] | None = None,
    tenant_id: str | None = None,
    scoped: bool = False,
    since_ms: int | None = None,
    until_ms: int | None = None,
    limit: int = 50,
    after: str | None = None,
) -> dict[str, Any]:
    """Up to ``limit + 1`` deliveries now dead-lettered, newest first: ``{"items", "keys"}``.

    ``scoped`` keeps only ``tenant_id``'s (None: tenant-less ones); ``scopes`` (when given)
    only those endpoint incarnations. ``after`` is a :func:`dead_key`. Served from a
    partial index of the dead-lettered rows.
    """
    where, args = _in(parts)
    sql = [
        "SELECT id, dead_ms, dead_letter FROM deliveries INDEXED BY dead_by_time",
        f"WHERE status = 'dead_lettered' AND dead_letter IS NOT NULL AND part IN {where}",
    ]
    if endpoint_id is not None:
        sql.append("AND endpoint = ?")
        args.append(endpoint_id)
    if scopes is not None:
        sql.append(f"AND (endpoint, inc) IN ({_SCOPES})")
        args.append(orjson.dumps(scopes).decode())
    if scoped:
        sql.append("AND tenant IS ?")
        args.append(tenant_id)
    if since_ms is not None:
        sql.append("AND dead_ms >= ?")
        args.append(since_ms)
    if until_ms is not None:
        sql.append("AND dead_ms <= ?")
        args.append(until_ms)
    if after is not None:
        at, _, did = after.partition("|")
        sql.append("AND (dead_ms, id) < (?, ?)")
        args += [int(at), did]
    sql.append("ORDER BY dead_ms DESC, id DESC LIMIT ?")
    args.append(limit + 1)
    items, keys = [], []
    for did, dead_ms, raw in db.execute(" ".join(sql), args):
        record = orjson.loads(raw)
        item = {k: record.get(k) for k in _DEAD_FIELDS}
        event = record.get("event") or {}
        item.update(delivery_id=did, event_id=event.get("id"), event_type=event.get("type"))
        items.append(item)
        keys.append(dead_key(dead_ms, did))
    return {"items": items, "keys": keys}


def endpoint_stats(
    db: sqlite3.Connection, scopes: list[Scope], now_ms: int
) -> list[dict[str, Any]]:
    """Per endpoint incarnation: attempts of the last hour, success rate, last attempt,
    dead letters."""
    first = now_ms // 60_000 - BUCKETS + 1
    out = []
    for endpoint_id, inc in scopes:
        succeeded, failed = db.execute(
            "SELECT coalesce(sum(succeeded), 0), coalesce(sum(failed), 0) FROM minutes"
            " WHERE endpoint = ? AND inc = ? AND minute >= ?",
            (endpoint_id, inc, first),
        ).fetchone()
        last_row = db.execute(
            "SELECT body FROM attempts WHERE endpoint = ? AND inc = ?"
            " ORDER BY ts_ms DESC, off DESC LIMIT 1",
            (endpoint_id, inc),
        ).fetchone()
        (dead,) = db.execute(
            "SELECT count(*) FROM deliveries INDEXED BY dead_by_endpoint WHERE endpoint = ?"
            " AND inc = ? AND status = 'dead_lettered' AND dead_letter IS NOT NULL",
            (endpoint_id, inc),
        ).fetchone()
        last = None
        if last_row is not None:
            a = orjson.loads(last_row[0])
            last = {k: a.get(k) for k in _LAST_FIELDS}
        total = succeeded + failed
        out.append(
            {
                "endpoint_id": endpoint_id,
                "succeeded_last_hour": succeeded,
                "failed_last_hour": failed,
                "success_rate": round(succeeded / total, 4) if total else None,
                "last_attempt": last,
                "dead_letters": dead,
            }
        )
    return out


def overview(
    db: sqlite3.Connection, parts: Iterable[int], scopes: list[Scope] | None, now_ms: int
) -> dict[str, Any]:
    """This store's share: ``{"minutes": [[minute, succeeded, failed], ...], "dead_letters"}``.

    ``scopes`` None is every endpoint of ``parts``; else those endpoint incarnations only.
    """
    first = now_ms // 60_000 - BUCKETS + 1
    series: dict[int, list[int]] = {}
    dead = 0
    if scopes is None:
        where, args = _in(parts)
        rows = db.execute(
            "SELECT minute, sum(succeeded), sum(failed) FROM minutes"  # noqa: S608 - only placeholders
            f" WHERE minute >= ? AND part IN {where} GROUP BY minute",
            [first, *args],
        ).fetchall()
        (dead,) = db.execute(
            "SELECT count(*) FROM deliveries INDEXED BY dead_by_time WHERE status ="  # noqa: S608 - only placeholders
            f" 'dead_lettered' AND dead_letter IS NOT NULL AND part IN {where}",
            args,
        ).fetchone()
        _add(series, rows)
    else:
        owned = set(parts)
        for i in range(0, len(scopes), _CHUNK):
            chunk = orjson.dumps(scopes[i : i + _CHUNK]).decode()
            rows = db.execute(
                "SELECT minute, sum(succeeded), sum(failed) FROM minutes"  # noqa: S608 - only placeholders
                f" WHERE (endpoint, inc) IN ({_SCOPES}) AND minute >= ?"
                f" AND part IN {_in(owned)[0]} GROUP BY minute",
                [chunk, first, *owned],
            ).fetchall()
            _add(series, rows)
            (n,) = db.execute(
                "SELECT count(*) FROM deliveries INDEXED BY dead_by_endpoint"  # noqa: S608 - only placeholders
                f" WHERE (endpoint, inc) IN ({_SCOPES}) AND status = 'dead_lettered'"
                f" AND dead_letter IS NOT NULL AND part IN {_in(owned)[0]}",
                [chunk, *owned],
            ).fetchone()
            dead += n
    return {"minutes": [[m, s, f] for m, (s, f) in sorted(series.items())], "dead_letters": dead}


def _add(series: dict[int, list[int]], rows: Iterable[tuple[int, int, int]]) -> None:
    for minute, succeeded, failed in rows:
        counts = series.setdefault(minute, [0, 0])
        counts[0] += succeeded
        counts[1] += failed
