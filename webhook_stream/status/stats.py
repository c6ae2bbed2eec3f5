"""Cheap counters beside the status view: attempts per minute, per endpoint and in total.

The console's endpoint list (success rate over the last hour, last attempt) and overview
(deliveries/s, failures, dead-letter depth) read these instead of scanning attempts. Each
ring holds 60 one-minute buckets in ``array`` objects (not tracked by the garbage collector,
about 1 KB per endpoint); a bucket older than an hour is reset when its slot comes round.
"""

from __future__ import annotations

from array import array
from typing import Any

__all__ = ["BUCKETS", "EndpointStats", "MinuteCounts", "minute_of", "rate_summary", "summed"]

#: One-minute buckets kept: the last hour.
BUCKETS = 60


def minute_of(ms: int) -> int:
    return ms // 60_000


class MinuteCounts:
    """Succeeded and failed attempts per minute over the last hour (record timestamps)."""

    __slots__ = ("_failed", "_minute", "_succeeded")

    def __init__(self) -> None:
        self._minute = array("q", [-1] * BUCKETS)
        self._succeeded = array("I", [0] * BUCKETS)
        self._failed = array("I", [0] * BUCKETS)

    def add(self, ms: int, succeeded: bool) -> None:
        minute = minute_of(ms)
        slot = minute % BUCKETS
        seen = self._minute[slot]
        if minute < seen:
            return  # older than the hour this slot now counts
        if minute > seen:
            self._minute[slot] = minute
            self._succeeded[slot] = self._failed[slot] = 0
        if succeeded:
            self._succeeded[slot] += 1
        else:
            self._failed[slot] += 1

    def series(self, now_ms: int) -> list[tuple[int, int, int]]:
        """``(minute, succeeded, failed)`` for each of the last 60 minutes, oldest first."""
        now = minute_of(now_ms)
        out = []
        for minute in range(now - BUCKETS + 1, now + 1):
            slot = minute % BUCKETS
            if self._minute[slot] == minute:
                out.append((minute, self._succeeded[slot], self._failed[slot]))
            else:
                out.append((minute, 0, 0))
        return out

    def totals(self, now_ms: int) -> tuple[int, int]:
        """(succeeded, failed) over the last hour."""
        series = self.series(now_ms)
        return sum(s for _, s, _ in series), sum(f for _, _, f in series)


class EndpointStats:
    """One endpoint's counters: the hour's attempts, its last attempt, its dead letters."""

    __slots__ = ("counts", "dead_letters", "last")

    def __init__(self) -> None:
        self.counts = MinuteCounts()
        #: The raw attempt record of the newest attempt (by record timestamp).
        self.last: tuple[int, bytes] | None = None
        #: Deliveries of this endpoint now dead-lettered (in the status window).
        self.dead_letters = 0

    def add(self, ms: int, succeeded: bool, raw: bytes) -> None:
        self.counts.add(ms, succeeded)
        if self.last is None or ms >= self.last[0]:
            self.last = (ms, raw)


def summed(rings: list[MinuteCounts], now_ms: int) -> list[tuple[int, int, int]]:
    """The per-minute series of several rings added up."""
    total: list[list[int]] = [[m, 0, 0] for m, _, _ in _empty(now_ms)]
    for ring in rings:
        for i, (_, s, f) in enumerate(ring.series(now_ms)):
            total[i][1] += s
            total[i][2] += f
    return [(m, s, f) for m, s, f in total]


def _empty(now_ms: int) -> list[tuple[int, int, int]]:
    now = minute_of(now_ms)
    return [(m, 0, 0) for m in range(now - BUCKETS + 1, now + 1)]


def rate_summary(series: list[tuple[int, int, int]]) -> dict[str, Any]:
    """Totals of a series; ``deliveries_per_s`` over the last full minute."""
    succeeded = sum(s for _, s, _ in series)
    failed = sum(f for _, _, f in series)
    last_full = series[-2] if len(series) >= 2 else (0, 0, 0)
    return {
        "succeeded_last_hour": succeeded,
        "failed_last_hour": failed,
        "deliveries_per_s": round(last_full[1] / 60.0, 3),
    }
