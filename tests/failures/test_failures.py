"""Failure handling: classification, retry timing, Retry-After, dead-letter, attempt log."""

from __future__ import annotations

import asyncio
import itertools
import time

import orjson
import pytest
from aiohttp import web

from tests.support import Kafka, Receiver, Worker, event, eventually, json_of, retry_record, uid
from webhook_stream.broker import free_port
from webhook_stream.core.schemas import conforms, validation_errors


def first_then(status: int, then: int = 200):
    """A script answering ``status`` on the first call and ``then`` afterwards."""
    calls = {"n": 0}

    def answer(_req: object) -> int:
        calls["n"] += 1
        return status if calls["n"] == 1 else then

    return answer


async def attempts_for(
    kafka: Kafka, endpoint_id: str, count: int, timeout: float = 30
) -> list[dict]:
    recs = await kafka.wait_records(
        "webhooks.attempts", lambda r: json_of(r)["endpoint_id"] == endpoint_id, count, timeout
    )
    return sorted((json_of(r) for r in recs), key=lambda a: a["attempt"])


async def deadletter_for(kafka: Kafka, endpoint_id: str, timeout: float = 30) -> dict:
    (rec,) = await kafka.wait_records(
        "webhooks.deadletter", lambda r: json_of(r)["endpoint_id"] == endpoint_id, 1, timeout
    )
    return json_of(rec)


RETRYABLE = [408, 429, 500, 502, 503, 504]
FATAL = [301, 302, 400, 401, 404, 410, 422]


@pytest.mark.parametrize("status", RETRYABLE)
async def test_retryable_status_is_retried_then_succeeds(
    worker: Worker, kafka: Kafka, receiver: Receiver, status: int
) -> None:
    ep = uid("ep")
    receiver.script["/r"] = first_then(status)
    etype = uid("retry") + ".x"
    await worker.create_subscription(id=ep, url=receiver.url("/r"), event_types=[etype])
    await kafka.send("events.failures", event(etype, id=uid("e")))
    calls = await receiver.wait_count("/r", 2, timeout=20)
    assert calls[0].headers["webhook-id"] == calls[1].headers["webhook-id"]
    attempts = await attempts_for(kafka, ep, 2)
    assert [(a["attempt"], a["status_code"], a["outcome"]) for a in attempts] == [
        (1, status, "retrying"),
        (2, 200, "succeeded"),
    ]


@pytest.mark.parametrize("status", FATAL)
async def test_fatal_status_goes_straight_to_deadletter(
    worker: Worker, kafka: Kafka, receiver: Receiver, status: int
) -> None:
    ep = uid("ep")

    async def answer(_req: object) -> web.Response:
        return web.Response(status=status, headers={"Location": "http://127.0.0.1:1/elsewhere"})

    receiver.script["/f"] = answer
    etype = uid("fatal") + ".x"
    await worker.create_subscription(id=ep, url=receiver.url("/f"), event_types=[etype])
    await kafka.send("events.failures", event(etype, id=uid("e")))
    dl = await deadletter_for(kafka, ep)
    assert dl["reason"] == "fatal_status"
    assert dl["last_status_code"] == status
    assert dl["attempts"] == 1
    assert len(receiver.at("/f")) == 1  # never retried, redirect never followed
    assert receiver.at("/elsewhere") == []


async def test_extra_retry_status_codes_per_endpoint(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    ep = uid("ep")
    receiver.script["/c"] = first_then(409)
    etype = uid("extra") + ".x"
    await worker.create_subscription(
        id=ep, url=receiver.url("/c"), event_types=[etype], retry_status_codes=[409]
    )
    await kafka.send("events.failures", event(etype, id=uid("e")))
    await receiver.wait_count("/c", 2, timeout=20)


async def test_connection_refused_retries_then_exhausts(worker: Worker, kafka: Kafka) -> None:
    ep = uid("ep")
    etype = uid("refused") + ".x"
    await worker.create_subscription(
        id=ep, url=f"http://127.0.0.1:{free_port()}/x", event_types=[etype]
    )
    await kafka.send("events.failures", event(etype, id=uid("e")))
    dl = await deadletter_for(kafka, ep, timeout=30)
    assert dl["reason"] == "exhausted" and dl["attempts"] == 3
    assert dl["last_status_code"] is None and dl["last_error"] == "connect"
    attempts = await attempts_for(kafka, ep, 3)
    assert [a["error"] for a in attempts] == ["connect"] * 3
    assert [a["outcome"] for a in attempts] == ["retrying", "retrying", "failed"]


async def test_schedule_timing_and_deadletter_record(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    """Schedule 1s,2s: attempts no earlier than due and not much later; then dead-letter."""
    ep = uid("ep")
    receiver.script["/down"] = 503
    etype = uid("sched") + ".x"
    sub = await worker.create_subscription(
        id=ep, url=receiver.url("/down"), event_types=[etype], tenant_id="acme"
    )
    eid = uid("e")
    md = await kafka.send("events.failures", event(etype, {"k": "v"}, id=eid, tenant_id="acme"))
    calls = await receiver.wait_count("/down", 3, timeout=20)
    gaps = [b.at - a.at for a, b in itertools.pairwise(calls)]
    print(f"\nschedule 1s,2s: measured gaps between attempts {[round(g, 3) for g in gaps]}")
    assert 1.0 <= gaps[0] < 1.0 * 1.1 + 1.5, gaps
    assert 2.0 <= gaps[1] < 2.0 * 1.1 + 1.5, gaps
    assert len({c.headers["webhook-id"] for c in calls}) == 1

    dl = await deadletter_for(kafka, ep)
    assert dl["reason"] == "exhausted"
    assert dl["attempts"] == 3 and dl["last_status_code"] == 503
    assert dl["delivery_id"] == calls[0].headers["webhook-id"]
    assert dl["tenant_id"] == "acme"
    assert dl["event"]["id"] == eid and dl["event"]["type"] == etype
    assert orjson.loads(dl["event"]["data"]) == {"k": "v"}
    assert dl["event"]["source"] == {
        "topic": "events.failures",
        "partition": md.partition,
        "offset": md.offset,
    }
    assert dl["first_attempt_at"] < dl["last_attempt_at"]
    assert validation_errors("deadletter", dl) == []

    attempts = await attempts_for(kafka, ep, 3)
    for a in attempts:
        assert conforms("attempt", a), validation_errors("attempt", a)
        assert a["delivery_id"] == dl["delivery_id"] and a["event_id"] == eid
        assert a["response_body"] == "nope" and a["duration_ms"] >= 0

    # No secret in any record the worker wrote, in any form.
    import base64

    key = base64.b64decode(sub["secret"].removeprefix("whsec_"))
    for topic in (
        "webhooks.deliveries",
        "webhooks.retry.1s",
        "webhooks.retry.2s",
        "webhooks.deadletter",
        "webhooks.attempts",
        "webhooks.rejected",
    ):
        for rec in await kafka.read_all(topic):
            raw = (rec.key or b"") + (rec.value or b"")
            assert sub["secret"].encode() not in raw and key not in raw, topic
            assert base64.b64encode(key) not in raw, topic
    for rec in await kafka.read_all("webhooks.deliveries"):
        if json_of(rec)["endpoint_id"] == ep:
            assert conforms("delivery", json_of(rec)), validation_errors("delivery", json_of(rec))


async def test_retry_after_is_honoured(worker: Worker, kafka: Kafka, receiver: Receiver) -> None:
    calls = {"n": 0}

    def answer(_req: object) -> web.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return web.Response(status=429, headers={"Retry-After": "3"})
        return web.Response(status=200)

    receiver.script["/ra"] = answer
    etype = uid("ra") + ".x"
    await worker.create_subscription(id=uid("ep"), url=receiver.url("/ra"), event_types=[etype])
    await kafka.send("events.failures", event(etype, id=uid("e")))
    first, second = await receiver.wait_count("/ra", 2, timeout=20)
    assert 3.0 <= second.at - first.at < 3.0 + 2.0


async def test_timeout_retries_while_other_endpoint_in_partition_completes(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    release = asyncio.Event()
    calls = {"n": 0}

    async def slow_once(_req: object) -> web.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            await asyncio.wait_for(release.wait(), 10)
        return web.Response(status=200)

    receiver.script["/slow"] = slow_once
    etype = uid("to") + ".x"
    slow, fast = uid("slow"), uid("fast")
    await worker.create_subscription(
        id=slow, url=receiver.url("/slow"), event_types=[etype], timeout_s=1
    )
    await worker.create_subscription(id=fast, url=receiver.url("/fast"), event_types=[etype])
    for i in range(3):
        await kafka.send("events.failures", event(etype, {"i": i}, id=uid("e")), key="same")
    fast = await receiver.wait_count("/fast", 3, timeout=10)
    hanging = receiver.at("/slow")[0]
    # All of the other endpoint's deliveries landed before the hanging call even timed out.
    assert fast[-1].at < hanging.at + 1.0, fast[-1].at - hanging.at
    attempts = await attempts_for(kafka, slow, 1)
    assert attempts[0]["error"] == "timeout" and attempts[0]["outcome"] == "retrying"
    release.set()
    await receiver.wait_count("/slow", 4, timeout=20)  # 3 events, one of them retried


async def test_max_attempts_per_endpoint(worker: Worker, kafka: Kafka, receiver: Receiver) -> None:
    ep = uid("ep")
    receiver.script["/m"] = 500
    etype = uid("max") + ".x"
    await worker.create_subscription(
        id=ep, url=receiver.url("/m"), event_types=[etype], max_attempts=2
    )
    await kafka.send("events.failures", event(etype, id=uid("e")))
    dl = await deadletter_for(kafka, ep)
    assert dl["attempts"] == 2 and dl["reason"] == "exhausted"


async def test_endpoint_deleted_while_in_retry_is_deadlettered(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    ep = uid("ep")
    receiver.script["/gone"] = 503
    etype = uid("gone") + ".x"
    await worker.create_subscription(
        id=ep, url=receiver.url("/gone"), event_types=[etype], retry_schedule=["3s"]
    )
    await kafka.send("events.failures", event(etype, id=uid("e")))
    await receiver.wait_count("/gone", 1)
    async with worker.api() as client:
        assert (await client.delete(f"/subscriptions/{ep}")).status_code == 200
    dl = await deadletter_for(kafka, ep, timeout=20)
    assert dl["reason"] == "endpoint_missing"
    assert len(receiver.at("/gone")) == 1


async def test_main_path_latency_during_retry_burst(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    """20,000 deliveries waiting in a retry topic must not slow the main path down.

    The trap this guards against: a retry agent sleeping inside the main Faust consumer
    stalled every agent for up to the delay (notes: faust-on-tansu section 5).
    """
    burst_ep = uid("burst")
    await worker.create_subscription(
        id=burst_ep, url=receiver.url("/burst"), event_types=[uid("never")], max_in_flight=20
    )
    etype = uid("lat") + ".x"
    await worker.create_subscription(id=uid("ep"), url=receiver.url("/main"), event_types=[etype])
    # Warm the events topic (first use of a topic costs a group re-join).
    await kafka.send("events.latency", event(etype, id=uid("e")))
    await receiver.wait_count("/main", 1)

    due = int((time.time() + 15) * 1000)
    assert kafka.producer is not None
    sends = []
    for i in range(20000):
        rec = retry_record(burst_ep, i, due, type_="burst.x")
        sends.append(
            await kafka.producer.send("webhooks.retry.1s", orjson.dumps(rec), key=burst_ep.encode())
        )
    await asyncio.gather(*sends)

    latencies = []
    for i in range(40):
        t = time.time()
        await kafka.send("events.latency", event(etype, id=uid("e")))
        await receiver.wait_count("/main", i + 2, timeout=20)
        latencies.append(receiver.at("/main")[-1].at - t)
        await asyncio.sleep(0.1)  # pace: spread the samples over the burst's life
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"main-path latency during retry burst: p50={latencies[len(latencies) // 2] * 1000:.0f}ms "
        f"p99={p99 * 1000:.0f}ms max={latencies[-1] * 1000:.0f}ms"
    )
    assert p99 < 0.5, latencies
    assert time.time() * 1000 < due  # all samples were taken while the burst was waiting
    assert receiver.at("/burst") == []  # nothing early
    await eventually(lambda: len(receiver.at("/burst")) >= 20000, timeout=120)
    assert min(r.at for r in receiver.at("/burst")) * 1000 >= due


async def test_thirty_second_outage_with_1000_queued_deliveries(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    """Every delivery queued during a 30 s receiver outage arrives after it; none is lost."""
    down_until = time.time() + 30

    def outage(_req: object) -> int:
        return 503 if time.time() < down_until else 200

    receiver.script["/outage"] = outage
    ep = uid("ep")
    etype = uid("outage") + ".x"
    await worker.create_subscription(
        id=ep,
        url=receiver.url("/outage"),
        event_types=[etype],
        retry_schedule=["5s", "10s", "20s", "30s"],
        max_in_flight=10,
    )
    assert kafka.producer is not None
    sends = [
        await kafka.producer.send(
            "events.outage",
            orjson.dumps(event(etype, {"i": i}, id=f"{ep}-{i}")),
            key=str(i % 10).encode(),
        )
        for i in range(1000)
    ]
    await asyncio.gather(*sends)

    def delivered() -> set[int]:
        return {r.json["data"]["i"] for r in receiver.at("/outage") if r.at >= down_until}

    await eventually(lambda: len(delivered()) == 1000, timeout=120, interval=0.5)
    took = max(r.at for r in receiver.at("/outage")) - down_until
    failed = sum(1 for r in receiver.at("/outage") if r.at < down_until)
    print(
        f"\n30 s outage: 1000 deliveries, {failed} failed attempts during the outage, "
        f"all delivered {took:.1f}s after recovery, 0 lost"
    )
    dead = [
        r for r in await kafka.read_all("webhooks.deadletter") if json_of(r)["endpoint_id"] == ep
    ]
    assert dead == []
