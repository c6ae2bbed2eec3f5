"""Per-key token buckets that delay rather than refuse.

An endpoint's ``rate_limit_per_s`` caps how fast webhook-stream calls it. Going over the
rate is not an error: the caller waits for its token. Waiting is by reservation (as Go's
``rate.Limiter.Reserve``): :meth:`TokenBuckets.acquire` takes a token at once, letting the
bucket go into debt, works out when that token will have been earned, and sleeps until
then. No lock is held while sleeping, so a throttled key never delays another key, and
concurrent callers of one key are served in call order, each sleeping its own time.

Buckets idle for longer than ``idle_s`` (10 minutes) and full again are dropped lazily
(a sweep at most once per ``sweep_interval_s``), so memory follows the keys in use.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["TokenBuckets"]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    #: Rate and capacity of the latest call (the sweep needs them to judge "refilled").
    rate: float
    capacity: float


class TokenBuckets:
    """Token buckets by key (e.g. endpoint id), created on first use.

    ``clock`` (monotonic seconds) and ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        idle_s: float = 600.0,
        sweep_interval_s: float = 60.0,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._idle_s = idle_s
        self._sweep_interval_s = sweep_interval_s
        self._buckets: dict[str, _Bucket] = {}
        self._last_sweep = clock()

    def __len__(self) -> int:
        """Buckets currently held (for tests and a gauge)."""
        return len(self._buckets)

    async def acquire(self, key: str, rate_per_s: float, burst: float | None = None) -> float:
        """Wait until ``key`` may make one more call; return the seconds waited.

        ``rate_per_s`` tokens are earned per second up to ``burst`` (default
        ``max(1, rate_per_s)``; at least 1). An infinite rate never waits. If the caller is
        cancelled while waiting, its token is given back.
        """
        wait = self.reserve(key, rate_per_s, burst)
        if wait > 0:
            try:
                await self._sleep(wait)
            except asyncio.CancelledError:
                self._refund(key, rate_per_s, burst)
                raise
        return wait

    def reserve(self, key: str, rate_per_s: float, burst: float | None = None) -> float:
        """Take one token of ``key`` now; return how long the caller must wait before using it.

        The synchronous half of :meth:`acquire`, for callers that schedule the wait themselves.
        """
        if math.isinf(rate_per_s) and rate_per_s > 0:
            return 0.0
        if not rate_per_s > 0 or math.isnan(rate_per_s):
            raise ValueError(f"rate_per_s must be > 0, not {rate_per_s!r}")
        capacity = self._capacity(rate_per_s, burst)
        now = self._clock()
        self._maybe_sweep(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(capacity, now, rate_per_s, capacity)
        else:
            self._refill(bucket, now, rate_per_s, capacity)
        bucket.tokens -= 1.0
        return -bucket.tokens / rate_per_s if bucket.tokens < 0 else 0.0

    @staticmethod
    def _capacity(rate_per_s: float, burst: float | None) -> float:
        if burst is None:
            return max(1.0, rate_per_s)
        if math.isnan(burst):
            raise ValueError("burst must be a number")
        return max(1.0, burst)

    @staticmethod
    def _refill(bucket: _Bucket, now: float, rate_per_s: float, capacity: float) -> None:
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(capacity, bucket.tokens + elapsed * rate_per_s)
        bucket.updated = now
        bucket.rate = rate_per_s
        bucket.capacity = capacity

    def refund(self, key: str, rate_per_s: float, burst: float | None = None) -> None:
        """Give back a token :meth:`reserve` took (its call was not made)."""
        self._refund(key, rate_per_s, burst)

    def _refund(self, key: str, rate_per_s: float, burst: float | None) -> None:
        bucket = self._buckets.get(key)
        if bucket is not None:
            capacity = self._capacity(rate_per_s, burst)
            self._refill(bucket, self._clock(), rate_per_s, capacity)
            bucket.tokens = min(capacity, bucket.tokens + 1.0)

    def _maybe_sweep(self, now: float) -> None:
        if now - self._last_sweep < self._sweep_interval_s:
            return
        self._last_sweep = now
        # Only buckets that have refilled completely go: such a bucket is the same as a
        # new one, so dropping it never lets a call through early (a very slow rate may
        # keep a bucket in debt past idle_s; it stays until it has refilled).
        stale = [
            key
            for key, b in self._buckets.items()
            if now - b.updated > self._idle_s
            and b.tokens + (now - b.updated) * b.rate >= b.capacity
        ]
        for key in stale:
            del self._buckets[key]
