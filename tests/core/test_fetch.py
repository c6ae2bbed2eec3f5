"""fetch.getmany: undecodable batches become Undecodable entries; nothing else is lost."""

from __future__ import annotations

import base64

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.batches import batch, produce_raw
from tests.support import create_topics, eventually, uid
from webhook_stream.broker import EmbeddedBroker
from webhook_stream.core import fetch
from webhook_stream.core.fetch import Undecodable, decode_partition, undecodable_record
from webhook_stream.core.produce import record_size
from webhook_stream.core.schemas import conforms

TP = TopicPartition("events.t", 0)


def _at(raw: bytes, base: int) -> bytes:
    """``raw`` with its base offset set (the broker does this on write)."""
    return base.to_bytes(8, "big") + raw[8:]


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (batch([b"x1", b"x2", b"x3"], codec=7), "UnsupportedCodecError"),
        (batch([b"x1", b"x2", b"x3"], codec=2, garbage=True), "DecompressionError"),
        (batch([b"x1", b"x2", b"x3"], crc=False, codec=1), "CorruptRecordException"),
    ],
    ids=["unknown-codec", "corrupt-snappy", "bad-crc"],
)
def test_records_before_a_bad_batch_are_kept_and_its_offsets_named(bad: bytes, error: str) -> None:
    good = _at(batch([b"a", b"b"]), 10)
    raw = good + _at(bad, 12) + _at(batch([b"after"]), 15)
    records, skipped = decode_partition(TP, raw, fetch_offset=10)
    assert [r.value for r in records] == [b"a", b"b"]
    assert skipped is not None
    assert (skipped.first_offset, skipped.offset) == (12, 14)
    assert skipped.error.startswith(error), skipped.error
    assert skipped.raw == _at(bad, 12)
    # Reading from inside it (a position in the middle) skips from there.
    records, skipped = decode_partition(TP, raw[len(good) :], fetch_offset=13)
    assert records == [] and skipped is not None
    assert (skipped.first_offset, skipped.offset) == (13, 14)


def test_a_corrupt_last_offset_never_skips_readable_records() -> None:
    bad = bytearray(_at(batch([b"x1", b"x2"], codec=7), 12))
    bad[23:27] = (10**6).to_bytes(4, "big")  # lastOffsetDelta: a million records
    raw = bytes(bad) + _at(batch([b"after"]), 14)
    records, skipped = decode_partition(TP, raw, fetch_offset=12)
    assert records == [] and skipped is not None
    assert (skipped.first_offset, skipped.offset) == (12, 13)  # up to the next batch
    records, skipped = decode_partition(TP, bytes(bad), fetch_offset=12, end=14)
    assert skipped is not None and skipped.offset == 13  # up to the end of the log


def test_an_unreadable_header_skips_one_offset_at_a_time() -> None:
    raw = _at(batch([b"a"]), 5)
    broken = raw[:8] + (10**6).to_bytes(4, "big") + raw[12:] + b"\x00" * 70
    records, skipped = decode_partition(TP, raw + _at(broken, 6)[: len(raw)], fetch_offset=5)
    assert [r.value for r in records] == [b"a"]
    assert skipped is None  # a batch cut short is the end of the fetch, as in aiokafka
    records, skipped = decode_partition(TP, b"\xff" * 80, fetch_offset=7)
    assert records == [] and skipped is not None
    assert (skipped.first_offset, skipped.offset, skipped.raw) == (7, 7, b"")


@pytest.mark.parametrize("size", [50, 3_000_000])
def test_the_rejected_record_conforms_and_fits(size: int) -> None:
    raw = bytes(range(256)) * (size // 256) + b"\x01" * (size % 256)
    skipped = Undecodable("events.t", 3, 12, 14, "UnsupportedCodecError: codec 7", raw)
    limit = 1_048_576
    value = undecodable_record(skipped, limit)
    assert record_size(None, value) <= limit
    record = orjson.loads(value)
    assert conforms("rejected", record)
    assert record["reason"] == "undecodable: UnsupportedCodecError: codec 7"
    assert record["source"] == {"topic": "events.t", "partition": 3, "offset": 12}
    assert record["last_offset"] == 14 and record["value_bytes"] == size
    kept = base64.b64decode(record["value_b64"])
    assert raw.startswith(kept) and record["truncated"] == (len(kept) < size)
    assert kept == raw if size < limit // 2 else len(kept) > limit // 2  # most of the room


async def test_getmany_skips_a_bad_batch_and_loses_no_other_partitions_records(
    broker: EmbeddedBroker,
) -> None:
    topic = f"fetch.{uid()}"
    await create_topics(broker.bootstrap, {topic: 2})
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    try:
        for i in range(3):
            await producer.send_and_wait(topic, b"p1-%d" % i, partition=1)
            await producer.send_and_wait(topic, b"p0-%d" % i, partition=0)
        assert await produce_raw(producer, topic, 0, batch([b"?"] * 4, codec=2, garbage=True)) == 0
        await producer.send_and_wait(topic, b"p0-after", partition=0)
        await producer.send_and_wait(topic, b"p1-after", partition=1)
        await consumer.start()
        tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        consumer.assign(tps)
        with pytest.raises(Exception, match="snappy"):  # what the worker died of
            while True:
                await consumer.getmany(timeout_ms=500)
        # aiokafka drains partitions in the order its fetch answered (its request is
        # shuffled): rounds, so a lost partition's records show in nearly every run; one
        # record per call in every other round.
        for round_ in range(10):
            await consumer.seek_to_beginning(*tps)
            got: dict[int, list[object]] = {0: [], 1: []}
            most = None if round_ % 2 else 1

            async def read(got: dict[int, list[object]] = got, most: int | None = most) -> bool:
                batch_ = await fetch.getmany(consumer, timeout_ms=200, max_records=most)
                assert most is None or sum(map(len, batch_.values())) <= most
                for tp, records in batch_.items():
                    got[tp.partition].extend(records)
                return len(got[0]) >= 5 and len(got[1]) >= 4

            await eventually(read, timeout=30, interval=0)
            assert [r.value for r in got[1]] == [b"p1-0", b"p1-1", b"p1-2", b"p1-after"]
            *before, skipped, after = got[0]
            assert [r.value for r in before] == [b"p0-0", b"p0-1", b"p0-2"]
            assert isinstance(skipped, Undecodable)
            assert (skipped.topic, skipped.partition) == (topic, 0)
            assert (skipped.first_offset, skipped.offset) == (3, 6)
            assert after.value == b"p0-after" and after.offset == 7
    finally:
        await consumer.stop()
        await producer.stop()
