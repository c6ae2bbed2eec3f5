"""Strict ordering (FIFO across retries) and per-endpoint budgets, on the real broker.

"In order" here is the strict promise itself: no attempt of event k reaches the receiver
before every event j < k has succeeded there (duplicates of succeeded ones are allowed).
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import orjson
from aiokafka.partitioner import murmur2

from tests.support import Kafka, Receiver, Worker, event, eventually, uid
from webhook_stream.broker import EmbeddedBroker

PARTITIONS = 4  # the workers' WEBHOOK_STREAM_PARTITIONS


def partition_of(key: str) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS


def same_partition(prefix: str, as_id: str) -> str:
    return next(
        c for c in (uid(prefix) for _ in range(1000)) if partition_of(c) == partition_of(as_id)
    )


class Scripted:
    """A receiver path that fails the head ``fail_times`` times and records every attempt."""

    def __init__(self, head: int, fail_times: int) -> None:
        self.head = head
        self.fail_times = fail_times
        self.attempts: list[tuple[int, int, float]] = []  # (seq, status, at)

    def __call__(self, req: object) -> int:
        seq = req.json["data"]["seq"]  # type: ignore[attr-defined]
        failed_before = sum(1 for s, st, _ in self.attempts if s == seq and st >= 300)
        status = 500 if seq == self.head and failed_before < self.fail_times else 200
        self.attempts.append((seq, status, time.time()))
        return status

    def succeeded(self) -> set[int]:
        return {s for s, st, _ in self.attempts if st < 300}

    def assert_strict(self, n: int) -> None:
        done: set[int] = set()
        for seq, status, _ in self.attempts:
            missing = [j for j in range(seq) if j not in done]
            assert not missing, f"attempt of {seq} before {missing[:5]} succeeded: {self.attempts}"
            if status < 300:
                done.add(seq)
        assert done == set(range(n)), sorted(set(range(n)) - done)


async def produce(kafka: Kafka, etype: str, n: int, key: str = "k") -> None:
    assert kafka.producer is not None
    sends = [
        await kafka.producer.send(
            "events.strict", orjson.dumps(event(etype, {"seq": i}, id=uid("e"))), key=key.encode()
        )
        for i in range(n)
    ]
    await asyncio.gather(*sends)


async def metric(worker: Worker, name: str) -> float:
    async with worker.api() as client:
        text = (await client.get("/metrics")).text
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found, f"{name} missing from /metrics"
    return float(found.group(1))


async def test_strict_head_fails_twice_others_wait_and_best_effort_flows(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    strict = Scripted(head=3, fail_times=2)
    receiver.script["/strict"] = strict
    strict_id = uid("strict")
    flowing_id = same_partition("be", strict_id)
    etype = uid("st") + ".x"
    await worker.create_subscription(
        id=strict_id,
        url=receiver.url("/strict"),
        event_types=[etype],
        ordering="strict",
        max_in_flight=5,
    )
    await worker.create_subscription(id=flowing_id, url=receiver.url("/be"), event_types=[etype])
    async with worker.api() as client:
        got = (await client.get(f"/subscriptions/{strict_id}")).json()
    assert got["ordering"] == "strict" and got["max_in_flight"] == 5

    await produce(kafka, etype, 20)
    # Blocked: the head failed, nothing behind it was attempted, and the best-effort
    # endpoint on the same partition has all 20 meanwhile.
    await eventually(lambda: sum(1 for s, _, _ in strict.attempts if s == 3) >= 1, timeout=20)
    await receiver.wait_count("/be", 20, timeout=20)
    assert 3 not in strict.succeeded()
    async with worker.api() as client:
        flow = (await client.get(f"/subscriptions/{strict_id}")).json()["flow"]
    if 3 not in strict.succeeded():
        assert flow["blocked_by"] is not None and flow["blocked_by"]["since"], flow
    assert await metric(worker, "webhook_blocked_endpoints") >= 0

    await eventually(lambda: strict.succeeded() == set(range(20)), timeout=40)
    strict.assert_strict(20)
    assert sum(1 for s, _, _ in strict.attempts if s == 3) == 3
    be = [r.json["data"]["seq"] for r in receiver.at("/be")]
    assert be == list(range(20))
    # The best-effort endpoint was done while the strict head still waited.
    head_ok = min(at for s, st, at in strict.attempts if s == 3 and st < 300)
    assert max(r.at for r in receiver.at("/be")) < head_ok
    async with worker.api() as client:
        flow = (await client.get(f"/subscriptions/{strict_id}")).json()["flow"]
    assert flow["blocked_by"] is None


async def test_a_dead_lettered_head_releases_the_rest(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    strict = Scripted(head=0, fail_times=99)
    receiver.script["/strict-dlq"] = strict
    etype = uid("dl") + ".x"
    sid = uid("strict")
    await worker.create_subscription(
        id=sid,
        url=receiver.url("/strict-dlq"),
        event_types=[etype],
        ordering="strict",
        max_attempts=2,
    )
    await produce(kafka, etype, 10)
    await eventually(lambda: strict.succeeded() == set(range(1, 10)), timeout=40)
    seqs = [s for s, _, _ in strict.attempts]
    assert seqs == [0, 0, *range(1, 10)], strict.attempts
    dead = await kafka.wait_records(
        "webhooks.deadletter", lambda r: r.key == sid.encode(), count=1, timeout=20
    )
    assert dead


async def test_strict_order_survives_kill_minus_9_while_the_head_waits(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    strict = Scripted(head=2, fail_times=2)
    receiver.script["/strict"] = strict
    env = {"WEBHOOK_STREAM_RETRY_SCHEDULE": "4s,4s"}
    a = Worker(own_broker.url, tmp_path / "a", env=env).start()
    b: Worker | None = None
    try:
        await a.wait_ready()
        await a.create_subscription(
            id="strict-ep", url=receiver.url("/strict"), event_types=["s.x"], ordering="strict"
        )
        await produce(own_kafka, "s.x", 20)
        await eventually(lambda: any(s == 2 for s, _, _ in strict.attempts), timeout=30)
        a.kill()  # the head waits in a retry topic; 3..19 wait behind it
        b = Worker(own_broker.url, tmp_path / "b", env=env).start()
        await b.wait_ready()
        try:
            await eventually(lambda: strict.succeeded() == set(range(20)), timeout=90)
        except AssertionError:
            dump = []
            for t in (
                "webhooks.deliveries",
                "webhooks.parked",
                "webhooks.endpoint_flow",
                "webhooks.retry.4s",
            ):
                for r in await own_kafka.read_all(t):
                    v = (r.value or b"")[:60]
                    dump.append(f"{t} p{r.partition}@{r.offset} {r.headers} {v!r}")
            print("\n".join(dump))
            raise AssertionError(f"attempts: {strict.attempts}") from None
        strict.assert_strict(20)
        assert "could not hand" not in b.log_text()
    finally:
        a.stop()
        if b is not None:
            b.stop()


async def test_a_hanging_endpoint_with_thousands_queued_does_not_delay_a_healthy_one(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    release = asyncio.Event()

    async def hang(_req: object) -> int:
        await release.wait()
        return 200

    receiver.script["/hang"] = hang
    # The real default MAX_PENDING_DELIVERIES (5000): not set here.
    w = Worker(own_broker.url, tmp_path / "w").start()
    try:
        await w.wait_ready()
        await w.create_subscription(
            id="hang", url=receiver.url("/hang"), event_types=["h.x"], timeout_s=60
        )
        healthy = next(
            c for c in (f"ok{i}" for i in range(1000)) if partition_of(c) == partition_of("hang")
        )
        await w.create_subscription(id=healthy, url=receiver.url("/ok"), event_types=["ok.x"])
        await produce(own_kafka, "h.x", 6000, key="one")
        # Its backlog is taken: one call hanging, its share held, the rest parked.
        await eventually(lambda: metric_at_least(w, "webhook_parked_deliveries", 4000), timeout=60)
        assert len(receiver.at("/hang")) == 1
        # Its share (500) in its lane plus what was read back from parking (1000 at most).
        assert await metric(w, "webhook_pending_deliveries") <= 500 + 1000
        delays = []
        for i in range(20):
            sent = time.time()
            await own_kafka.send("events.strict", event("ok.x", {"seq": i}, id=uid("e")))
            await receiver.wait_count("/ok", i + 1, timeout=10)
            delays.append(receiver.at("/ok")[i].at - sent)
        print(f"\nhealthy endpoint beside a hanging one: max {max(delays) * 1000:.0f} ms")
        assert max(delays) < 1.0, delays
    finally:
        release.set()
        w.stop()


async def metric_at_least(worker: Worker, name: str, value: float) -> bool:
    return await metric(worker, name) >= value
