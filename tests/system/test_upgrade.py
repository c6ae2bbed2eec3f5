"""Upgrading from 0.1, whose deliveries were read by Faust's consumer group ``<app_id>``.

On a broker of its own: the test writes consumer-group offsets.
"""

from __future__ import annotations

from pathlib import Path

from aiokafka import TopicPartition

from tests.support import Kafka, Receiver, Worker, event, eventually
from webhook_stream.broker import EmbeddedBroker
from webhook_stream.core import kafka as ws_kafka
from webhook_stream.core.records import Delivery, Event, SourceRef, iso_now
from webhook_stream.core.settings import Settings
from webhook_stream.core.topics import DELIVERIES, ensure_topics


def old_delivery(i: int) -> Delivery:
    ev = Event(
        id=f"old{i}",
        type="up.old",
        occurred_at=iso_now(),
        data="{}",
        source=SourceRef("events.up", 0, i),
    )
    return Delivery(
        delivery_id=f"msg_old{i}", endpoint_id="ep", tenant_id=None, event=ev, created_at=iso_now()
    )


async def test_the_delivery_group_starts_where_the_old_faust_group_stopped(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    settings = Settings.from_env({"WEBHOOK_STREAM_BROKER": own_broker.url})
    await ensure_topics(settings)
    last = None
    for i in range(3):  # handled by a 0.1 worker, which committed past them
        last = await own_kafka.send(DELIVERIES, old_delivery(i).encode(), key="ep")
    assert last is not None
    tp = TopicPartition(DELIVERIES, last.partition)
    await ws_kafka.commit_as(settings, settings.app_id, {tp: last.offset + 1})

    w = Worker(own_broker.url, tmp_path / "w").start()
    try:
        await w.wait_ready()
        await w.create_subscription(id="ep", url=receiver.url("/up"), event_types=["up.*"])
        await own_kafka.send("events.up", event("up.new", id="new1"))
        (got,) = await receiver.wait_count("/up", 1, timeout=30)
        assert got.json["type"] == "up.new"
        # The old records sit before the new one in the endpoint's partition: had they been
        # read, they would have been attempted (or dead-lettered) first.
        assert len(receiver.at("/up")) == 1
        assert await own_kafka.read_all("webhooks.deadletter") == []
        await eventually(lambda: "upgrade from 0.1" in w.log_text(), timeout=5)
    finally:
        w.stop()
