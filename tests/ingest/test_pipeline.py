"""The core pipeline end to end: events.* -> fan-out -> signed, ordered deliveries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from tests.support import Kafka, Receiver, Worker, event, uid


def independent_verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Standard Webhooks check written from the spec, not from webhook_stream.delivery.signing."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    lower = {k.lower(): v for k, v in headers.items()}
    content = f"{lower['webhook-id']}.{lower['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    return any(sig == f"v1,{expected}" for sig in lower["webhook-signature"].split(" "))


async def test_event_reaches_matching_endpoint_signed(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    etype = uid("order") + ".created"
    sub = await worker.create_subscription(
        url=receiver.url("/a"), event_types=[etype.split(".")[0] + ".*"], headers={"X-Team": "a"}
    )
    await kafka.send("events.orders", event(etype, {"n": 1}, id="evt_1_" + etype), key="k")
    (got,) = await receiver.wait_count("/a", 1)
    assert got.json == {
        "id": "evt_1_" + etype,
        "type": etype,
        "timestamp": got.json["timestamp"],
        "data": {"n": 1},
    }
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"].startswith("webhook-stream/")
    assert got.headers["X-Team"] == "a"
    assert got.headers["webhook-id"].startswith("msg_")
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 60
    assert independent_verify(sub["secret"], got.headers, got.body)


async def test_routing_by_pattern_and_tenant_fails_closed(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    family = uid("rt")
    tenant = uid("tenant")
    await worker.create_subscription(
        id=uid("ep"),
        url=receiver.url("/exact"),
        event_types=[f"{family}.created"],
        tenant_id=tenant,
    )
    await worker.create_subscription(
        id=uid("ep"), url=receiver.url("/glob"), event_types=[f"{family}.*"], tenant_id=tenant
    )
    await worker.create_subscription(
        id=uid("ep"), url=receiver.url("/other-tenant"), event_types=["*"], tenant_id=uid("tenant")
    )
    await worker.create_subscription(
        id=uid("ep"), url=receiver.url("/no-tenant"), event_types=[f"{family}.*"]
    )
    await kafka.send("events.routing", event(f"{family}.created", id=uid("e"), tenant_id=tenant))
    await kafka.send("events.routing", event(f"{family}.deleted", id=uid("e"), tenant_id=tenant))
    await kafka.send("events.routing", event(f"{family}.created", id=uid("e")))  # no tenant
    await kafka.send("events.routing", event(f"{family}x.created", id=uid("e"), tenant_id=tenant))
    await receiver.wait_count("/glob", 2)
    await receiver.wait_count("/exact", 1)
    await receiver.wait_count("/no-tenant", 1)
    # A marker event for the glob endpoint proves everything before it was processed.
    await kafka.send("events.routing", event(f"{family}.marker", id=uid("e"), tenant_id=tenant))
    await receiver.wait_count("/glob", 3)
    assert [r.json["type"] for r in receiver.at("/exact")] == [f"{family}.created"]
    assert sorted(r.json["type"] for r in receiver.at("/glob")) == sorted(
        [f"{family}.created", f"{family}.deleted", f"{family}.marker"]
    )
    assert [r.json["type"] for r in receiver.at("/no-tenant")] == [f"{family}.created"]
    assert receiver.at("/other-tenant") == []


async def test_webhook_id_is_deterministic_per_event_and_endpoint(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    etype = uid("det") + ".x"
    await worker.create_subscription(id=uid("ep"), url=receiver.url("/a"), event_types=[etype])
    await worker.create_subscription(id=uid("ep"), url=receiver.url("/b"), event_types=[etype])
    eid = uid("evt")
    await kafka.send("events.det", event(etype, id=eid))
    await kafka.send("events.det", event(etype, id=eid))  # the same event again
    a = await receiver.wait_count("/a", 2)
    b = await receiver.wait_count("/b", 2)
    assert a[0].headers["webhook-id"] == a[1].headers["webhook-id"]
    assert a[0].headers["webhook-id"] != b[0].headers["webhook-id"]


async def test_topic_created_after_start_is_picked_up_within_15s(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    etype = uid("late") + ".x"
    await worker.create_subscription(id=uid("ep"), url=receiver.url("/late"), event_types=[etype])
    topic = "events." + uid("brandnew")
    started = time.time()
    await kafka.send(topic, event(etype, id=uid("e")))  # creates the topic
    (got,) = await receiver.wait_count("/late", 1, timeout=20)
    assert got.at - started < 15, got.at - started
