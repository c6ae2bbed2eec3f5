"""Per-endpoint order and isolation: a slow endpoint never holds up the others."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

from aiohttp import web
from aiokafka.partitioner import murmur2

from tests.support import Kafka, Receiver, Worker, event, eventually, uid
from webhook_stream.broker import free_port

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


async def test_hundreds_of_endpoints_are_delivered_in_parallel(
    worker: Worker, kafka: Kafka
) -> None:
    """200 slow endpoints on 10 loopback hosts: calls overlap instead of queueing."""
    hosts = [f"127.0.0.{i}" for i in range(1, 11)]
    port = free_port()
    state = {"now": 0, "peak": 0}

    async def slow(_req: object) -> int:
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        await asyncio.sleep(0.5)
        state["now"] -= 1
        return 200

    receivers = [await Receiver(host=h, port=port).start() for h in hosts]
    try:
        etype = uid("par") + ".x"
        for i in range(200):
            r = receivers[i % len(hosts)]
            r.script[f"/p{i}"] = slow
            await worker.create_subscription(id=uid("ep"), url=r.url(f"/p{i}"), event_types=[etype])
        await kafka.send("events.parallel", event(etype, id=uid("e")))

        def total() -> int:
            return sum(len(r.requests) for r in receivers)

        started = asyncio.get_running_loop().time()
        await eventually(lambda: total() >= 200, timeout=60)
        took = asyncio.get_running_loop().time() - started
        print(f"\n200 endpoints x 0.5 s: done in {took:.1f}s, peak {state['peak']} calls in flight")
        assert state["peak"] >= 100, state  # serial would be 1, and 100 s
    finally:
        for r in receivers:
            await r.stop()
