"""Endpoint health survives kill -9 of its worker and the takeover of its partition."""

from __future__ import annotations

from pathlib import Path

from tests.support import Kafka, Receiver, Worker, event, json_of, uid
from webhook_stream.broker import EmbeddedBroker


async def test_failure_streak_survives_kill_9_and_the_takeover(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    """20 consecutive dead letters disable an endpoint (the default). 12 happen on worker
    a, which is then killed with -9; worker b takes the partition over and must disable
    the endpoint at the 20th, not start counting again from 0."""
    receiver.script["/bad"] = 400
    a = Worker(own_broker.url, tmp_path / "a").start()
    b = Worker(own_broker.url, tmp_path / "b")
    try:
        await a.wait_ready()
        ep = uid("ep")
        etype = uid("streak") + ".x"
        await a.create_subscription(id=ep, url=receiver.url("/bad"), event_types=[etype])
        for i in range(12):
            await own_kafka.send("events.streak", event(etype, {"i": i}, id=uid("e")), key="k")
        await receiver.wait_count("/bad", 12, timeout=30)
        await own_kafka.wait_records(
            "webhooks.endpoint_health",
            lambda r: r.key == ep.encode() and json_of(r)["consecutive_dead_letters"] == 12,
        )
        await b.start().wait_ready()
        a.kill()
        for i in range(12, 25):
            await own_kafka.send("events.streak", event(etype, {"i": i}, id=uid("e")), key="k")
        (status,) = await own_kafka.wait_records(
            "webhooks.endpoint_status", lambda r: json_of(r)["endpoint_id"] == ep, timeout=90
        )
        assert json_of(status)["reason"] == "consecutive_dead_letters"
        assert json_of(status)["consecutive_failures"] == 20
        assert len({r.json["data"]["i"] for r in receiver.at("/bad")}) == 20
        dls = await own_kafka.wait_records(
            "webhooks.deadletter", lambda r: json_of(r)["endpoint_id"] == ep, count=25
        )
        assert sum(json_of(r)["reason"] == "endpoint_disabled" for r in dls) == 5
        async with b.api() as client:
            got = (await client.get(f"/subscriptions/{ep}")).json()
        assert got["disabled"] is True and got["version"] == 2
    finally:
        a.stop()
        b.stop()
