"""What a batch of status records writes to the store, decided without the store (pure).

:func:`rows_of` turns ``(topic, partition, record)`` triples from ``webhooks.deliveries``,
``webhooks.attempts``, ``webhooks.deadletter`` and ``webhooks.rejected`` into the rows of each table
(:class:`Rows`); :meth:`~.store.StatusStore.apply` writes them in one transaction. A
record below the offset already applied (read again after a crash) is skipped, so counts
are never doubled.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from webhook_stream.core.fetch import Undecodable
from webhook_stream.core.operational import OPERATIONAL
from webhook_stream.core.records import H_DELIVERY, H_INCARNATION, H_STATUS
from webhook_stream.core.topics import ATTEMPTS, DEADLETTER, DELIVERIES, REJECTED
from webhook_stream.status.operational import OperationalRow, operational_row
from webhook_stream.status.rejected import RejectedRow, rejected_row

__all__ = ["AttemptRow", "DeadRow", "DeliveryRow", "MinuteCount", "Rows", "rows_of"]

#: Attempt outcome -> delivery status.
_STATUS_OF_OUTCOME = {"succeeded": "succeeded", "retrying": "retrying", "failed": "dead_lettered"}


# Rows are NamedTuples: named, and the sequences sqlite3's executemany takes as they are.
class DeliveryRow(NamedTuple):
    """A delivery seen, with the status its record sets (``status_ms`` -1: none) and the
    attempts it adds (``"<partition>:<offset>;"`` each: the attempt log's keys)."""

    id: str
    endpoint: str
    part: int
    status: str
    status_ms: int
    seen_ms: int
    inc: str
    attempts: str = ""


class AttemptRow(NamedTuple):
    """One attempt of the log, keyed by its (partition, offset)."""

    part: int
    off: int
    endpoint: str
    delivery: str
    ts_ms: int
    outcome: str
    event_type: str
    body: bytes
    inc: str


class DeadRow(NamedTuple):
    """A dead letter, set on its delivery's row."""

    dead_letter: bytes
    dead_ms: int
    tenant: str | None
    id: str
    inc: str


@dataclass(slots=True)
class MinuteCount:
    """One endpoint's attempts in one minute: added to the stored counts."""

    part: int
    succeeded: int = 0
    failed: int = 0


@dataclass(slots=True)
class Rows:
    """The rows one batch writes, and the next offset per (topic, partition)."""

    deliveries: list[DeliveryRow] = field(default_factory=list)
    attempts: list[AttemptRow] = field(default_factory=list)
    #: (endpoint, incarnation, minute) -> counts.
    minutes: dict[tuple[str, str, int], MinuteCount] = field(default_factory=dict)
    dead: list[DeadRow] = field(default_factory=list)
    #: Rows of ``webhooks.rejected`` (``GET /rejected``: :mod:`.rejected`).
    rejected: list[RejectedRow] = field(default_factory=list)
    operational: list[OperationalRow] = field(default_factory=list)
    ends: dict[tuple[str, int], int] = field(default_factory=dict)
    #: Records new to the store (those with nothing to write too: their offsets count).
    n: int = 0


def rows_of(batch: Iterable[tuple[str, int, Any]], applied: dict[tuple[str, int], int]) -> Rows:
    """The rows of ``batch``, leaving out records below ``applied`` (their next offsets)."""
    rows = Rows()
    deliveries = rows.deliveries
    for topic, part, record in batch:
        if record.offset < applied.get((topic, part), -1):
            continue
        rows.ends[(topic, part)] = record.offset + 1
        rows.n += 1
        if isinstance(record, Undecodable):
            continue  # skipped past (the delivery consumer rejects it); offsets applied
        if topic == REJECTED:
            if (found := rejected_row(part, record)) is not None:
                rows.rejected.append(found)
            continue
        if topic == OPERATIONAL:
            if (row := operational_row(part, record)) is not None:
                rows.operational.append(row)
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
        added = ""
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
            rows.attempts.append(
                AttemptRow(
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
            added = f"{part}:{record.offset};"
            minute = (endpoint, inc, ts_ms // 60_000)
            counts = rows.minutes.get(minute)
            if counts is None:
                counts = rows.minutes[minute] = MinuteCount(part)
            if outcome == "succeeded":
                counts.succeeded += 1
            else:
                counts.failed += 1
        elif topic == DEADLETTER:
            status = "dead_lettered"
            try:
                doc = orjson.loads(record.value)
            except orjson.JSONDecodeError:
                doc = {}
            dead_ms = _ms_of(doc.get("dead_lettered_at"), at)
            rows.dead.append(DeadRow(record.value, dead_ms, doc.get("tenant_id"), did, inc))
        # A record that sets no status (status_ms -1) only creates the row.
        if status is None:
            deliveries.append(DeliveryRow(did, endpoint, part, "pending", -1, at, inc, added))
        else:
            deliveries.append(DeliveryRow(did, endpoint, part, status, at, at, inc, added))
    # Newest record wins, whatever order the three topics were read in: rows go in time
    # order (stable: the later record of a tie wins, as it would one by one), and one
    # delivery's rows in a batch are folded into one (its first sighting, its newest
    # status): a delivery and its attempt usually arrive in the same batch.
    deliveries.sort(key=lambda row: row.seen_ms)
    rows.deliveries = fold(deliveries)
    return rows


def fold(rows: list[DeliveryRow]) -> list[DeliveryRow]:
    """One row per (delivery id, incarnation), as if ``rows`` (in time order) were
    upserted one by one."""
    folded: dict[tuple[str, str], DeliveryRow] = {}
    for row in rows:
        key = (row.id, row.inc)
        first = folded.get(key)
        if first is None:
            folded[key] = row
            continue
        if row.status_ms >= 0 and row.status_ms >= first.status_ms:
            first = first._replace(status=row.status, status_ms=row.status_ms)
        if row.attempts:
            first = first._replace(attempts=first.attempts + row.attempts)
        folded[key] = first
    return list(folded.values())


def _ms_of(iso: Any, fallback: int) -> int:
    try:
        return int(datetime.fromisoformat(iso).timestamp() * 1000)
    except (TypeError, ValueError):
        return fallback
