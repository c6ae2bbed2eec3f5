"""Operational events end to end: real broker, real workers, real receivers.

An endpoint failing until auto-disable produces ``failing``, ``exhausted`` and ``disabled``
once each, delivered signed to its tenant's operational subscription and to nobody of
another tenant; re-enabling and a success give ``enabled`` and ``recovered``; a failing
operational endpoint causes no loop; a kill -9 mid-run still gives one event per fact.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from tests.support import Kafka, Received, Receiver, Worker, event, eventually, json_of, uid
from webhook_stream.broker import EmbeddedBroker
from webhook_stream.core.operational import OPERATIONAL
from webhook_stream.delivery.signing import verify

OPS = "webhook.*"


def facts(records: list[Any], endpoint_id: str) -> dict[str, set[str]]:
    """type suffix -> the event ids on webhooks.operational about ``endpoint_id``."""
    out: dict[str, set[str]] = defaultdict(set)
    for record in records:
        env = json_of(record)
        if env["data"]["endpoint_id"] == endpoint_id:
            assert record.key == endpoint_id.encode()
            out[env["type"].removeprefix("webhook.")].add(env["id"])
    return dict(out)


def received(got: list[Received], endpoint_id: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for r in got:
        if r.json["data"]["endpoint_id"] == endpoint_id:
            out[r.json["type"].removeprefix("webhook.")].add(r.json["id"])
    return dict(out)


def until_failing_announced(receiver: Receiver, endpoint_id: str, status: int) -> Any:
    """A receiver script: 503 until ``failing`` about the endpoint reached ``/ops``, then
    ``status`` (robust to an attempt redone after the kill, unlike a request count)."""

    def answer(_: Received) -> int:
        told = "message.attempt.failing" in received(receiver.at("/ops"), endpoint_id)
        return status if told else 503

    return answer


def failing_then(status: int, failures: int) -> Any:
    """A receiver script: 503 for the first ``failures`` requests, then ``status``."""
    seen = [0]

    def answer(_: Received) -> int:
        seen[0] += 1
        return 503 if seen[0] <= failures else status

    return answer


async def test_failing_exhausted_disabled_enabled_recovered_and_no_loop(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    """The failing threshold is the production default (4); auto-disable is set to the
    first dead letter (the default, 20, is the kill -9 test's 410 path and test_health)."""
    w = Worker(
        own_broker.url, tmp_path / "w", {"WEBHOOK_STREAM_HEALTH_DISABLE_AFTER_DEAD_LETTERS": "1"}
    )
    w.start()
    try:
        await w.wait_ready()
        ta, tb, tc = uid("ta"), uid("tb"), uid("tc")
        ops_a = await w.create_subscription(
            id=uid("opsa"), url=receiver.url("/ops-a"), event_types=[OPS], tenant_id=ta
        )
        await w.create_subscription(
            id=uid("opsb"), url=receiver.url("/ops-b"), event_types=[OPS], tenant_id=tb
        )
        # The operator's subscription (no tenant) gets every tenant's operational events.
        await w.create_subscription(
            id=uid("opsadmin"), url=receiver.url("/ops-admin"), event_types=[OPS]
        )
        # Tenant c's operational endpoint fails itself: no loop, no cascade.
        ops_c = uid("opsc")
        await w.create_subscription(
            id=ops_c, url=receiver.url("/ops-c"), event_types=[OPS], tenant_id=tc, max_attempts=5
        )
        receiver.script["/ops-c"] = 503
        ep, ep_c = uid("ep"), uid("epc")
        etype = uid("op") + ".x"
        receiver.script["/bad"] = 503
        receiver.script["/bad-c"] = 503
        await w.create_subscription(
            id=ep, url=receiver.url("/bad"), event_types=[etype], tenant_id=ta, max_attempts=5
        )
        await w.create_subscription(
            id=ep_c, url=receiver.url("/bad-c"), event_types=[etype], tenant_id=tc, max_attempts=5
        )
        await own_kafka.send("events.ops", event(etype, {"n": 1}, id=uid("e"), tenant_id=ta))

        def got_a() -> dict[str, set[str]]:
            return received(receiver.at("/ops-a"), ep)

        await eventually(
            lambda: {"endpoint.disabled", "message.attempt.exhausted"} <= set(got_a()), timeout=90
        )
        assert len(receiver.at("/bad")) == 5
        for r in receiver.at("/ops-a"):
            verify(ops_a["secret"], r.headers, r.body)  # raises unless signed for ops_a
        by_type = {r.json["type"]: r.json for r in receiver.at("/ops-a")}
        failing = by_type["webhook.message.attempt.failing"]
        assert failing["data"]["attempt_count"] == 4 and failing["data"]["last_status"] == 503
        exhausted = by_type["webhook.message.attempt.exhausted"]
        assert exhausted["data"]["attempt_count"] == 5
        assert exhausted["data"]["reason"] == "exhausted"
        assert exhausted["data"]["delivery_id"] == failing["data"]["delivery_id"]
        disabled = by_type["webhook.endpoint.disabled"]
        assert disabled["data"]["reason"] == "consecutive_dead_letters"
        assert disabled["data"]["endpoint_path"] == f"/subscriptions/{ep}"
        assert all(r.json["data"]["tenant_id"] == ta for r in receiver.at("/ops-a"))

        # Re-enabled, and a message that fails 4 times, then succeeds.
        receiver.script["/bad"] = failing_then(200, 4)
        async with w.api() as client:
            r = await client.patch(f"/subscriptions/{ep}", json={"disabled": False})
            assert r.status_code == 200, r.text
        await own_kafka.send("events.ops", event(etype, {"n": 2}, id=uid("e"), tenant_id=ta))
        await eventually(lambda: "message.attempt.recovered" in got_a(), timeout=90)
        recovered = next(
            r.json for r in receiver.at("/ops-a") if r.json["type"].endswith("recovered")
        )
        assert recovered["data"]["attempt_count"] == 5 and recovered["data"]["last_status"] == 200

        # Tenant c: its operational endpoint is told of ep_c's creation, fails 5 times and
        # is disabled (the first dead letter, here). ep_c then fails too: its facts are
        # dead-lettered at ops_c (disabled); ops_c's own failures never became facts.
        await own_kafka.wait_records(
            OPERATIONAL,
            lambda rec: (
                json_of(rec)["data"]["endpoint_id"] == ops_c
                and json_of(rec)["type"] == "webhook.endpoint.disabled"
            ),
            timeout=90,
        )
        await own_kafka.send("events.ops", event(etype, {"n": 1}, id=uid("e"), tenant_id=tc))
        await own_kafka.wait_records(
            OPERATIONAL,
            lambda rec: (
                json_of(rec)["data"]["endpoint_id"] == ep_c
                and json_of(rec)["type"] == "webhook.endpoint.disabled"
            ),
            timeout=90,
        )
        assert set(received(receiver.at("/ops-c"), ep_c)) == {"endpoint.created"}
        assert len(receiver.at("/ops-c")) == 5  # its attempts; none about itself
        records = await own_kafka.read_all(OPERATIONAL)
        assert facts(records, ep) == {
            "endpoint.created": facts(records, ep)["endpoint.created"],
            "endpoint.disabled": {disabled["id"]},
            "endpoint.enabled": facts(records, ep)["endpoint.enabled"],
            "message.attempt.failing": facts(records, ep)["message.attempt.failing"],
            "message.attempt.exhausted": {exhausted["id"]},
            "message.attempt.recovered": {recovered["id"]},
        }
        for kind in ("endpoint.created", "endpoint.enabled"):
            assert len(facts(records, ep)[kind]) == 1
        assert len(facts(records, ep)["message.attempt.failing"]) == 2  # one per message
        # Delivered: each fact once by id (the receiver may see a re-send, never a new id).
        assert received(receiver.at("/ops-a"), ep) == facts(records, ep)
        # Nobody of another tenant; no endpoint told about itself; no cascade.
        assert receiver.at("/ops-b") == []
        await eventually(
            lambda: received(receiver.at("/ops-admin"), ep) == facts(records, ep), timeout=30
        )
        assert {r.json["data"]["tenant_id"] for r in receiver.at("/ops-admin")} >= {ta, tc}
        assert received(receiver.at("/ops-c"), ops_c) == {}
        assert set(facts(records, ops_c)) == {"endpoint.created", "endpoint.disabled"}
        assert set(facts(records, ep_c)) == {
            "endpoint.created",
            "message.attempt.failing",
            "message.attempt.exhausted",
            "endpoint.disabled",
        }
        assert not any(r.json["data"]["endpoint_id"] == ep for r in receiver.at("/ops-c"))
    finally:
        w.stop()


async def test_one_event_per_fact_when_a_worker_is_killed(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    """Production health defaults: 410 disables at once. Worker a is killed with -9 while
    messages are failing; b takes over; every fact is on the topic and delivered once by
    id (a re-send keeps its id)."""
    a = Worker(own_broker.url, tmp_path / "a").start()
    b = Worker(own_broker.url, tmp_path / "b")
    try:
        await a.wait_ready()
        await b.start().wait_ready()
        tenant = uid("tk")
        await a.create_subscription(
            id=uid("ops"), url=receiver.url("/ops"), event_types=[OPS], tenant_id=tenant
        )
        etype = uid("kill") + ".x"
        eps = [uid("ep") for _ in range(6)]
        for i, ep in enumerate(eps):
            path = f"/k{i}"
            # Even: fail 4 times, then 410 Gone (failing, exhausted, disabled);
            # odd: fail 4 times, then succeed (failing, recovered).
            final = 410 if i % 2 == 0 else 200
            receiver.script[path] = until_failing_announced(receiver, ep, final)
            await a.create_subscription(
                id=ep,
                url=receiver.url(path),
                event_types=[etype],
                tenant_id=tenant,
                max_attempts=12,
            )
        await own_kafka.send("events.kill", event(etype, {}, id=uid("e"), tenant_id=tenant))
        await eventually(
            lambda: sum(len(receiver.at(f"/k{i}")) for i in range(6)) >= 12, timeout=60
        )
        a.kill()
        expected = {
            ep: (
                {
                    "endpoint.created",
                    "message.attempt.failing",
                    "message.attempt.exhausted",
                    "endpoint.disabled",
                }
                if i % 2 == 0
                else {"endpoint.created", "message.attempt.failing", "message.attempt.recovered"}
            )
            for i, ep in enumerate(eps)
        }

        def missing() -> dict[str, set[str]]:
            got = {ep: set(received(receiver.at("/ops"), ep)) for ep in eps}
            return {ep: want - got[ep] for ep, want in expected.items() if want - got[ep]}

        try:
            await eventually(lambda: not missing(), timeout=120)
        except AssertionError:
            raise AssertionError(f"not delivered: {missing()}") from None
        records = await own_kafka.read_all(OPERATIONAL)
        for ep, want in expected.items():
            on_topic = facts(records, ep)
            assert set(on_topic) == want, ep
            assert all(len(ids) == 1 for ids in on_topic.values()), on_topic
            assert received(receiver.at("/ops"), ep) == on_topic
    finally:
        a.stop()
        b.stop()
