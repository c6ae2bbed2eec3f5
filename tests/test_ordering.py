"""Per-endpoint order and isolation: a slow endpoint never holds up the others."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

from aiohttp import web
from aiokafka.partitioner import murmur2

from .support import Kafka, Receiver, Worker, event, uid

PARTITIONS = 4  # the shared worker's WEBHOOK_STREAM_PARTITIONS


def partition_of(key: str) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS


async def test_per_key_order_under_load(worker: Worker, kafka: Kafka, receiver: Receiver) -> None:
    rng = random.Random(7)

    async def jittery(_req: object) -> int:
        await asyncio.sleep(rng.uniform(0, 0.004))
        return 200

    etype = uid("ord") + ".tick"
    paths = [f"/ep{i}" for i in range(5)]
    for path in paths:
        receiver.script[path] = jittery
        await worker.create_subscription(id=uid("ep"), url=receiver.url(path), event_types=[etype])
    keys = [f"key-{i}" for i in range(8)]
    n = 400
    for seq in range(n):
        key = keys[seq % len(keys)]
        await kafka.send(
            "events.ordering", event(etype, {"key": key, "seq": seq}, id=uid("e")), key=key
        )
    for path in paths:
        await receiver.wait_count(path, n, timeout=90)
    for path in paths:
        seen: dict[str, list[int]] = defaultdict(list)
        for r in receiver.at(path):
            seen[r.json["data"]["key"]].append(r.json["data"]["seq"])
        for key, seqs in seen.items():
            assert seqs == sorted(seqs), (path, key)
        assert sum(len(s) for s in seen.values()) == n


async def test_hanging_endpoint_does_not_delay_another_in_same_partition(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    release = asyncio.Event()

    async def hang(_req: object) -> web.Response:
        await release.wait()
        return web.Response(status=200)

    receiver.script["/slow"] = hang
    slow_id = uid("slow")
    fast_id = next(
        c for c in (uid("fast") for _ in range(1000)) if partition_of(c) == partition_of(slow_id)
    )
    etype = uid("iso") + ".x"
    await worker.create_subscription(
        id=slow_id, url=receiver.url("/slow"), event_types=[etype], timeout_s=20
    )
    await worker.create_subscription(id=fast_id, url=receiver.url("/fast"), event_types=[etype])
    try:
        for i in range(5):
            await kafka.send("events.isolation", event(etype, {"i": i}, id=uid("e")), key="one-key")
        fast = await receiver.wait_count("/fast", 5, timeout=10)
        assert [r.json["data"]["i"] for r in fast] == [0, 1, 2, 3, 4]
        # The slow endpoint has exactly one call in flight (max_in_flight 1) and it is hanging.
        assert len(receiver.at("/slow")) == 1
    finally:
        release.set()
    await receiver.wait_count("/slow", 5, timeout=30)
