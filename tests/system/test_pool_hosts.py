"""More receiver hosts than the HTTP pool has connections: every delivery still arrives."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from tests.support import Kafka, Receiver, Worker, event, eventually, uid
from webhook_stream.broker import EmbeddedBroker

HOSTS = 24
EVENTS = 60
PACE_S = 0.75
BOUND_S = 10.0
ANSWER_S = 0.05  # each receiver takes 50 ms: the 4 connections are busy most of the time


async def test_24_receiver_hosts_over_a_pool_of_4_get_every_delivery(
    own_broker: EmbeddedBroker, own_kafka: Kafka, tmp_path: Path
) -> None:
    """24 receivers on distinct loopback addresses, ``HTTP_POOL_SIZE=4``: each of the 240
    deliveries arrives within 10 s of its event, and the worker logs no pool error."""
    receivers = [await Receiver(host=f"127.0.0.{i}").start() for i in range(2, 2 + HOSTS)]
    w = Worker(own_broker.url, tmp_path / "w", env={"WEBHOOK_STREAM_HTTP_POOL_SIZE": "4"})
    w.start()
    try:
        await w.wait_ready()
        for r in receivers:
            r.script["/pool"] = _slow
            await w.create_subscription(url=r.url("/pool"), event_types=["pool.many"])
        async with w.api() as client:
            await eventually(lambda: _count(client, HOSTS))  # every worker's table has them all
        run = uid("e")
        # Warm-up (first use of a topic costs a group re-join): one event to every host.
        await own_kafka.send("events.pool", event("pool.many", {"n": -1}, id=f"{run}-w"))
        await eventually(lambda: all(r.at("/pool") for r in receivers), timeout=60)
        for r in receivers:
            r.requests.clear()
        # Events paced over 40 s, the pool saturated in bursts, past its 30 s idle sweep
        # (where the bug was): each must reach all 24 hosts within BOUND_S of its produce.
        produced: dict[int, float] = {}
        for n in range(EVENTS):
            tick = time.monotonic()
            produced[n] = time.time()
            await own_kafka.send("events.pool", event("pool.many", {"n": n}, id=f"{run}-{n}"))
            await asyncio.sleep(max(0.0, PACE_S - (time.monotonic() - tick)))  # pacing only

        def delivered() -> int:
            return sum(len(r.at("/pool")) for r in receivers)

        await eventually(lambda: delivered() >= HOSTS * EVENTS, timeout=BOUND_S)
        late = {}
        for r in receivers:
            for got in r.at("/pool"):
                n = got.json["data"]["n"]
                late[n] = max(late.get(n, 0.0), got.at - produced[n])
        assert max(late.values()) < BOUND_S, sorted(late.items(), key=lambda kv: -kv[1])[:5]
        assert all(len(r.at("/pool")) == EVENTS for r in receivers), [
            len(r.at("/pool")) for r in receivers
        ]
        assert "Traceback" not in w.log_text() and "KeyError" not in w.log_text()
    finally:
        w.stop()
        for r in receivers:
            with contextlib.suppress(Exception):
                await r.stop()


async def _slow(_: object) -> int:
    await asyncio.sleep(ANSWER_S)  # a receiver that takes its time, not synchronisation
    return 200


async def _count(client, n: int) -> bool:
    page = (await client.get("/subscriptions", params={"limit": 500})).json()
    return len(page["items"]) >= n
