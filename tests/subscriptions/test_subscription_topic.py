"""Subscriptions produced straight to webhooks.subscriptions: add, update, delete, restart."""

from __future__ import annotations

from tests.support import Kafka, Receiver, Worker, event, eventually, uid
from webhook_stream.subscriptions.model import generate_secret


async def registry_has(worker: Worker, endpoint_id: str, **expect: object) -> bool:
    async with worker.api() as client:
        r = await client.get(f"/subscriptions/{endpoint_id}")
    if r.status_code != 200:
        return False
    return all(r.json().get(k) == v for k, v in expect.items())


async def registry_lacks(worker: Worker, endpoint_id: str) -> bool:
    async with worker.api() as client:
        r = await client.get(f"/subscriptions/{endpoint_id}")
    return r.status_code == 404


async def test_add_update_delete_through_the_topic(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    ep = uid("ep")
    etype = uid("topic") + ".x"
    sub = {
        "id": ep,
        "url": receiver.url("/v1"),
        "event_types": [etype],
        "secret": generate_secret(),
    }
    await kafka.send("webhooks.subscriptions", sub, key=ep)
    await eventually(lambda: registry_has(worker, ep))
    await kafka.send("events.subtopic", event(etype, {"n": 1}, id=uid("e")))
    await receiver.wait_count("/v1", 1)

    await kafka.send("webhooks.subscriptions", {**sub, "url": receiver.url("/v2")}, key=ep)
    await eventually(lambda: registry_has(worker, ep, url=receiver.url("/v2")))
    await kafka.send("events.subtopic", event(etype, {"n": 2}, id=uid("e")))
    (got,) = await receiver.wait_count("/v2", 1)
    assert got.json["data"] == {"n": 2}

    await kafka.send("webhooks.subscriptions", None, key=ep)
    await eventually(lambda: registry_lacks(worker, ep))
    # A marker endpoint shows later events were processed while the deleted one got none.
    marker = uid("ep")
    await worker.create_subscription(id=marker, url=receiver.url("/marker"), event_types=[etype])
    await kafka.send("events.subtopic", event(etype, {"n": 3}, id=uid("e")))
    await receiver.wait_count("/marker", 1)
    assert len(receiver.at("/v1")) == 1 and len(receiver.at("/v2")) == 1


async def test_invalid_subscription_on_topic_is_refused_without_leaking_secret(
    worker: Worker, kafka: Kafka
) -> None:
    ep = uid("ep")
    secret = generate_secret()
    await kafka.send(
        "webhooks.subscriptions",
        {"id": ep, "url": "ftp://nope", "event_types": ["a"], "secret": secret},
        key=ep,
    )

    def ours(r: object) -> bool:
        import base64

        import orjson

        rec = orjson.loads(r.value)  # type: ignore[attr-defined]
        return (
            rec["source"]["topic"] == "webhooks.subscriptions"
            and rec.get("key_b64") == base64.b64encode(ep.encode()).decode()
        )

    (rec,) = await kafka.wait_records("webhooks.rejected", ours)
    assert b"url" in rec.value
    assert secret.encode() not in rec.value
    assert secret not in worker.log_text()
    assert await registry_lacks(worker, ep)


async def test_worker_started_later_recovers_every_subscription(
    broker, kafka: Kafka, tmp_path
) -> None:
    """A fresh worker (and a restarted one) loads the whole table, updates and deletes included."""
    ids = [uid("rec") for _ in range(30)]
    for i, ep in enumerate(ids):
        await kafka.send(
            "webhooks.subscriptions",
            {
                "id": ep,
                "url": f"http://127.0.0.1:9/{i}",
                "event_types": ["rec.*"],
                "secret": generate_secret(),
            },
            key=ep,
        )
    for ep in ids[:5]:
        await kafka.send("webhooks.subscriptions", None, key=ep)
    for ep in ids[5:10]:
        await kafka.send(
            "webhooks.subscriptions",
            {
                "id": ep,
                "url": "http://127.0.0.1:9/updated",
                "event_types": ["rec.*"],
                "secret": generate_secret(),
            },
            key=ep,
        )
    # Same app id as the shared worker: it joins the groups instead of re-reading history.
    late = Worker(broker.url, tmp_path / "late").start()
    try:
        await late.wait_ready()
        for attempt in range(2):
            listing = await late.list_subscriptions()
            by_id = {s["id"]: s for s in listing}
            assert not set(ids[:5]) & set(by_id)
            assert set(ids[5:]) <= set(by_id)
            assert all(by_id[ep]["url"] == "http://127.0.0.1:9/updated" for ep in ids[5:10])
            if attempt == 0:
                await late.terminate()
                late.start()
                await late.wait_ready()
    finally:
        late.stop()
