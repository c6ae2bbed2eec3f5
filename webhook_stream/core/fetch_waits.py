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

A loop that polls ``getmany`` with a short timeout only to look at its stop flag wakes
twice a second for nothing while its consumer is quiet. Such a loop passes ``idle_ms`` to
:func:`webhook_stream.core.fetch.getmany`: once its consumer is :func:`quiet`, it waits
until a fetch brings records (:func:`until_records`, on aiokafka's own fetch waiters, so
a record is handed over as soon as it is fetched) or ``idle_ms`` pass, and its ``stop``
calls :func:`wake` so that stopping is not delayed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "IDLE_POLL_MS",
    "PATIENCE",
    "FetchWaits",
    "install",
    "next_wait_ms",
    "quiet",
    "until_records",
    "waiting",
    "wake",
]

#: Empty fetches at the short wait before it starts to lengthen: traffic with gaps shorter
#: than this many short waits (200 ms at 20 ms) keeps the latency of a busy worker.
PATIENCE = 10
#: How long a quiet consumer's loop waits for records before it looks at its flags again
#: (``idle_ms``): each return without records is a wakeup of an idle worker.
IDLE_POLL_MS = 5000


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


def quiet(consumer: Any) -> bool:
    """Whether ``consumer``'s fetch wait has started to lengthen (its fetches came back
    empty ``patience`` times in a row); False for a consumer without fetch waits."""
    waits = getattr(consumer, "fetch_waits", None)
    return waits is not None and waits.empty >= waits.patience


async def until_records(consumer: Any, seconds: float) -> None:
    """Return once a fetch of ``consumer`` brought records (or an error), after
    ``seconds``, or when :func:`wake` is called, whichever comes first."""
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is None or getattr(consumer, "_woken", False):
        return
    waiter = fetcher._create_fetch_waiter()  # what aiokafka resolves when a fetch lands
    consumer._idle_waiter = waiter
    try:
        await asyncio.wait([waiter], timeout=seconds)
    finally:
        consumer._idle_waiter = None
        if not waiter.done():
            waiter.cancel()


def waiting(consumer: Any) -> bool:
    """Whether a :func:`until_records` of ``consumer`` is waiting now."""
    return getattr(consumer, "_idle_waiter", None) is not None


def wake(consumer: Any) -> None:
    """End a pending :func:`until_records` of ``consumer`` now, and keep any later one
    from waiting (its loop is stopping)."""
    if consumer is None:
        return
    consumer._woken = True
    waiter = getattr(consumer, "_idle_waiter", None)
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
