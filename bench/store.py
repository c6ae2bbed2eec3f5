"""The status store's write cost alone: ``python -m bench.store [--rows N] [--batches N]``.

Applies synthetic batches (a delivery record and its attempt per delivery, 1,000 per batch,
50 endpoints, 8 partitions) to a fresh :class:`~webhook_stream.status.store.StatusStore`
after ``--rows`` deliveries of warm-up, and prints the CPU per delivery of ``apply`` and of
:func:`~webhook_stream.status.rows.rows_of` within it, alternating hashed delivery ids (as
the worker makes them) with time-ordered ones: the difference is what the two trees keyed
by the delivery id cost (session 13: 45-58 against 30 us per delivery at 110,000 rows).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from webhook_stream.core.records import H_DELIVERY, H_INCARNATION, H_STATUS
from webhook_stream.core.topics import ATTEMPTS, DELIVERIES
from webhook_stream.status.rows import rows_of
from webhook_stream.status.store import StatusStore

_PER_BATCH = 1000
_ATTEMPT = orjson.dumps(
    {
        "attempted_at": "2026-12-07T10:00:00.123+00:00",
        "outcome": "succeeded",
        "event_type": "bench.a",
        "status": 200,
        "duration_ms": 3,
    }
)


class _Record(NamedTuple):
    offset: int
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    timestamp: int


def _batches(count: int, first: int, ordered: bool) -> list[list[tuple[str, int, Any]]]:
    now = int(time.time() * 1000)
    out = []
    for b in range(count):
        batch: list[tuple[str, int, Any]] = []
        for i in range(_PER_BATCH):
            n = first + b * _PER_BATCH + i
            did = f"{n:032d}" if ordered else hashlib.md5(str(n).encode()).hexdigest()
            endpoint = f"ep_a_{random.randrange(50)}".encode()
            part = random.randrange(8)
            headers = [(H_DELIVERY, did.encode()), (H_INCARNATION, b"inc1")]
            batch.append((DELIVERIES, part, _Record(n, endpoint, b"x" * 300, headers, now)))
            attempt = _Record(n, endpoint, _ATTEMPT, [*headers, (H_STATUS, b"succeeded")], now)
            batch.append((ATTEMPTS, part, attempt))
        out.append(batch)
    return out


def measure(rows: int, batches: int, ordered: bool) -> tuple[float, float]:
    """CPU microseconds per delivery: ``apply``, and ``rows_of`` within it."""
    random.seed(1)
    with tempfile.TemporaryDirectory() as tmp:
        store = StatusStore(Path(tmp) / "status.sqlite3", 86400)
        for batch in _batches(rows // _PER_BATCH, 0, ordered):
            store.apply(batch)
        timed = _batches(batches, rows, ordered)
        t = time.process_time()
        for batch in timed:
            store.apply(batch)
        applied = time.process_time() - t
        t = time.process_time()
        for batch in timed:
            rows_of(batch, {})
        decided = time.process_time() - t
        store.close()
    n = batches * _PER_BATCH
    return applied / n * 1e6, decided / n * 1e6


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__)
    p.add_argument("--rows", type=int, default=50_000, help="deliveries applied first")
    p.add_argument("--batches", type=int, default=60, help="batches of 1,000 timed")
    p.add_argument("--pairs", type=int, default=2)
    a = p.parse_args()
    for _ in range(a.pairs):
        for ordered in (False, True):
            apply_us, rows_us = measure(a.rows, a.batches, ordered)
            ids = "time-ordered ids" if ordered else "hashed ids"
            print(f"{ids:18s} apply {apply_us:5.1f} us per delivery (rows_of {rows_us:4.1f})")


if __name__ == "__main__":
    main()
