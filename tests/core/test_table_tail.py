"""One consumer tails several compacted tables as each would tail its topic alone."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from tests.support import create_topics, eventually, uid
from webhook_stream.broker import EmbeddedBroker
from webhook_stream.core.settings import Settings
from webhook_stream.core.table import CompactedTable
from webhook_stream.core.table_tail import TableTail


class Collected(CompactedTable):
    def __init__(self, settings: Settings, topic: str) -> None:
        super().__init__(settings)
        self.topic = topic
        self.values: dict[str, bytes | None] = {}
        self.loaded_with: dict[str, bytes | None] | None = None

    async def apply(self, record: ConsumerRecord) -> None:
        assert record.topic == self.topic
        self.values[record.key.decode()] = record.value

    async def loaded(self) -> None:
        self.loaded_with = dict(self.values)


async def _topics(broker: EmbeddedBroker, *names: str) -> None:
    await create_topics(broker.bootstrap, dict.fromkeys(names, 3))


def test_two_tables_of_one_topic_are_refused() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="one table per topic"):
        TableTail(settings, Collected(settings, "t.a"), Collected(settings, "t.a"))


async def test_each_table_gets_its_topic_from_the_beginning_and_keeps_tailing(
    broker: EmbeddedBroker,
) -> None:
    a, b, empty = f"tail.{uid()}", f"tail.{uid()}", f"tail.{uid()}"
    await _topics(broker, a, b, empty)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
    await producer.start()
    settings = Settings(broker=broker.url)
    tables = [Collected(settings, a), Collected(settings, b), Collected(settings, empty)]
    tail = TableTail(settings, *tables)
    task = asyncio.create_task(tail.run())
    try:
        for i in range(30):
            await producer.send(a, b"a%d" % i, key=b"k%d" % (i % 7))
            await producer.send(b, b"b%d" % i, key=b"j%d" % (i % 5))
        await producer.flush()
        ta, tb, te = tables
        await asyncio.wait_for(asyncio.gather(*(t.ready.wait() for t in tables)), 30)
        assert te.values == {} and te.loaded_with == {}
        # Ready only once what was there at start is applied, each table its own records.
        assert ta.loaded_with is not None and set(ta.loaded_with) <= {f"k{i}" for i in range(7)}
        await eventually(lambda: len(ta.values) == 7 and len(tb.values) == 5)
        assert ta.values["k0"] == b"a28" and tb.values["j4"] == b"b29"
        # Read your writes, per table and partition.
        meta = await producer.send_and_wait(b, b"late", key=b"new")
        assert await tb.wait_applied(meta.partition, meta.offset, 10)
        assert tb.values["new"] == b"late" and "new" not in ta.values
        ends = await ta.end_offsets(5)
        assert ends is not None and set(ends) == {0, 1, 2}
        assert await ta.caught_up(ends, 10)
        meta = await producer.send_and_wait(empty, b"first", key=b"e")
        assert await te.wait_applied(meta.partition, meta.offset, 10)
        assert te.values == {"e": b"first"}
    finally:
        tail.stop()
        await asyncio.wait_for(task, 10)
        await producer.stop()
    assert all(t._consumer is None and t.stopped for t in tables)
    # Stopped: nothing more will be applied, so nobody waits for it (a worker's shutdown
    # must not sit out a health sync's 30 s).
    t0 = time.monotonic()
    assert await tables[0].end_offsets(30) is None
    assert not await tables[1].wait_applied(0, 10**9, 30)
    assert not await tables[1].caught_up({0: 10**9}, 30)
    assert time.monotonic() - t0 < 1
