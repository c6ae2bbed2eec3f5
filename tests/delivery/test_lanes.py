"""Unit tests of the delivery core: per-key lanes, in-order commits, policy, hot-path helpers."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from tests.support import eventually
from webhook_stream.core.kafka import CachedPartitioner
from webhook_stream.core.records import to_iso
from webhook_stream.delivery.lanes import Lanes, OffsetTracker
from webhook_stream.delivery.policy import Outcome, choose_retry_delay_topic, classify, retry_delay
from webhook_stream.http.client import HttpResult, parse_retry_after


def never(exc: BaseException) -> None:
    raise AssertionError(exc)


async def test_one_key_runs_in_order_one_at_a_time_other_keys_in_parallel() -> None:
    running: dict[bytes, int] = {b"a": 0, b"b": 0}
    peak = {b"a": 0, b"b": 0}
    done: list[tuple[bytes, int]] = []

    async def handle(item: tuple[bytes, int]) -> None:
        key, _ = item
        running[key] += 1
        peak[key] = max(peak[key], running[key])
        await asyncio.sleep(0.005 if key == b"a" else 0)
        running[key] -= 1
        done.append(item)

    lanes: Lanes[tuple[bytes, int]] = Lanes(handle, 100, never)
    for i in range(10):
        lanes.submit(b"a", 1, (b"a", i))
        lanes.submit(b"b", 1, (b"b", i))
    assert await lanes.drain(5)
    assert [i for k, i in done if k == b"a"] == list(range(10))
    assert peak == {b"a": 1, b"b": 1}
    # b never waited for the slow a: all of b finished before most of a.
    assert done.index((b"b", 9)) < done.index((b"a", 5))
    assert lanes.pending == 0


async def test_max_in_flight_and_the_bound_that_pauses_fetching() -> None:
    gate = asyncio.Event()
    started: list[int] = []

    async def handle(i: int) -> None:
        started.append(i)
        await gate.wait()

    lanes: Lanes[int] = Lanes(handle, 3, never)
    for i in range(3):
        lanes.submit(b"k", 2, i)
    await eventually(lambda: len(started) == 2)  # max_in_flight 2
    assert lanes.full  # 3 held: the consumer pauses
    waiting = asyncio.create_task(lanes.wait_for_room(5))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    gate.set()
    await asyncio.wait_for(waiting, 5)
    assert not lanes.full
    assert await lanes.drain(5)
    assert sorted(started) == [0, 1, 2]


async def test_drain_abandons_what_does_not_finish() -> None:
    hang = asyncio.Event()

    async def stuck(_: int) -> None:
        await hang.wait()

    lanes: Lanes[int] = Lanes(stuck, 10, never)
    lanes.submit(b"k", 1, 1)
    lanes.submit(b"k", 1, 2)
    assert not await lanes.drain(0.05)
    assert lanes.pending == 0 and not lanes.full


async def test_a_failing_handler_reports_and_the_lane_goes_on() -> None:
    errors: list[BaseException] = []
    seen: list[int] = []

    async def handle(i: int) -> None:
        if i == 1:
            raise ValueError("bug")
        seen.append(i)

    lanes: Lanes[int] = Lanes(handle, 10, errors.append)
    for i in range(3):
        lanes.submit(b"k", 1, i)
    assert await lanes.drain(5)
    assert seen == [0, 2] and [str(e) for e in errors] == ["bug"]


def test_tracker_commits_only_finished_prefixes_per_partition() -> None:
    p0, p1 = TopicPartition("t", 0), TopicPartition("t", 1)
    tracker = OffsetTracker()
    entries = [tracker.track(p0, o) for o in range(10, 14)] + [tracker.track(p1, 0)]
    tracker.done(entries[2])
    tracker.done(entries[4])  # another partition is independent
    assert tracker.committable() == {p1: 1}
    tracker.done(entries[0])
    assert tracker.committable() == {p0: 11}
    assert tracker.committable() == {}
    tracker.done(entries[1])
    assert tracker.committable() == {p0: 13}  # 12 was already finished
    assert len(tracker) == 1
    tracker.forget([p0])
    tracker.done(entries[3])  # finished after its partition was revoked: not committed
    assert tracker.committable() == {} and len(tracker) == 0
    # p0 assigned again and its new records all finished: a late finish changes nothing.
    late = tracker.track(p0, 20)
    tracker.done(late)
    assert tracker.committable() == {p0: 21}
    tracker.done(entries[3])
    assert tracker.committable() == {}


def result(status: int | None, error: str | None = None) -> HttpResult:
    return HttpResult(status, b"", error, None, 0.01)


def test_classification_table() -> None:
    for status in (200, 201, 204, 299):
        assert classify(result(status)) is Outcome.SUCCESS
    for status in (408, 429, 500, 502, 503, 504, 599):
        assert classify(result(status)) is Outcome.RETRY
    for status in (300, 301, 302, 304, 307, 400, 401, 403, 404, 409, 410, 422):
        assert classify(result(status)) is Outcome.FATAL
    assert classify(result(409), extra_retry_codes={409}) is Outcome.RETRY
    for error in ("timeout", "connect", "dns", "tls", "connection_reset", "protocol"):
        assert classify(result(None, error)) is Outcome.RETRY
    for error in ("invalid_url", "invalid_header", "forbidden_address", "insecure_url"):
        assert classify(result(None, error)) is Outcome.FATAL


def test_retry_delay_jitter_and_retry_after() -> None:
    assert retry_delay(10, rand=0) == 10
    assert retry_delay(10, rand=1, jitter=0.1) == 11
    assert retry_delay(10, retry_after=60, rand=0) == 60
    assert retry_delay(10, retry_after=5, rand=0) == 10  # Retry-After only ever lengthens
    assert retry_delay(10, retry_after=10_000, retry_after_max=3600, rand=0) == 3600
    assert choose_retry_delay_topic(45, [5, 30, 120]) == 30
    assert choose_retry_delay_topic(2, [5, 30, 120]) == 5
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412460) == 20
    assert parse_retry_after("soon") is None


# -- hot-path helpers: same answers as the slow originals ---------------------------------


def test_cached_partitioner_agrees_with_the_default() -> None:
    default, cached = DefaultPartitioner(), CachedPartitioner(max_keys=50)
    for n in (1, 3, 8, 12):
        parts = list(range(n))
        for i in range(300):  # more keys than max_keys: the cache is cleared on the way
            key = f"ep_{i}_{'x' * (i % 40)}".encode()
            assert cached(key, parts, parts) == default(key, parts, parts)
            assert cached(key, parts, parts) == default(key, parts, parts)  # from the cache
    assert cached(None, [0, 1], [1]) == 1  # no key: spread over available partitions


def test_to_iso_matches_datetime_formatting() -> None:
    rng = random.Random(7)
    samples = [0.0, 0.0005, 0.9995, 1.9999996, -0.5, 1764150000.1234564, 1764150000.9999999]
    samples += [rng.uniform(-1e9, 4e9) for _ in range(5000)]
    samples += [round(rng.uniform(0, 4e9), 3) for _ in range(5000)]
    for ts in samples:
        want = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
        assert to_iso(ts) == want.replace("+00:00", "Z"), ts
