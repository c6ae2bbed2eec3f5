"""Schema Registry records on the real broker, produced by librdkafka with confluent-kafka's
own ``SerializingProducer``, ``AvroSerializer``/``JSONSerializer`` and
``SchemaRegistryClient`` (against the stand-in of :mod:`tests.schema_registry_standin`),
delivered as webhooks with the decoded data; a registry away for 20 s loses and rejects
nothing; an unknown schema id is rejected (``unknown_schema``); a Debezium change event
is mapped to ``<table>.<op>``.

One broker and one worker of this module's own: its worker has the registry and the
mappings configured, and no other worker should read these topics.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from confluent_kafka import Producer, SerializingProducer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from playwright.async_api import expect

from tests.ingest.test_registry_decoding import (
    DEBEZIUM_AVRO,
    DEBEZIUM_MAPPING,
    ORDER_AVRO,
    ORDER_JSON_SCHEMA,
)
from tests.schema_registry_standin import SchemaRegistryStandIn
from tests.support import TOKEN, Kafka, Receiver, Worker, eventually, json_of, uid
from tests.ui.browser import chromium, new_page
from webhook_stream.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration

AUTH = ("sr-user", "sr-pass-0123456789")
OUTAGE = 20.0


@pytest.fixture(scope="module")
def sr_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("sr-broker") / "tansu.log"
    with EmbeddedBroker(port=free_port(), log_file=log) as b:
        yield b


@pytest.fixture(scope="module")
async def standin() -> AsyncIterator[SchemaRegistryStandIn]:
    registry = await SchemaRegistryStandIn(auth=AUTH).up()
    yield registry
    await registry.down()


@pytest.fixture(scope="module")
async def sr_worker(
    sr_broker: EmbeddedBroker,
    standin: SchemaRegistryStandIn,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Worker]:
    workdir = tmp_path_factory.mktemp("sr-worker")
    mappings = workdir / "mappings.json"
    mappings.write_text(json.dumps(DEBEZIUM_MAPPING))
    env = {
        "WEBHOOK_STREAM_SCHEMA_REGISTRY_URL": standin.url,
        "WEBHOOK_STREAM_SCHEMA_REGISTRY_USERNAME": AUTH[0],
        "WEBHOOK_STREAM_SCHEMA_REGISTRY_PASSWORD": AUTH[1],
        "WEBHOOK_STREAM_EVENT_MAPPINGS": str(mappings),
    }
    w = Worker(sr_broker.url, workdir, env).start()
    try:
        await w.wait_ready()
        yield w
    finally:
        w.stop()
        assert AUTH[1] not in w.log_text()


@pytest.fixture(scope="module")
async def sr_kafka(sr_broker: EmbeddedBroker) -> AsyncIterator[Kafka]:
    k = await Kafka(sr_broker.bootstrap).start()
    yield k
    await k.stop()


def _order(eid: str, etype: str, tenant: str | None, n: int, total: float, raw: bytes) -> Any:
    return {
        "id": eid,
        "type": etype,
        "tenant_id": tenant,
        "data": {"order": n, "total": total, "raw": raw},
    }


def _client(url: str) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": url, "basic.auth.user.info": ":".join(AUTH)})


def _produce_serialized(
    bootstrap: str, url: str, topic: str, kind: str, schema: str, objs: list[Any]
) -> None:
    """What a service using confluent-kafka's serializers sends (blocking: run in a thread)."""
    with _client(url) as client:
        if kind == "avro":
            serializer: Any = AvroSerializer(client, schema)
        else:
            serializer = JSONSerializer(schema, client)
        conf = {"bootstrap.servers": bootstrap, "value.serializer": serializer}
        producer = SerializingProducer(conf)
        for obj in objs:
            producer.produce(topic, value=obj, key=None)
        assert producer.flush(30) == 0


def _serialize(url: str, topic: str, schema: str, objs: list[Any]) -> list[bytes]:
    with _client(url) as client:
        serializer = AvroSerializer(client, schema)
        return [serializer(o, SerializationContext(topic, MessageField.VALUE)) for o in objs]


def _produce_raw(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in values:
        producer.produce(topic, value, partition=0)
    assert producer.flush(30) == 0


async def _rejected_from(kafka: Kafka, topic: str) -> list[Any]:
    return [
        json_of(r)
        for r in await kafka.read_all("webhooks.rejected")
        if json_of(r)["source"]["topic"] == topic
    ]


async def test_avro_and_json_schema_records_are_delivered_decoded(
    sr_broker: EmbeddedBroker,
    sr_worker: Worker,
    standin: SchemaRegistryStandIn,
    receiver: Receiver,
) -> None:
    etype = uid("order") + ".placed"
    await sr_worker.create_subscription(id=uid("ep"), url=receiver.url("/sr"), event_types=[etype])
    avro = [_order(uid("a"), etype, None, i, 2.5, b"\x01") for i in range(3)]
    jsons = [{"id": uid("j"), "type": etype, "data": {"order": 10 + i}} for i in range(3)]
    topic = f"events.{uid('sr')}"
    await asyncio.to_thread(
        _produce_serialized, sr_broker.bootstrap, standin.url, topic, "avro", ORDER_AVRO, avro
    )
    await asyncio.to_thread(
        _produce_serialized,
        sr_broker.bootstrap,
        standin.url,
        topic,
        "json",
        ORDER_JSON_SCHEMA,
        jsons,
    )
    got = await receiver.wait_count("/sr", 6)
    by_id = {r.json["id"]: r.json["data"] for r in got}
    for obj in avro:
        assert by_id[obj["id"]] == {"order": obj["data"]["order"], "total": 2.5, "raw": "AQ=="}
    for obj in jsons:
        assert by_id[obj["id"]] == obj["data"]


async def test_registry_away_for_20s_loses_and_rejects_nothing(
    sr_broker: EmbeddedBroker,
    sr_worker: Worker,
    sr_kafka: Kafka,
    standin: SchemaRegistryStandIn,
    receiver: Receiver,
) -> None:
    etype = uid("outage") + ".placed"
    await sr_worker.create_subscription(
        id=uid("ep"), url=receiver.url("/outage"), event_types=[etype]
    )
    topic = f"events.{uid('outage')}"
    # A schema the worker has never seen: registered, then the registry goes away.
    schema = ORDER_AVRO.replace('"OrderPlaced"', '"OrderPlacedV2"')
    objs = [_order(uid("o"), etype, None, i, 1.0, b"") for i in range(10)]
    values = await asyncio.to_thread(_serialize, standin.url, topic, schema, objs)
    await standin.down()
    down_at = time.monotonic()
    try:
        await asyncio.to_thread(_produce_raw, sr_broker.bootstrap, topic, values)

        async def health() -> dict[str, Any]:
            async with httpx.AsyncClient() as client:
                return (await client.get(sr_worker.url + "/health")).json()

        async def waiting() -> bool:
            body = await health()
            return body["schema_registry"] == {"reachable": False, "waiting_partitions": 1}

        await eventually(waiting, timeout=30)
        async with sr_worker.api() as client:
            metrics = (await client.get("/metrics")).text
        assert re.search(r"^webhook_schema_registry_waiting_partitions 1\.0$", metrics, re.M)
        assert re.search(r"^webhook_schema_registry_errors_total [1-9]", metrics, re.M)
        assert receiver.at("/outage") == []
        # The outage lasts its 20 s whatever the polling above took.
        await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))
        assert receiver.at("/outage") == []
    finally:
        await standin.up()
    got = await receiver.wait_count("/outage", 10, timeout=60)
    assert sorted(r.json["id"] for r in got) == sorted(o["id"] for o in objs)
    assert [r.json["data"]["order"] for r in got] == list(range(10))  # one partition: in order
    assert await _rejected_from(sr_kafka, topic) == []
    body = await eventually(lambda: _health_reachable(sr_worker.url), timeout=30)
    assert body["schema_registry"]["waiting_partitions"] == 0


async def _health_reachable(url: str) -> dict[str, Any] | None:
    async with httpx.AsyncClient() as client:
        body = (await client.get(url + "/health")).json()
    return body if body["schema_registry"]["reachable"] else None


async def test_unknown_schema_id_is_rejected(
    sr_broker: EmbeddedBroker, sr_worker: Worker, sr_kafka: Kafka
) -> None:
    topic = f"events.{uid('unknown')}"
    value = b"\x00" + (987_654).to_bytes(4, "big") + b"\x02a"
    await asyncio.to_thread(_produce_raw, sr_broker.bootstrap, topic, [value])

    async def rejected() -> list[Any]:
        return await _rejected_from(sr_kafka, topic)

    [record] = await eventually(rejected, timeout=30, interval=0.3)
    assert record["reason"] == "unknown_schema: schema id 987654 is not in the registry"
    assert record["source"]["offset"] == 0

    # ...and visible without a Kafka client: GET /rejected, filtered.
    async def listed() -> list[Any]:
        async with sr_worker.api() as client:
            r = await client.get("/rejected", params={"topic": topic, "reason": "unknown_schema"})
        return r.json()["items"] if r.status_code == 200 else []

    [item] = await eventually(listed, timeout=30, interval=0.3)
    assert item["reason"] == record["reason"] and item["code"] == "unknown_schema"
    assert item["source"] == {"topic": topic, "partition": 0, "offset": 0}
    assert item["tenant_id"] is None and item["value_bytes"] == len(value)


async def test_rejected_events_are_listed_per_tenant(sr_worker: Worker, sr_kafka: Kafka) -> None:
    topic = f"events.{uid('rej')}"
    await sr_kafka.send(topic, b'{"tenant_id": "acme", "data": {"n": 1}}')  # no type
    await sr_kafka.send(topic, b'{"tenant_id": "beta", "type": "", "data": {}}')
    acme = (await sr_worker.issue_token("acme"))["token"]

    async def listed(token: str | None) -> list[Any]:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        async with sr_worker.api() as client:
            r = await client.get("/rejected", params={"topic": topic}, headers=headers)
        assert r.status_code in (200, 503), r.text
        return r.json()["items"] if r.status_code == 200 else []

    both = await eventually(lambda: _at_least(listed(None), 2), timeout=30, interval=0.3)
    assert sorted(i["tenant_id"] for i in both) == ["acme", "beta"]
    [mine] = await eventually(lambda: listed(acme), timeout=30, interval=0.3)
    assert mine["code"] == "missing_type" and mine["preview"].startswith('{"tenant_id": "acme"')
    async with sr_worker.api() as client:
        bad = await client.get("/rejected", params={"reason": "Not A Code!"})
        other = await client.get(
            "/rejected", params={"tenant_id": "beta"}, headers={"Authorization": f"Bearer {acme}"}
        )
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "reason"
    assert other.status_code == 403


async def _at_least(items: Any, n: int) -> list[Any]:
    found = await items
    return found if len(found) >= n else []


async def test_debezium_change_event_is_delivered_as_table_dot_op(
    sr_broker: EmbeddedBroker,
    sr_worker: Worker,
    standin: SchemaRegistryStandIn,
    receiver: Receiver,
) -> None:
    await sr_worker.create_subscription(
        id=uid("ep"), url=receiver.url("/dbz"), event_types=["customers.*"], tenant_id="acme"
    )
    topic = "events.dbz.inventory.customers"
    change = {
        "op": "c",
        "ts_ms": 1_795_428_000_000,
        "source": {"table": "customers", "lsn": 71},
        "after": {"id": "1005", "email": "bo@example.com"},
    }

    def produce() -> None:
        with _client(standin.url) as client:
            serializer = AvroSerializer(client, DEBEZIUM_AVRO)
            value = serializer(change, SerializationContext(topic, MessageField.VALUE))
        producer = Producer({"bootstrap.servers": sr_broker.bootstrap})
        producer.produce(topic, value, key=b'{"id": 1005}', headers=[("tenant", b"acme")])
        assert producer.flush(30) == 0

    await asyncio.to_thread(produce)
    [got] = await receiver.wait_count("/dbz", 1)
    assert got.json["type"] == "customers.c"
    assert got.json["id"] == f"{topic}:71"
    assert got.json["timestamp"].startswith("2026-11-23T10:00:00")
    assert got.json["data"] == change["after"]


async def test_rejected_input_in_the_console(
    sr_broker: EmbeddedBroker,
    sr_worker: Worker,
    sr_kafka: Kafka,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """An unknown schema id's rejection on the console's Rejected page (real Chromium);
    a tenant token's page lists its own tenant's rejections only."""
    topic = f"events.{uid('console')}"
    value = b"\x00" + (555_555).to_bytes(4, "big") + b"\x02"
    await asyncio.to_thread(_produce_raw, sr_broker.bootstrap, topic, [value])
    await sr_kafka.send(topic, b'{"tenant_id": "acme", "data": {"n": 1}}')  # no type
    await sr_kafka.send(topic, b'{"tenant_id": "globex", "data": {"n": 2}}')
    acme = (await sr_worker.issue_token("acme"))["token"]
    async with chromium(tmp_path_factory.mktemp("sr-chromium")) as context:
        page, errors = await new_page(context)
        await page.goto(f"{sr_worker.url}/ui/#token={quote(TOKEN, safe='')}")
        await expect(page.locator("#nav")).to_be_visible()
        await page.click('#nav a[data-page="rejected"]')
        await expect(page.locator("h1")).to_have_text("Rejected input")
        await page.fill("#rejected-filters input[name=topic]", topic)
        rows = page.locator("#rejected tbody tr[data-code]")

        async def all_three() -> bool:
            await page.click("#rejected-filters button[type=submit]")
            await page.wait_for_load_state("networkidle")  # count the new answer's rows
            return await rows.count() == 3

        await eventually(all_three, timeout=30, interval=0.5)
        unknown = page.locator('#rejected tr[data-code="unknown_schema"]')
        await expect(unknown).to_contain_text("schema id 555555 is not in the registry")
        await expect(unknown).to_contain_text(f"{topic} [0] @0")
        await page.fill("#rejected-filters input[name=reason]", "unknown_schema")
        await page.click("#rejected-filters button[type=submit]")
        await expect(rows).to_have_count(1)
        errors.assert_none()

        tenant_page, tenant_errors = await new_page(context)
        await tenant_page.goto(f"{sr_worker.url}/ui/#token={quote(acme, safe='')}")
        await expect(tenant_page.locator("#who")).to_have_text("tenant acme")
        await tenant_page.evaluate("f => { location.hash = f; }", f"#/rejected?topic={topic}")
        mine = tenant_page.locator("#rejected tbody tr[data-code]")
        await expect(mine).to_have_count(1)
        await expect(mine).to_contain_text('"tenant_id": "acme"')
        await expect(tenant_page.locator("#rejected")).not_to_contain_text("globex")
        tenant_errors.assert_none()
