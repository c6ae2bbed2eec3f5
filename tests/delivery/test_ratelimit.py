"""Per-key token buckets: delays, not failures; keys independent; bounded memory."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from webhook_stream.delivery.ratelimit import TokenBuckets


class FakeTime:
    """A monotonic clock plus a sleep that advances it (sequential callers)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def buckets(fake: FakeTime, **kwargs: float) -> TokenBuckets:
    return TokenBuckets(clock=fake.clock, sleep=fake.sleep, **kwargs)


async def test_rate_is_enforced_by_waiting() -> None:
    fake = FakeTime()
    tb = buckets(fake)
    start = fake.now
    waited = [await tb.acquire("ep", 10.0) for _ in range(30)]
    # Burst (default max(1, rate) = 10) goes at once, the other 20 at 10/s.
    assert waited[:10] == [0.0] * 10
    assert all(w == pytest.approx(0.1) for w in waited[10:])
    assert fake.now - start == pytest.approx((30 - 10) / 10)


async def test_explicit_burst_and_slow_rate() -> None:
    fake = FakeTime()
    tb = buckets(fake)
    assert await tb.acquire("ep", 0.5, burst=2) == 0.0
    assert await tb.acquire("ep", 0.5, burst=2) == 0.0
    assert await tb.acquire("ep", 0.5, burst=2) == pytest.approx(2.0)
    # A rate below 1/s still has a burst of one token.
    assert await tb.acquire("slow", 0.25) == 0.0
    assert await tb.acquire("slow", 0.25) == pytest.approx(4.0)


async def test_tokens_refill_with_time() -> None:
    fake = FakeTime()
    tb = buckets(fake)
    for _ in range(5):
        await tb.acquire("ep", 5.0)
    assert await tb.acquire("ep", 5.0) == pytest.approx(0.2)
    fake.now += 10.0  # long pause: full again, but never above the burst
    assert [await tb.acquire("ep", 5.0) for _ in range(5)] == [0.0] * 5
    assert await tb.acquire("ep", 5.0) == pytest.approx(0.2)


async def test_two_keys_do_not_interfere() -> None:
    fake = FakeTime()
    tb = buckets(fake)
    for _ in range(3):
        await tb.acquire("a", 1.0)
    assert fake.sleeps == [pytest.approx(1.0), pytest.approx(1.0)]
    assert await tb.acquire("b", 1.0) == 0.0  # "a" is in debt, "b" is untouched


async def test_concurrent_callers_each_sleep_their_own_time() -> None:
    """Reservations: same-key callers queue in call order, each sleeping only its own wait."""
    requested: list[float] = []
    release = asyncio.Event()

    async def sleep(seconds: float) -> None:
        requested.append(seconds)
        await release.wait()

    tb = TokenBuckets(clock=lambda: 0.0, sleep=sleep)
    tasks = [asyncio.create_task(tb.acquire("ep", 10.0, burst=1)) for _ in range(5)]
    await asyncio.sleep(0)
    # Four callers are sleeping at the same time; the key's lock is not held meanwhile.
    assert requested == [pytest.approx(x) for x in (0.1, 0.2, 0.3, 0.4)]
    assert await tb.acquire("other", 10.0, burst=1) == 0.0
    release.set()
    assert await asyncio.gather(*tasks) == [0.0, *requested]


async def test_cancelled_waiter_gives_its_token_back() -> None:
    fake = FakeTime()
    gate = asyncio.Event()

    async def sleep(seconds: float) -> None:
        await gate.wait()

    tb = TokenBuckets(clock=fake.clock, sleep=sleep)
    await tb.acquire("ep", 1.0)
    waiter = asyncio.create_task(tb.acquire("ep", 1.0))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    fake.now += 1.0
    assert tb.reserve("ep", 1.0) == 0.0  # the cancelled reservation did not count


async def test_idle_buckets_are_dropped_lazily() -> None:
    fake = FakeTime()
    tb = buckets(fake, idle_s=600.0, sweep_interval_s=60.0)
    for i in range(100):
        await tb.acquire(f"ep{i}", 10.0)
    assert len(tb) == 100
    fake.now += 601.0
    await tb.acquire("fresh", 10.0)  # triggers the sweep
    assert len(tb) == 1


async def test_bucket_still_in_debt_is_kept() -> None:
    """Dropping a bucket that has not refilled would let the next call through early."""
    fake = FakeTime()
    tb = TokenBuckets(clock=fake.clock, sleep=fake.sleep, idle_s=600.0, sweep_interval_s=0.0)
    rate = 1 / 1000  # one call per 1000 s
    assert tb.reserve("slow", rate) == 0.0
    fake.now += 601.0
    tb.reserve("other", 10.0)
    assert len(tb) == 2
    assert tb.reserve("slow", rate) == pytest.approx(399.0)


def test_rate_validation() -> None:
    tb = TokenBuckets()
    assert tb.reserve("ep", math.inf) == 0.0
    for bad in (0.0, -1.0, math.nan, -math.inf):
        with pytest.raises(ValueError, match="rate_per_s"):
            tb.reserve("ep", bad)


async def test_real_time_rate() -> None:
    tb = TokenBuckets()
    started = time.monotonic()
    waited = [await tb.acquire("ep", 20.0, burst=1) for _ in range(6)]
    elapsed = time.monotonic() - started
    # 5 waits of 50 ms; generous upper bound for loaded CI machines.
    assert 0.24 <= elapsed < 2.0
    # Waits are computed, not measured: late wake-ups only shorten the next ones.
    assert 0.0 < sum(waited) <= 0.25 + 1e-6


async def test_real_time_keys_run_concurrently() -> None:
    tb = TokenBuckets()
    await tb.acquire("slow", 2.0, burst=1)
    slow = asyncio.create_task(tb.acquire("slow", 2.0, burst=1))  # waits ~0.5 s
    await asyncio.sleep(0.01)
    started = time.monotonic()
    assert await tb.acquire("fast", 2.0, burst=1) == 0.0
    assert time.monotonic() - started < 0.1
    assert not slow.done()
    assert await slow == pytest.approx(0.5, abs=0.05)
