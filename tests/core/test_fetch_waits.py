"""Fetch waits lengthen while a consumer's fetches come back empty, reset on data."""

from __future__ import annotations

import asyncio
import inspect
import time

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.consumer.fetcher import Fetcher

from tests.support import create_topics, eventually, uid
from webhook_stream.broker import EmbeddedBroker
from webhook_stream.core import fetch, kafka
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


def test_aiokafka_still_has_what_the_hook_uses() -> None:
    """aiokafka is pinned; these private names are what :func:`fetch_waits.install` uses."""
    assert "_fetch_max_wait_ms" in inspect.getsource(Fetcher.__init__)
    assert inspect.iscoroutinefunction(Fetcher._proc_fetch_request)
    routine = inspect.getsource(Fetcher._fetch_requests_routine)
    assert "self._proc_fetch_request(" in routine
    assert "self._fetch_max_wait_ms" in inspect.getsource(Fetcher._get_actions_per_node)


@pytest.mark.integration
async def test_an_idle_consumer_waits_longer_and_still_gets_the_next_record_in_time(
    broker: EmbeddedBroker,
) -> None:
    topic = f"waits.{uid()}"
    await create_topics(broker.bootstrap, {topic: 2})
    settings = Settings(broker=broker.url, fetch_max_wait=0.02, fetch_idle_wait=0.2)
    consumer = kafka.tail_consumer(settings)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
    await producer.start()
    await consumer.start()
    try:
        assert isinstance(consumer, kafka.AdaptiveConsumer)
        await fetch.open_topic(consumer, topic)
        fetcher = consumer._fetcher
        # Nothing to read: after PATIENCE short waits the wait reaches the longest.
        await eventually(lambda: fetcher._fetch_max_wait_ms == 200, timeout=10)
        assert consumer.fetch_waits.empty >= PATIENCE + 3
        sent = time.monotonic()
        await producer.send_and_wait(topic, b"after quiet", partition=1)
        got: list[bytes] = []
        while not got:
            batch = await fetch.getmany(consumer, timeout_ms=1000)
            got = [r.value for records in batch.values() for r in records]
        # Seen within one long wait (plus a round trip), not more.
        assert time.monotonic() - sent < 0.2 + 0.3
        assert got == [b"after quiet"]
        assert fetcher._fetch_max_wait_ms == 20  # back to the short wait at once
        await asyncio.sleep(0)
    finally:
        await consumer.stop()
        await producer.stop()
