"""RecordBatcher against the session broker: order, partitions, errors, close."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from tests.support import Kafka, create_topics, uid
from webhook_stream.broker import EmbeddedBroker
from webhook_stream.core.errors import RecordTooLarge
from webhook_stream.core.kafka import RecordBatcher


async def test_batched_records_keep_per_key_order_and_default_partitions(
    broker: EmbeddedBroker, kafka: Kafka
) -> None:
    topic = f"batcher.{uid()}"
    await create_topics(broker.bootstrap, {topic: 6})
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, max_batch_size=16_384)
    await producer.start()
    batcher = RecordBatcher(producer)
    try:
        keys = [f"ep_{i}".encode() for i in range(13)]
        futures = []
        for round_ in range(4):  # several turns of the loop, several batches per turn
            for seq in range(500):
                key = keys[seq % len(keys)]
                value = f"{round_}:{seq}:".encode() + b"x" * 300
                futures.append(batcher.send(topic, value, key=key, headers=[("h", b"v")]))
            await asyncio.sleep(0)
        too_big = batcher.send(topic, b"y" * 2_000_000, key=b"big")
        await asyncio.gather(*futures)
        with pytest.raises(RecordTooLarge):
            await too_big
        late = batcher.send(topic, b"last", key=keys[0])
        await batcher.close()  # hands over what is queued
        assert (await late) is not None  # acknowledged, not just resolved
    finally:
        await producer.stop()

    records = await kafka.read_all(topic)
    assert len(records) == 2001
    default = DefaultPartitioner()
    by_key: dict[bytes, list[tuple[int, int]]] = {}
    for r in records:
        assert r.partition == default(r.key, list(range(6)), list(range(6)))
        if r.value != b"last":
            assert r.headers == (("h", b"v"),)
            round_, seq, _ = r.value.split(b":", 2)
            by_key.setdefault(r.key, []).append((r.offset, int(round_) * 1000 + int(seq)))
    for key, seen in by_key.items():
        in_offset_order = [order for _, order in sorted(seen)]
        assert in_offset_order == sorted(in_offset_order), key


async def test_a_full_batcher_makes_its_producer_wait(broker: EmbeddedBroker) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    batcher = RecordBatcher(producer, max_queued=50)
    topic = f"batcher.{uid()}"
    try:
        futures = [batcher.send(topic, b"v", key=b"k") for _ in range(50)]
        assert batcher.full
        await asyncio.wait_for(batcher.wait_for_room(), timeout=30)
        assert not batcher.full
        await asyncio.gather(*futures)
    finally:
        await batcher.close()
        await producer.stop()


class _Counting(AIOKafkaProducer):  # type: ignore[misc]
    """The real producer, counting the batches handed to it."""

    handed = 0

    async def send_batch(self, *args: object, **kwargs: object) -> asyncio.Future[object]:
        self.handed += 1
        return await super().send_batch(*args, **kwargs)


async def test_lingering_records_go_as_one_batch_per_partition(broker: EmbeddedBroker) -> None:
    topic = f"batcher.{uid()}"
    await create_topics(broker.bootstrap, {topic: 3})
    producer = _Counting(bootstrap_servers=broker.bootstrap)
    await producer.start()
    batcher = RecordBatcher(producer, linger_s=0.5)
    try:
        futures = []
        for turn in range(20):  # twenty loop turns inside one linger
            futures += [
                batcher.send(topic, f"{turn}".encode(), key=f"k{i}".encode()) for i in range(9)
            ]
            await asyncio.sleep(0)
        assert not any(f.done() for f in futures)  # held, not handed over per turn
        acked = await asyncio.wait_for(asyncio.gather(*futures), timeout=30)
        partitions = {md.partition for md in acked}
        assert producer.handed == len(partitions) <= 3  # one batch per partition
    finally:
        await batcher.close()
        await producer.stop()


async def test_a_half_full_queue_or_close_cuts_the_linger_short(broker: EmbeddedBroker) -> None:
    topic = f"batcher.{uid()}"
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    batcher = RecordBatcher(producer, max_queued=50, linger_s=600)
    try:
        half = [batcher.send(topic, b"v", key=b"k") for _ in range(25)]
        await asyncio.wait_for(asyncio.gather(*half), timeout=30)  # not after 600 s
        last = batcher.send(topic, b"last", key=b"k")
        await asyncio.sleep(0)  # the flusher is lingering now
        await asyncio.wait_for(batcher.close(), timeout=30)
        assert (await last) is not None
    finally:
        await producer.stop()
