"""Retry records due at different times in one partition: commits move, nothing repeats."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.support import Kafka, Receiver, Worker, eventually, json_of, retry_record, uid
from webhook_stream.broker import EmbeddedBroker


async def _committed(kafka: Kafka, tp: TopicPartition) -> int:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap, group_id="webhook-stream-retry", enable_auto_commit=False
    )
    await consumer.start()
    try:
        return await consumer.committed(tp) or -1
    finally:
        await consumer.stop()


async def test_far_future_retry_ahead_of_due_ones_does_not_hold_the_partition(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    """A record due in an hour, then three due now, in one partition of ``retry.1s``: the
    three arrive on time, the committed offset moves past them (the far one is moved, with
    its exact due time, to the longest retry topic), and a restarted worker forwards none
    of them again."""
    ep = uid("ep")
    w = Worker(own_broker.url, tmp_path / "w1").start()
    await w.wait_ready()
    await w.create_subscription(id=ep, url=receiver.url("/order"), event_types=["never.x"])
    assert own_kafka.producer is not None
    far_due = int((time.time() + 3600) * 1000)
    sent = [
        await own_kafka.producer.send_and_wait(
            "webhooks.retry.1s", orjson.dumps(retry_record(ep, 0, far_due)), key=ep.encode()
        )
    ]
    due = int((time.time() + 1) * 1000)
    for n in (1, 2, 3):
        sent.append(
            await own_kafka.producer.send_and_wait(
                "webhooks.retry.1s", orjson.dumps(retry_record(ep, n, due)), key=ep.encode()
            )
        )
    assert len({m.partition for m in sent}) == 1
    tp = TopicPartition("webhooks.retry.1s", sent[0].partition)
    try:
        got = await receiver.wait_count("/order", 3, timeout=15)
        assert sorted(r.json["data"]["n"] for r in got) == [1, 2, 3]
        assert max(r.at for r in got) * 1000 < due + 10_000  # on time, not after the far one
        # the prefix is committed past the due ones (and past the far one, moved away)
        await eventually(lambda: _past(own_kafka, tp, sent[-1].offset), timeout=15)
        moved = await own_kafka.wait_records(
            "webhooks.retry.2s", lambda r: json_of(r)["delivery_id"] == f"msg_{ep}_0"
        )
        assert json_of(moved[0])["due_at_ms"] == far_due  # exact due time kept
        assert (await w.terminate()) == 0
        w = Worker(own_broker.url, tmp_path / "w2").start()
        await w.wait_ready()
        # a due record behind them after the restart: once it is delivered, the restarted
        # worker has read this partition, and it has not forwarded 1-3 again
        await own_kafka.producer.send_and_wait(
            "webhooks.retry.1s",
            orjson.dumps(retry_record(ep, 4, int(time.time() * 1000))),
            key=ep.encode(),
        )
        got = await receiver.wait_count("/order", 4, timeout=30)
        assert sorted(r.json["data"]["n"] for r in got) == [1, 2, 3, 4]
        assert all(r.json["data"]["n"] != 0 for r in receiver.at("/order"))  # not early
    finally:
        w.stop()


async def _past(kafka: Kafka, tp: TopicPartition, offset: int) -> bool:
    return await _committed(kafka, tp) > offset


def test_moved_records_go_to_the_shortest_topic_long_enough_or_hop_the_longest() -> None:
    from webhook_stream.failures.retry import move_target

    delays = (5.0, 30.0, 120.0, 43200.0)
    assert move_target(90, delays) == 120.0
    assert move_target(30, delays) == 30.0
    assert move_target(7 * 86400, delays) == 43200.0
