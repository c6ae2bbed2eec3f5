"""Record batches no client would write: to test what the worker does with them."""

from __future__ import annotations

import struct

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record._crc32c import crc as crc32c
from aiokafka.record.default_records import DefaultRecordBatchBuilder

#: Offsets in a v2 batch header: crc (covers the bytes after it), attributes; records start.
_CRC_AT, _ATTRIBUTES_AT, _RECORDS_AT = 17, 21, 61


def batch(values: list[bytes], *, codec: int = 0, garbage: bool = False, crc: bool = True) -> bytes:
    """A v2 batch of ``values``; ``codec`` claimed in its attributes, payload garbage if asked.

    The CRC is computed over the edited bytes unless ``crc`` is False.
    """
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for delta, value in enumerate(values):
        builder.append(delta, timestamp=None, key=b"k", value=value, headers=[])
    raw = bytearray(builder.build())
    attributes = struct.unpack_from(">h", raw, _ATTRIBUTES_AT)[0]
    struct.pack_into(">h", raw, _ATTRIBUTES_AT, (attributes & ~7) | codec)
    if garbage:
        raw[_RECORDS_AT:] = b"\xff" * (len(raw) - _RECORDS_AT)
    if crc:
        struct.pack_into(">I", raw, _CRC_AT, crc32c(bytes(raw[_ATTRIBUTES_AT:])))
    return bytes(raw)


async def produce_raw(producer: AIOKafkaProducer, topic: str, partition: int, raw: bytes) -> int:
    """Write ``raw`` as it is (a ProduceRequest of our own); returns the broker's error code."""
    await producer.partitions_for(topic)  # metadata (creates the topic when auto-created)
    node = producer.client.cluster.leader_for_partition(TopicPartition(topic, partition))
    response = await producer.client.send(
        node, ProduceRequest(None, -1, 30_000, [(topic, [(partition, raw)])])
    )
    ((_, parts),) = response.topics
    return parts[0][1]


async def stored_codecs(
    producer: AIOKafkaProducer, topic: str, partition: int, first: int, last: int
) -> set[int]:
    """The codecs (attribute bits 0-2) of the stored batches holding offsets first..last."""
    tp = TopicPartition(topic, partition)
    await producer.partitions_for(topic)
    node = producer.client.cluster.leader_for_partition(tp)
    request = FetchRequest(200, 1, 50 << 20, 0, [(topic, [(partition, first, 50 << 20)])])
    response = await producer.client.send(node, request)
    ((_, ((_, error, _, *data),)),) = response.topics
    assert error == 0, error
    raw, at, codecs = data[-1], 0, set()
    while at + 27 <= len(raw):
        base, length = struct.unpack_from(">qi", raw, at)
        last_in_batch = base + struct.unpack_from(">i", raw, at + 23)[0]
        if last_in_batch >= first and base <= last:
            codecs.add(struct.unpack_from(">h", raw, at + _ATTRIBUTES_AT)[0] & 7)
        at += 12 + length
    return codecs
