"""No consumer of the worker stops on a batch it cannot decode (issue 28, the class).

A corrupt batch is written to the partition one endpoint's records go through on every
topic they pass: subscriptions, deliveries, the first retry topic, attempts. A delivery
that fails once and then succeeds still arrives, the status view still shows both
attempts, the skipped deliveries and retry batches are on ``webhooks.rejected``, and the
worker process never restarted. Its own broker: the session's topics stay readable for
the other tests' plain consumers.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from aiokafka.partitioner import DefaultPartitioner

from tests.batches import batch, produce_raw
from tests.support import TOKEN, Kafka, Received, Receiver, Worker, event, eventually, json_of, uid
from webhook_stream.broker import EmbeddedBroker


async def test_every_topic_on_the_delivery_path_skips_an_undecodable_batch(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    worker = Worker(own_broker.url, tmp_path / "worker").start()
    try:
        await worker.wait_ready()
        assert worker.proc is not None
        pid = worker.proc.pid
        producer = own_kafka.producer
        assert producer is not None
        ep = uid("ep")
        partition = DefaultPartitioner()(ep.encode(), [0, 1, 2, 3], [0, 1, 2, 3])
        topics = ["webhooks.subscriptions", "webhooks.deliveries", "webhooks.retry.1s"]
        for topic in [*topics, "webhooks.attempts"]:
            bad = batch([b"?"] * 3, codec=2, garbage=True)
            assert await produce_raw(producer, topic, partition, bad) == 0, topic

        def once_500(got: Received) -> int:
            return 500 if len(receiver.at("/cls")) == 1 else 200

        receiver.script["/cls"] = once_500
        etype = uid("cls") + ".created"
        await worker.create_subscription(id=ep, url=receiver.url("/cls"), event_types=[etype])
        await own_kafka.send("events.cls", event(etype, id="e-cls"))
        got = await receiver.wait_count("/cls", 2, timeout=60)
        assert [r.json["id"] for r in got] == ["e-cls", "e-cls"]

        async def two_attempts() -> list[object]:
            async with httpx.AsyncClient() as client:
                r = await client.get(
                    f"{worker.url}/subscriptions/{ep}/attempts",
                    headers={"Authorization": f"Bearer {TOKEN}"},
                )
            items = r.json()["items"] if r.status_code == 200 else []
            return items if len(items) >= 2 else []

        assert len(await eventually(two_attempts, timeout=30)) == 2

        def skipped(r: object) -> bool:
            return json_of(r)["reason"].startswith("undecodable")

        records = [json_of(r) for r in await own_kafka.wait_records("webhooks.rejected", skipped)]
        sources = {(r["source"]["topic"], r["source"]["partition"]) for r in records}
        # Tables and the status view log and skip (no producer there); the consumers that
        # commit write what they skipped to webhooks.rejected.
        assert {("webhooks.deliveries", partition), ("webhooks.retry.1s", partition)} <= sources
        assert worker.proc.poll() is None and worker.proc.pid == pid, worker.log_tail()
        log = worker.log_text()
        for topic in [*topics, "webhooks.attempts"]:
            assert f"skipping undecodable records {topic}[{partition}]" in log, topic
    finally:
        worker.stop()
