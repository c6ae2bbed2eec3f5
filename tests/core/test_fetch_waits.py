"""Fetch waits lengthen while a consumer's fetches come back empty, reset on data."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.consumer.fetcher import Fetcher

from tests.support import create_topics, eventually, uid
from webhook_stream.broker import EmbeddedBroker
from webhook_stream.core import fetch, fetch_waits, kafka
from webhook_stream.core.fetch_waits import PATIENCE, FetchWaits, next_wait_ms
from webhook_stream.core.settings import Settings


def test_the_wait_stays_short_for_patience_empty_fetches_then_doubles_to_the_longest() -> None:
    waits = [next_wait_ms(empty, 20, 200) for empty in range(PATIENCE + 6)]
    assert waits[:PATIENCE] == [20] * PATIENCE
    assert waits[PATIENCE:] == [40, 80, 160, 200, 200, 200]


def test_a_longest_not_above_the_short_wait_never_lengthens() -> None:
    assert {next_wait_ms(empty, 200, 200) for empty in range(100)} == {200}
    assert {next_wait_ms(empty, 200, 50) for empty in range(100)} == {200}


def test_a_huge_streak_stays_at_the_longest() -> None:
    assert next_wait_ms(10**9, 20, 200) == 200
    assert next_wait_ms(10**9, 0, 200) == 200


def test_records_put_the_wait_back_to_the_short_one() -> None:
    waits = FetchWaits(20, 200)
    for _ in range(PATIENCE + 10):
        last = waits.fetched(False)
    assert last == 200
    assert waits.fetched(True) == 20
    assert waits.empty == 0
    assert waits.fetched(False) == 20  # patience again


def test_the_settings_give_hot_and_background_waits() -> None:
    settings = Settings(fetch_max_wait=0.02, fetch_idle_wait=0.2, background_idle_wait=1.0)
    assert kafka.waits_of(settings, background=False) == FetchWaits(20, 200)
    assert kafka.waits_of(settings, background=True) == FetchWaits(200, 1000)
    shorter = Settings(fetch_max_wait=0.02, background_idle_wait=0.1)
    assert kafka.waits_of(shorter, background=True) == FetchWaits(200, 200)
    assert kafka.waits_of(Settings(fetch_idle_wait=0.0), background=False) == FetchWaits(20, 20)


async def test_the_fetch_routine_sleeps_longer_than_any_fetch_it_waits_for() -> None:
    settings = Settings(fetch_max_wait=0.02, fetch_idle_wait=0.2, background_idle_wait=1.0)
    hot = kafka.tail_consumer(settings)
    background = kafka.tail_consumer(settings, background=True)
    # aiokafka's own default is 200 ms: a wakeup per consumer five times a second.
    assert hot._consumer_timeout == 0.4
    assert background._consumer_timeout == 2.0
    assert kafka.tail_consumer(settings, consumer_timeout_ms=100)._consumer_timeout == 0.1


def test_aiokafka_still_has_what_the_hook_uses() -> None:
    """aiokafka is pinned; these private names are what :func:`fetch_waits.install` uses."""
    assert "_fetch_max_wait_ms" in inspect.getsource(Fetcher.__init__)
    assert inspect.iscoroutinefunction(Fetcher._proc_fetch_request)
    routine = inspect.getsource(Fetcher._fetch_requests_routine)
    assert "self._proc_fetch_request(" in routine
    assert "self._fetch_max_wait_ms" in inspect.getsource(Fetcher._get_actions_per_node)
    # fetch_waits.until_records waits on the fetcher's own waiters, resolved on new data.
    assert "_fetch_waiters" in inspect.getsource(Fetcher._create_fetch_waiter)
    assert "self._notify(waiter)" in routine
    # The routine's sleep is only a fallback: it also wakes on its fetches, seeks (the
    # consume future), a new assignment and resumed partitions.
    assert "timeout=timeout" in routine
    for woken_by in ("self._pending_tasks", "self._wait_consume_future", "unassign_future"):
        assert woken_by in routine
    assert "self._fetcher_timeout" in inspect.getsource(Fetcher._get_actions_per_node)


def test_quiet_follows_the_empty_streak() -> None:
    class Consumer:
        fetch_waits = FetchWaits(20, 200)

    consumer = Consumer()
    assert not fetch_waits.quiet(consumer)
    for _ in range(PATIENCE):
        consumer.fetch_waits.fetched(False)
    assert fetch_waits.quiet(consumer)
    consumer.fetch_waits.fetched(True)
    assert not fetch_waits.quiet(consumer)
    assert not fetch_waits.quiet(object())  # a plain aiokafka consumer never is


@dataclass
class Tail:
    consumer: kafka.AdaptiveConsumer
    producer: AIOKafkaProducer
    topic: str


@pytest.fixture
async def tail(broker: EmbeddedBroker) -> AsyncIterator[Tail]:
    """A hot tail consumer (20 ms wait, 200 ms at its longest) on a new topic of 2
    partitions, and a producer that sends at once."""
    topic = f"waits.{uid()}"
    await create_topics(broker.bootstrap, {topic: 2})
    settings = Settings(broker=broker.url, fetch_max_wait=0.02, fetch_idle_wait=0.2)
    consumer = kafka.tail_consumer(settings)
    assert isinstance(consumer, kafka.AdaptiveConsumer)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
    await producer.start()
    await consumer.start()
    try:
        await fetch.open_topic(consumer, topic)
        yield Tail(consumer, producer, topic)
    finally:
        await consumer.stop()
        await producer.stop()


@pytest.mark.integration
async def test_an_idle_consumer_waits_longer_and_still_gets_the_next_record_in_time(
    tail: Tail,
) -> None:
    consumer = tail.consumer
    fetcher = consumer._fetcher
    # Nothing to read: after PATIENCE short waits the wait reaches the longest.
    await eventually(lambda: fetcher._fetch_max_wait_ms == 200, timeout=10)
    assert consumer.fetch_waits.empty >= PATIENCE + 3
    sent = time.monotonic()
    await tail.producer.send_and_wait(tail.topic, b"after quiet", partition=1)
    got: list[bytes] = []
    while not got:
        batch = await fetch.getmany(consumer, timeout_ms=1000)
        got = [r.value for records in batch.values() for r in records]
    # Seen within one long wait (plus a round trip), not more.
    assert time.monotonic() - sent < 0.2 + 0.3
    assert got == [b"after quiet"]
    assert fetcher._fetch_max_wait_ms == 20  # back to the short wait at once


@pytest.mark.integration
async def test_a_quiet_loop_waits_idle_ms_yet_gets_a_record_as_soon_as_it_is_fetched(
    tail: Tail,
) -> None:
    consumer = tail.consumer
    await eventually(lambda: fetch_waits.quiet(consumer), timeout=10)
    # Quiet: one call waits the whole idle_ms (not the 100 ms timeout) for nothing.
    t0 = time.monotonic()
    assert await fetch.getmany(consumer, timeout_ms=100, idle_ms=1500) == {}
    assert time.monotonic() - t0 >= 1.4
    # A record produced while a call waits is returned once fetched, not at the end of idle_ms.
    idle = asyncio.create_task(fetch.getmany(consumer, timeout_ms=100, idle_ms=20_000))
    await eventually(lambda: fetch_waits.waiting(consumer), timeout=5, interval=0.01)
    sent = time.monotonic()
    await tail.producer.send_and_wait(tail.topic, b"after quiet")
    batch = await asyncio.wait_for(idle, 5)
    assert [r.value for records in batch.values() for r in records] == [b"after quiet"]
    assert time.monotonic() - sent < 0.2 + 0.3


@pytest.mark.integration
async def test_wake_ends_a_quiet_wait_at_once_and_every_later_one(tail: Tail) -> None:
    consumer = tail.consumer
    await eventually(lambda: fetch_waits.quiet(consumer), timeout=10)
    idle = asyncio.create_task(fetch.getmany(consumer, timeout_ms=100, idle_ms=60_000))
    await eventually(lambda: fetch_waits.waiting(consumer), timeout=5, interval=0.01)
    t0 = time.monotonic()
    fetch_waits.wake(consumer)  # what a loop's stop() does
    assert await asyncio.wait_for(idle, 5) == {}
    assert time.monotonic() - t0 < 0.5
    assert not fetch_waits.waiting(consumer)
    # Stopping: a call after the wake (the race with the loop's flag) does not wait.
    t0 = time.monotonic()
    assert await fetch.getmany(consumer, timeout_ms=100, idle_ms=60_000) == {}
    assert time.monotonic() - t0 < 0.5
