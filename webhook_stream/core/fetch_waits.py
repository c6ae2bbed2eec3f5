"""Fetch waits that lengthen while a consumer's fetches come back empty.

A fetch asks the broker to wait up to ``fetch_max_wait_ms`` for data. Tansu never answers
early, so every consumer of an idle worker costs one fetch round trip per wait, on the
worker and on the broker (Kafka answers early when data arrives, so there a long wait only
saves polls). A consumer keeps its short wait while data flows and for ``patience`` empty
fetches after it; then each empty fetch doubles the wait up to ``longest``, and the first
fetch that brings records puts it back to the short wait. After a quiet spell the first
record is thus seen at most ``longest`` late per consumer it passes through (the
``fetch_idle_wait`` setting).

aiokafka fetches in a background task and offers no hook for the wait; :func:`install`
wraps its fetcher's ``_proc_fetch_request`` (which says whether a fetch brought records)
and sets ``_fetch_max_wait_ms``, read when the next request is built. aiokafka is pinned;
``tests/core/test_fetch_waits.py`` fails if they move.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["PATIENCE", "FetchWaits", "install", "next_wait_ms"]

#: Empty fetches at the short wait before it starts to lengthen: traffic with gaps shorter
#: than this many short waits (200 ms at 20 ms) keeps the latency of a busy worker.
PATIENCE = 10


def next_wait_ms(empty: int, short_ms: int, longest_ms: int, patience: int = PATIENCE) -> int:
    """The wait of the next fetch after ``empty`` fetches in a row brought no records."""
    if empty < patience or longest_ms <= short_ms:
        return short_ms
    steps = min(empty - patience + 1, 32)
    return min(longest_ms, max(short_ms, 1) << steps)


@dataclass(slots=True)
class FetchWaits:
    """One consumer's fetch wait: short while records come, lengthening while none do."""

    short_ms: int
    longest_ms: int
    patience: int = PATIENCE
    #: Fetches in a row that brought no records.
    empty: int = 0

    def fetched(self, records: bool) -> int:
        """Count one fetch's answer; the wait of the next fetch."""
        self.empty = 0 if records else self.empty + 1
        return next_wait_ms(self.empty, self.short_ms, self.longest_ms, self.patience)


def install(fetcher: Any, waits: FetchWaits) -> None:
    """Let ``waits`` set the wait of each fetch ``fetcher`` (an aiokafka Fetcher) sends."""
    fetch_once: Callable[..., Awaitable[bool]] = fetcher._proc_fetch_request

    async def fetch_and_adapt(*args: Any, **kwargs: Any) -> bool:
        got = await fetch_once(*args, **kwargs)
        fetcher._fetch_max_wait_ms = waits.fetched(bool(got))
        return got

    fetcher._fetch_max_wait_ms = waits.short_ms
    fetcher._proc_fetch_request = fetch_and_adapt
