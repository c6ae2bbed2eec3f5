"""Every record a producer can write is delivered or rejected, never fatal to the worker.

Events compressed by librdkafka (confluent-kafka) with each Kafka codec are delivered; a
batch nothing can decode goes to ``webhooks.rejected`` (``undecodable``) while the same
worker delivers the next event of that partition.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import Producer

from tests.batches import batch, produce_raw, stored_codecs
from tests.support import Kafka, Receiver, Worker, event, json_of, uid
from webhook_stream.broker import EmbeddedBroker
from webhook_stream.core.schemas import conforms

CODECS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def _produce_with_librdkafka(
    bootstrap: str, topic: str, codec: str, values: list[bytes]
) -> list[int]:
    """Send ``values`` to partition 0 in one compressed batch; their offsets."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 50}
    )
    offsets: list[int] = []
    errors: list[object] = []

    def delivered(err: object, msg: Any) -> None:
        if err:
            errors.append(err)
        else:
            offsets.append(msg.offset())

    for value in values:
        producer.produce(topic, value, key=b"same-key", partition=0, on_delivery=delivered)
    assert producer.flush(30) == 0
    assert errors == []
    return offsets


@pytest.mark.parametrize("codec", list(CODECS))
async def test_events_compressed_by_librdkafka_are_delivered(
    codec: str, broker: EmbeddedBroker, worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    etype = uid(codec) + ".created"
    path = f"/codec-{codec}"
    await worker.create_subscription(id=uid("ep"), url=receiver.url(path), event_types=[etype])
    ids = [uid("e") for _ in range(3)]
    values = [orjson.dumps(event(etype, {"n": i}, id=eid)) for i, eid in enumerate(ids)]
    offsets = await asyncio.to_thread(
        _produce_with_librdkafka, broker.bootstrap, "events.codecs", codec, values
    )
    assert kafka.producer is not None  # the broker keeps the producer's codec:
    assert await stored_codecs(kafka.producer, "events.codecs", 0, min(offsets), max(offsets)) == {
        CODECS[codec]
    }
    got = await receiver.wait_count(path, 3)
    assert [r.json["id"] for r in got] == ids


async def test_an_undecodable_batch_is_rejected_and_the_next_event_delivered(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    assert worker.proc is not None
    pid = worker.proc.pid
    producer = kafka.producer
    assert producer is not None
    etype = uid("undecodable") + ".created"
    await worker.create_subscription(id=uid("ep"), url=receiver.url("/undec"), event_types=[etype])
    topic = f"events.{uid('undec')}"
    before = await producer.send_and_wait(
        topic, orjson.dumps(event(etype, id="e-before")), partition=0
    )
    # Snappy-flagged garbage with a valid CRC: Tansu stores it, no decoder reads it.
    bad = batch([b"?"] * 5, codec=2, garbage=True)
    assert await produce_raw(producer, topic, 0, bad) == 0
    after = await producer.send_and_wait(
        topic, orjson.dumps(event(etype, id="e-after")), partition=0
    )
    got = await receiver.wait_count("/undec", 2, timeout=45)
    assert [r.json["id"] for r in got] == ["e-before", "e-after"]

    def ours(r: object) -> bool:
        return json_of(r)["source"]["topic"] == topic

    (record,) = [json_of(r) for r in await kafka.wait_records("webhooks.rejected", ours)]
    assert record["reason"].startswith("undecodable: DecompressionError"), record["reason"]
    assert record["source"] == {"topic": topic, "partition": 0, "offset": before.offset + 1}
    assert record["last_offset"] == after.offset - 1 == before.offset + 5
    assert base64.b64decode(record["value_b64"])[12:] == bad[12:]  # the batch as stored
    assert conforms("rejected", record)

    assert worker.proc.poll() is None and worker.proc.pid == pid, worker.log_tail()
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(worker.url + "/metrics")).text
    assert "webhook_undecodable_batches_total" in metrics
    count = next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("webhook_undecodable_batches_total")
    )
    assert count >= 1
    warnings = [
        line
        for line in worker.log_text().splitlines()
        if "skipping undecodable" in line and topic in line
    ]
    assert len(warnings) == 1, warnings
