"""Row 6h: bytes and CPU per delivery record with each codec of the worker's producer.

In-process and standalone (no broker): batches of delivery records as the fan-out writes
them (a ~1 KB event each, the bench's shape; one endpoint per event) are built with
aiokafka's own batch builder for each ``WEBHOOK_STREAM_COMPRESSION`` value, as the worker's
producer builds them (``RecordBatcher``: one batch per partition per loop turn), then read
back as the delivery consumer and the status view read them. Reported per record: bytes
on the wire (what the broker stores and serves twice: delivery loop and status view) and
the worker's CPU to write it once and read it twice. What chose the default.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.record.memory_records import MemoryRecords

from webhook_stream.core.records import Delivery, Event, SourceRef, delivery_id_for, iso_now

from .procs import cpu_seconds
from .report import Row

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
#: Records per batch: what one loop turn of a busy fan-out writes to one partition.
BATCH = 200
ROUNDS = 20
#: Batches of records the broker takes per codec (row 6h.broker).
BROKER_ROUNDS = 100
_CODE = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def _deliveries(n: int) -> list[Delivery]:
    out = []
    for i in range(n):
        data = {
            "order_id": f"ord_{i:08d}",
            "customer": {"id": f"cus_{i % 977}", "email": f"user{i % 977}@example.com"},
            "items": [{"sku": f"sku-{j}", "qty": j + 1, "price": 9.99 + j} for j in range(6)],
            "total": 123.45 + i,
            "currency": "EUR",
            "note": "deliver to the back door",
        }
        event = Event(
            id=f"evt_{uuid.uuid4().hex}",
            type="order.created",
            occurred_at=iso_now(),
            data=orjson.dumps(data).decode(),
            source=SourceRef("events.bench", i % 8, i),
            tenant_id="acme",
        )
        endpoint = f"ep_{i % 50}"
        out.append(
            Delivery(
                delivery_id=delivery_id_for(event.id, endpoint),
                endpoint_id=endpoint,
                tenant_id="acme",
                event=event,
                created_at=iso_now(),
            )
        )
    return out


async def _broker_cpu_us(
    bootstrap: str, broker_pid: int, codec: str, records: list[tuple[bytes, bytes]]
) -> float:
    """Broker CPU per record to take ``records`` from a producer with ``codec`` and serve
    them twice (the delivery loop's and the status view's fetches)."""
    topic = f"bench.codec.{codec}.{uuid.uuid4().hex[:6]}"
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=2,
        max_batch_size=262_144,
        compression_type=None if codec == "none" else codec,
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"warm", partition=0)
        cpu0 = cpu_seconds(broker_pid)
        for _ in range(BROKER_ROUNDS):
            futures = [await producer.send(topic, v, key=k, partition=0) for k, v in records]
            await asyncio.gather(*futures)
        for _ in range(2):
            consumer = AIOKafkaConsumer(
                bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None
            )
            await consumer.start()
            try:
                tp = TopicPartition(topic, 0)
                consumer.assign([tp])
                await consumer.seek_to_beginning(tp)
                end = (await consumer.end_offsets([tp]))[tp]
                while await consumer.position(tp) < end:
                    await consumer.getmany(timeout_ms=500, max_records=5000)
            finally:
                await consumer.stop()
        return (cpu_seconds(broker_pid) - cpu0) / (BROKER_ROUNDS * len(records)) * 1e6
    finally:
        await producer.stop()


async def broker_rows(bootstrap: str, broker_pid: int) -> tuple[list[Row], dict[str, float]]:
    """Row 6h.broker: the broker's CPU per delivery record, per codec."""
    records = [(d.endpoint_id.encode(), d.encode()) for d in _deliveries(BATCH)]
    raw = {codec: await _broker_cpu_us(bootstrap, broker_pid, codec, records) for codec in CODECS}
    cells = ", ".join(f"{codec} {us:.0f}" for codec, us in raw.items())
    row = Row(
        "6h.broker",
        "broker CPU per delivery record, by codec",
        f"{raw['none']:.0f} / {raw['zstd']:.0f} us",
        "",
        f"none / zstd; {cells} us per record produced once and fetched twice "
        f"({BROKER_ROUNDS * BATCH:,} records each)",
    )
    return [row], raw


def compression_rows() -> tuple[list[Row], dict[str, dict[str, float]]]:
    records = [(d.endpoint_id.encode(), d.encode()) for d in _deliveries(BATCH)]
    plain = sum(len(k) + len(v) for k, v in records) / len(records)
    raw: dict[str, dict[str, float]] = {}
    rows = []
    for codec in CODECS:
        size = 0
        write_s = read_s = 0.0
        for _ in range(ROUNDS):
            t0 = time.process_time()
            builder = BatchBuilder(1 << 22, _CODE[codec])
            for key, value in records:
                builder.append(key=key, value=value, timestamp=None, headers=[])
            buf = builder._build()
            write_s += time.process_time() - t0
            size += len(buf)
            for _ in range(2):  # the delivery loop and the status view each read it
                t0 = time.process_time()
                batches = MemoryRecords(bytes(buf))
                while (batch := batches.next_batch()) is not None:
                    assert isinstance(batch, DefaultRecordBatch)
                    for _record in batch:
                        pass
                read_s += time.process_time() - t0
        n = ROUNDS * len(records)
        per = {
            "bytes": size / n,
            "write_us": write_s / n * 1e6,
            "read_us": read_s / n * 1e6,
        }
        raw[codec] = per
        rows.append(
            Row(
                f"6h.{codec}",
                f"delivery record, compression {codec}",
                f"{per['bytes']:,.0f} B, {per['write_us'] + per['read_us']:.1f} us",
                "",
                f"{per['bytes'] / plain:.0%} of {plain:,.0f} B uncompressed; CPU write "
                f"{per['write_us']:.1f} us + 2 reads {per['read_us']:.1f} us per record "
                f"(batches of {BATCH})",
            )
        )
    return rows, raw
