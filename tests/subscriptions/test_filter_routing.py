"""Content filters end to end: the real broker, a real worker, real HTTP receivers."""

from __future__ import annotations

import time
from typing import Any

import orjson

from tests.support import Kafka, Receiver, Worker, event, eventually, uid

# Three events, each operator seen to match some and not others; e3 lacks most fields.
EVENTS: dict[str, tuple[dict[str, Any], list[tuple[str, bytes]]]] = {
    "e1": (
        {
            "amount": 150,
            "currency": "EUR",
            "region": "eu-west",
            "customer": {"address": {"country": "DE"}},
        },
        [("X-Shop", b"eu-1")],
    ),
    "e2": (
        {
            "amount": 50,
            "currency": "USD",
            "region": "us-east",
            "customer": {"address": {"country": "US"}},
        },
        [("X-Shop", b"us-1")],
    ),
    "e3": ({"amount": 100, "currency": "GBP"}, []),
}

FILTERS: dict[str, tuple[dict[str, Any], set[str]]] = {
    "eq": ({"data": {"currency": "EUR"}}, {"e1"}),
    "neq": ({"data": {"currency": {"$neq": "EUR"}}}, {"e2", "e3"}),
    "gt": ({"data": {"amount": {"$gt": 100}}}, {"e1"}),
    "gte": ({"data": {"amount": {"$gte": 100}}}, {"e1", "e3"}),
    "lt": ({"data": {"amount": {"$lt": 100}}}, {"e2"}),
    "lte": ({"data": {"amount": {"$lte": 100}}}, {"e2", "e3"}),
    "in": ({"data": {"currency": {"$in": ["USD", "GBP"]}}}, {"e2", "e3"}),
    "nin": ({"data": {"currency": {"$nin": ["USD"]}}}, {"e1", "e3"}),
    "exist": ({"data": {"region": {"$exist": False}}}, {"e3"}),
    "starts": ({"data": {"region": {"$startsWith": "eu-"}}}, {"e1"}),
    "ends": ({"data": {"region": {"$endsWith": "-east"}}}, {"e2"}),
    "nested": ({"data": {"customer": {"address": {"country": "US"}}}}, {"e2"}),
    "or": (
        {"$or": [{"data": {"currency": "GBP"}}, {"data": {"amount": {"$gt": 120}}}]},
        {"e1", "e3"},
    ),
    "not": ({"$not": {"data": {"region": {"$startsWith": "eu-"}}}}, {"e2", "e3"}),
    "and": (
        {"$and": [{"data": {"amount": {"$gte": 50}}}, {"data": {"amount": {"$lte": 100}}}]},
        {"e2", "e3"},
    ),
    "header": ({"headers": {"x-shop": {"$startsWith": "eu"}}}, {"e1"}),
    "none": ({"data": {"amount": {"$gt": 1000}}}, set()),
}


def _delivered_to(records: list[Any], endpoint: str) -> list[str]:
    return [orjson.loads(r.value)["event"]["id"] for r in records if r.key == endpoint.encode()]


async def test_each_operator_routes_matching_events_only(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    etype = uid("flt") + ".order"
    tag = uid("f")
    ids = {name: f"{tag}_{name}" for name in FILTERS}
    for name, (spec, _) in FILTERS.items():
        await worker.create_subscription(
            id=ids[name], url=receiver.url(f"/{tag}/{name}"), event_types=[etype], filter=spec
        )
    everything = f"{tag}_all"
    await worker.create_subscription(
        id=everything, url=receiver.url(f"/{tag}/all"), event_types=[etype]
    )
    topic = "events." + uid("flt")
    event_ids = {name: f"{tag}_{name}" for name in EVENTS}
    for name, (data, headers) in EVENTS.items():
        await kafka.send(topic, event(etype, data, id=event_ids[name]), headers=headers)
    await receiver.wait_count(f"/{tag}/all", len(EVENTS), timeout=60)
    for name, (_, expected) in FILTERS.items():
        got = await receiver.wait_count(f"/{tag}/{name}", len(expected), timeout=60)
        assert {r.json["id"] for r in got} == {event_ids[e] for e in expected}, name
    # Every event has been fanned out (the unfiltered endpoint got them all): what the
    # filters refused was never written to webhooks.deliveries.
    records = await kafka.read_all("webhooks.deliveries")
    assert len(_delivered_to(records, everything)) == len(EVENTS)
    for name, (_, expected) in FILTERS.items():
        assert sorted(_delivered_to(records, ids[name])) == sorted(
            event_ids[e] for e in expected
        ), name


async def test_invalid_filter_refused_with_the_path_named(
    worker: Worker, receiver: Receiver
) -> None:
    ep = uid("ep")
    async with worker.api() as client:
        body = {"id": ep, "url": receiver.url("/bad"), "event_types": ["a.b"]}
        r = await client.post(
            "/subscriptions", json={**body, "filter": {"data": {"amount": {"$regex": "^1"}}}}
        )
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["field"] == "filter.data.amount.$regex"
        assert "$regex" in error["message"] or "not supported" in error["message"]
        r = await client.post(
            "/subscriptions", json={**body, "filter": {"$or": [{"data": {"a": {"$gt": [1]}}}]}}
        )
        assert r.status_code == 400 and r.json()["error"]["field"] == "filter.$or[0].data.a.$gt"
        r = await client.post("/subscriptions", json={**body, "filter": {"payload": {"a": 1}}})
        assert r.status_code == 400 and r.json()["error"]["field"] == "filter.payload"
        assert (await client.post("/subscriptions", json=body)).status_code == 201
        r = await client.patch(f"/subscriptions/{ep}", json={"filter": {"data": {"a": {"$in": 3}}}})
        assert r.status_code == 400 and r.json()["error"]["field"] == "filter.data.a.$in"
        r = await client.patch(f"/subscriptions/{ep}", json={"filter": {"data": {"a": 1}}})
        assert r.status_code == 200, r.text
        assert r.json()["filter"] == {"data": {"a": 1}}
        assert (await client.get(f"/subscriptions/{ep}")).json()["filter"] == {"data": {"a": 1}}
        r = await client.patch(f"/subscriptions/{ep}", json={"filter": None})
        assert r.status_code == 200 and r.json()["filter"] is None


async def test_replay_honours_the_current_filter(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    etype = uid("frep") + ".x"
    ep = uid("ep")
    await worker.create_subscription(
        id=ep, url=receiver.url("/frep"), event_types=[etype], filter={"data": {"n": {"$gt": 1}}}
    )
    topic = "events." + uid("frep")
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 2))
    for n in (1, 2, 3):
        await kafka.send(topic, event(etype, {"n": n}, id=uid("e")))
    got = await receiver.wait_count("/frep", 2, timeout=60)
    assert sorted(r.json["data"]["n"] for r in got) == [2, 3]
    async with worker.api() as client:
        replay = {"source": "events", "topic": topic, "since": since, "endpoint_id": ep}
        r = await client.post("/replay", json=replay)
        assert r.status_code == 200, r.text
        assert r.json()["scanned"] == 3 and r.json()["matched"] == 2
        got = await receiver.wait_count("/frep", 4, timeout=60)
        assert sorted(r.json["data"]["n"] for r in got) == [2, 2, 3, 3]
        # A changed filter: the replay uses the endpoint's filter as it is now.
        r = await client.patch(f"/subscriptions/{ep}", json={"filter": {"data": {"n": 1}}})
        assert r.status_code == 200, r.text

        async def replayed_one() -> bool:
            r = await client.post("/replay", json={**replay, "dry_run": True})
            return r.json()["matched"] == 1

        await eventually(replayed_one, timeout=30)
        r = await client.post("/replay", json=replay)
        assert r.json()["matched"] == 1
    got = await receiver.wait_count("/frep", 5, timeout=60)
    assert sorted(r.json["data"]["n"] for r in got) == [1, 2, 2, 3, 3]
