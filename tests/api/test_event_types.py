"""The event-type catalog over real HTTP on the real broker: who may write, who may read,
schema enforcement into ``webhooks.rejected``, warnings, test events from examples."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support import Kafka, Receiver, Worker, event, json_of, uid

ORDER_SCHEMA = {
    "type": "object",
    "properties": {
        "amount": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "enum": ["EUR", "USD"]},
    },
    "required": ["amount", "currency"],
}


@pytest.fixture
async def names(worker: Worker) -> AsyncIterator[list[str]]:
    """Catalog entries a test creates, deleted afterwards: the catalog is broker-wide, and
    while it holds anything other tests' subscription writes get warnings."""
    created: list[str] = []
    yield created
    async with worker.api() as client:
        for name in created:
            await client.delete(f"/event-types/{name}")


async def _tenant(worker: Worker) -> httpx.AsyncClient:
    token = (await worker.issue_token(uid("tenant")))["token"]
    return httpx.AsyncClient(
        base_url=worker.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


async def test_catalog_written_by_the_admin_read_by_every_token(
    worker: Worker, names: list[str]
) -> None:
    name = uid("cat") + ".created"
    names.append(name)
    entry: dict[str, Any] = {
        "description": "An order was placed.",
        "schema": ORDER_SCHEMA,
        "examples": [{"amount": 12.5, "currency": "EUR"}],
    }
    tenant = await _tenant(worker)
    async with worker.api() as admin, tenant:
        r = await tenant.put(f"/event-types/{name}", json=entry)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        r = await admin.put(f"/event-types/{name}", json=entry)
        assert r.status_code == 201, r.text
        assert r.json()["schema"] == ORDER_SCHEMA and r.json()["deprecated"] is False
        created_at = r.json()["created_at"]
        r = await admin.put(f"/event-types/{name}", json={**entry, "deprecated": True})
        assert r.status_code == 200 and r.json()["created_at"] == created_at
        r = await tenant.get(f"/event-types/{name}")
        assert r.status_code == 200 and r.json()["deprecated"] is True
        listed = (await tenant.get("/event-types", params={"limit": 500})).json()
        assert name in [e["name"] for e in listed["items"]]
        assert (await tenant.delete(f"/event-types/{name}")).status_code == 403
        assert (await tenant.get(f"/event-types/{name}")).status_code == 200
        # Invalid entries are refused naming the path, and nothing is written.
        bad = uid("cat") + ".bad"
        cases = [
            ({"schema": {"type": "no-such-type"}}, "schema.type"),
            ({"schema": {"properties": {"a": {"minimum": "x"}}}}, "schema.properties.a.minimum"),
            ({"schema": {"$ref": "https://example.com/s.json"}}, "schema.$ref"),
            (
                {"schema": ORDER_SCHEMA, "examples": [{"amount": -1, "currency": "EUR"}]},
                "examples[0]",
            ),
            ({"deprecated": "yes"}, "deprecated"),
            ({"created_at": "2020-01-01T00:00:00Z"}, "created_at"),
        ]
        for body, field in cases:
            r = await admin.put(f"/event-types/{bad}", json=body)
            assert r.status_code == 400, (body, r.text)
            assert r.json()["error"]["field"] == field, (body, r.json())
        assert (await admin.get(f"/event-types/{bad}")).status_code == 404
        r = await admin.put("/event-types/has*wildcard", json={})
        assert r.status_code == 400 and r.json()["error"]["field"] == "name"
        assert (await admin.delete(f"/event-types/{name}")).status_code == 200
        assert (await tenant.get(f"/event-types/{name}")).status_code == 404
        assert (await admin.delete(f"/event-types/{name}")).status_code == 404


async def test_enforcement_rejects_a_bad_event_and_delivers_a_good_one(
    worker: Worker, kafka: Kafka, receiver: Receiver, names: list[str]
) -> None:
    name = uid("enf") + ".created"
    names.append(name)
    async with worker.api() as admin:
        r = await admin.put(
            f"/event-types/{name}",
            json={
                "schema": ORDER_SCHEMA,
                "enforce": True,
                "examples": [{"amount": 1, "currency": "USD"}],
            },
        )
        assert r.status_code == 201, r.text
    await worker.create_subscription(id=uid("ep"), url=receiver.url("/enf"), event_types=[name])
    topic = "events." + uid("enf")
    await kafka.send(topic, event(name, {"amount": "lots", "currency": "EUR"}, id="bad-1"))
    await kafka.send(topic, event(name, {"amount": 10, "currency": "EUR"}, id="good-1"))
    (got,) = await receiver.wait_count("/enf", 1, timeout=60)
    assert got.json["id"] == "good-1"

    def ours(r: Any) -> bool:
        return json_of(r)["source"]["topic"] == topic

    (rejected,) = [json_of(r) for r in await kafka.wait_records("webhooks.rejected", ours)]
    assert rejected["reason"] == (
        'schema_violation: $.data.amount: "lots" is not of type "number"'
    ), rejected["reason"]
    assert "number" in rejected["reason"]
    # The good event was behind the bad one on the same partition: nothing else arrives.
    assert [r.json["id"] for r in receiver.at("/enf")] == ["good-1"]


async def test_warnings_and_test_events_from_the_catalog(
    worker: Worker, receiver: Receiver, names: list[str]
) -> None:
    base = uid("warn")
    live, old = f"{base}.live", f"{base}.old"
    names.extend([live, old])
    example = {"amount": 3, "currency": "EUR"}
    async with worker.api() as admin:
        r = await admin.put(
            f"/event-types/{live}", json={"schema": ORDER_SCHEMA, "examples": [example]}
        )
        assert r.status_code == 201, r.text
        r = await admin.put(f"/event-types/{old}", json={"deprecated": True})
        assert r.status_code == 201, r.text
        ep = uid("ep")
        body = {
            "id": ep,
            "url": receiver.url("/warn"),
            "event_types": [live, old, f"{base}.unknown", f"{base}.nothing*"],
        }
        r = await admin.post("/subscriptions", json=body)
        assert r.status_code == 201, r.text
        warnings = r.json()["warnings"]
        assert len(warnings) == 3, warnings
        assert any(old in w and "deprecated" in w for w in warnings)
        assert any(f"{base}.unknown" in w and "not in the catalog" in w for w in warnings)
        assert any(f"{base}.nothing*" in w and "matches no" in w for w in warnings)
        r = await admin.patch(f"/subscriptions/{ep}", json={"event_types": [f"{base}.*"]})
        assert r.status_code == 200 and "warnings" not in r.json()
        r = await admin.post(f"/subscriptions/{ep}/test")
        assert r.status_code == 202, r.text
    (got,) = await receiver.wait_count("/warn", 1, timeout=60)
    assert got.json["type"] == live and got.json["data"] == example


async def test_filter_check(worker: Worker) -> None:
    tenant = await _tenant(worker)
    async with tenant:
        spec = {"data": {"amount": {"$gt": 100}}, "headers": {"x-shop": {"$startsWith": "eu"}}}
        yes = {"type": "order.created", "data": {"amount": 150}, "headers": {"X-Shop": "eu-1"}}
        r = await tenant.post("/filter-check", json={"filter": spec, "event": yes})
        assert r.status_code == 200 and r.json() == {"matches": True}
        no = {**yes, "data": {"amount": 50}}
        assert (await tenant.post("/filter-check", json={"filter": spec, "event": no})).json() == {
            "matches": False
        }
        r = await tenant.post(
            "/filter-check", json={"filter": {"data": {"a": {"$regex": "x"}}}, "event": yes}
        )
        assert r.status_code == 400 and r.json()["error"]["field"] == "filter.data.a.$regex"
        r = await tenant.post("/filter-check", json={"filter": spec, "event": {"bogus": 1}})
        assert r.status_code == 400 and r.json()["error"]["field"] == "event.bogus"


def test_deep_schemas_and_deep_data_are_refused_not_crashed() -> None:
    """In-process: a schema nested past the limit, or referring to nothing, is a 400; data
    as deep as decoding allows is checked (and its failing path named), never raising."""
    from webhook_stream.subscriptions.catalog import (
        MAX_SCHEMA_DEPTH,
        InvalidEventType,
        parse_event_type,
    )

    deep: dict[str, Any] = {"type": "object"}
    for _ in range(MAX_SCHEMA_DEPTH):
        deep = {"not": deep}
    with pytest.raises(InvalidEventType, match="deeper"):
        parse_event_type({"schema": deep}, "deep.schema")
    tree = {"$defs": {"t": {"type": "object", "properties": {"c": {"$ref": "#/$defs/t"}}}}}
    entry = parse_event_type({"schema": {**tree, "$ref": "#/$defs/t"}}, "deep.data")
    data: dict[str, Any] = {}
    for _ in range(1000):  # about the most orjson decodes (1024 levels)
        data = {"c": data}
    assert entry.violation(data) is None
    leaf = data
    while leaf["c"]:
        leaf = leaf["c"]
    leaf["c"] = 1
    problem = entry.violation(data)
    assert problem is not None and problem.startswith("$.data.c.c.c.c")
    assert entry.violation({"c": {"c": {}}}) is None
    assert entry.violation({"c": 1}) == '$.data.c: 1 is not of type "object"'
    with pytest.raises(InvalidEventType) as caught:
        parse_event_type({"schema": {"properties": {"a": {"$ref": "#/$defs/nope"}}}}, "x")
    assert caught.value.field == "schema.properties.a.$ref"
    anchored = {"$defs": {"m": {"$anchor": "money", "type": "number"}}, "$ref": "#money"}
    assert parse_event_type({"schema": anchored}, "x").violation(5) is None


def test_validate_events_modes() -> None:
    """``WEBHOOK_STREAM_VALIDATE_EVENTS``: off, per_type (entries asking), all (catalogued)."""
    from webhook_stream.core.errors import ConfigError
    from webhook_stream.core.settings import Settings
    from webhook_stream.subscriptions.catalog import enforced, parse_event_type

    asks = parse_event_type({"schema": ORDER_SCHEMA, "enforce": True}, "a")
    quiet = parse_event_type({"schema": ORDER_SCHEMA}, "b")
    bare = parse_event_type({"description": "no schema", "enforce": True}, "c")
    table = {
        "off": (False, False, False, False),
        "per_type": (True, False, False, False),
        "all": (True, True, False, False),
    }
    for mode, expected in table.items():
        assert (
            enforced(mode, asks),
            enforced(mode, quiet),
            enforced(mode, bare),
            enforced(mode, None),
        ) == expected, mode
    assert Settings().validate_events == "per_type"
    assert Settings.from_env({"WEBHOOK_STREAM_VALIDATE_EVENTS": " ALL "}).validate_events == "all"
    with pytest.raises(ConfigError, match="VALIDATE_EVENTS"):
        Settings.from_env({"WEBHOOK_STREAM_VALIDATE_EVENTS": "sometimes"})
