"""Taking over a dead owner's parked copies, without a kill: its leftovers are written as
records, so the takeover meets exactly the state a kill -9 leaves behind, every time.

The dead owner had committed ``webhooks.deliveries`` up to the first delivery it had not
finished (2), held that one and a few more in the endpoint's lane, and parked the rest
in ``webhooks.parked`` **in one producer batch**. Their sources are not committed, so
every copy is stale: the next owner reads the sources again and parks them anew, in order.
On a broker whose ``ListOffsets`` answers less than the true end of a batch-written
partition (Tansu: the last batch's base offset plus one), copies beyond that answer were
taken for live ones and delivered ahead of the deliveries before them.

On a broker of its own: the test writes consumer-group offsets.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2

from tests.support import Kafka, Receiver, Worker, eventually
from webhook_stream.broker import EmbeddedBroker
from webhook_stream.core import kafka as ws_kafka
from webhook_stream.core.records import Delivery, Event, SourceRef, iso_now
from webhook_stream.core.settings import Settings
from webhook_stream.core.topics import DELIVERIES, ENDPOINT_FLOW, PARKED
from webhook_stream.delivery.flow_state import SRC_HEADER

PARTITIONS = 4  # the workers' WEBHOOK_STREAM_PARTITIONS (tests.support default)
N = 10
COMMITTED = 2  # the dead owner delivered and committed 0 and 1
SUCCESSOR = "take-successor"
HEAD = 2  # a strict endpoint's head: failed once, waits for a retry when the owner died


def delivery(endpoint_id: str, seq: int) -> Delivery:
    ev = Event(
        id=f"e{seq}",
        type="take.x",
        occurred_at=iso_now(),
        data=orjson.dumps({"seq": seq}).decode(),
        source=SourceRef("events.take", 0, seq),
    )
    return Delivery(
        delivery_id=f"msg_{endpoint_id}_{seq}",
        endpoint_id=endpoint_id,
        tenant_id=None,
        event=ev,
        created_at=iso_now(),
    )


@pytest.mark.parametrize("strict", [False, True], ids=["best_effort", "strict"])
async def test_a_dead_owners_copies_parked_in_one_batch_are_all_stale(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path, strict: bool
) -> None:
    endpoint_id = "take-ep"
    partition = (murmur2(endpoint_id.encode()) & 0x7FFFFFFF) % PARTITIONS
    key = endpoint_id.encode()
    w = Worker(own_broker.url, tmp_path / "w").start()
    successor: Worker | None = None
    try:
        await w.wait_ready()
        await w.create_subscription(
            id=endpoint_id,
            url=receiver.url("/take"),
            event_types=["take.*"],
            ordering="strict" if strict else "best_effort",
        )
        assert await w.terminate(timeout=60) == 0

        # What the dead owner left: deliveries 0..N-1, committed up to COMMITTED ...
        for seq in range(N):
            sent = await own_kafka.send(
                DELIVERIES, delivery(endpoint_id, seq).encode(), key=endpoint_id
            )
            assert (sent.partition, sent.offset) == (partition, seq)
        # The successor's groups are new (another app id): an offset can be committed for a
        # group only while it has no members, and the broker remembers the stopped worker.
        settings = Settings.from_env(
            {"WEBHOOK_STREAM_BROKER": own_broker.url, "WEBHOOK_STREAM_APP_ID": SUCCESSOR}
        )
        group, d_tp = f"{SUCCESSOR}-deliver", TopicPartition(DELIVERIES, partition)
        await ws_kafka.commit_as(settings, group, {d_tp: COMMITTED})
        assert (await ws_kafka.committed(settings, group, DELIVERIES)) == {d_tp: COMMITTED}
        # ... its durable flow state (parking; a strict endpoint blocked by its head) ...
        head = f"msg_{endpoint_id}_{HEAD}" if strict else None
        state = {"endpoint_id": endpoint_id, "head": head, "since": iso_now() if strict else None}
        await own_kafka.send(
            ENDPOINT_FLOW,
            orjson.dumps({**state, "parking": True, "strict": strict}),
            key=endpoint_id,
        )
        # ... and the copies it parked, all in one batch: everything behind the head (strict)
        # or behind what its lane still held (best effort).
        first_parked = HEAD + 1 if strict else 5
        producer = AIOKafkaProducer(bootstrap_servers=own_broker.bootstrap, linger_ms=200)
        await producer.start()
        try:
            batch = producer.create_batch()
            for seq in range(first_parked, N):
                batch.append(
                    key=key,
                    value=delivery(endpoint_id, seq).encode(),
                    timestamp=None,
                    headers=[(SRC_HEADER, str(seq).encode())],
                )
            await (await producer.send_batch(batch, PARKED, partition=partition))
        finally:
            await producer.stop()
        # A strict head's retry would come back through a retry topic; here it is read again
        # from webhooks.deliveries (offset 2, not committed), as the head.

        successor = Worker(
            own_broker.url, tmp_path / "successor", env={"WEBHOOK_STREAM_APP_ID": SUCCESSOR}
        )
        await successor.start().wait_ready()
        await receiver.wait_count("/take", N - COMMITTED, timeout=60)
        seqs = [r.json["data"]["seq"] for r in receiver.at("/take")]
        assert seqs[: N - COMMITTED] == list(range(COMMITTED, N)), seqs
        # Nothing more comes: every stale copy was skipped (its source was parked anew).
        await eventually(lambda: _parked_committed(settings, own_kafka, partition), timeout=30)
        assert [r.json["data"]["seq"] for r in receiver.at("/take")] == seqs
        assert len(seqs) == N - COMMITTED, seqs
    finally:
        w.stop()
        if successor is not None:
            successor.stop()


async def _parked_committed(settings: Settings, kafka: Kafka, partition: int) -> bool:
    """The successor committed webhooks.parked past its last record: every copy was taken."""
    committed = await ws_kafka.committed(settings, f"{settings.app_id}-deliver", PARKED)
    last = max(r.offset for r in await kafka.read_all(PARKED) if r.partition == partition)
    return committed.get(TopicPartition(PARKED, partition), -1) > last
