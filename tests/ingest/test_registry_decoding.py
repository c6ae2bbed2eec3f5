"""Schema Registry records and mapped records to events, without a broker.

The bytes come from confluent-kafka's own serializers and ``SchemaRegistryClient``,
talking to the registry stand-in (:mod:`tests.schema_registry_standin`) over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.schema_registry_standin import SchemaRegistryStandIn
from tests.support import eventually
from tests.tls import make_pki
from webhook_stream.core.errors import ConfigError, RejectedEvent
from webhook_stream.core.metrics import Metrics
from webhook_stream.core.settings import Settings
from webhook_stream.ingest import schema_waits
from webhook_stream.ingest.mappings import Mappings, load_mappings
from webhook_stream.ingest.registry import SchemaRegistry
from webhook_stream.ingest.schema_waits import SchemaWaits
from webhook_stream.ingest.sources import Decoder, SchemaPending

TOPIC = "events.orders"
ORDER_AVRO = json.dumps(
    {
        "type": "record",
        "name": "OrderPlaced",
        "namespace": "shop",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "type", "type": "string"},
            {"name": "tenant_id", "type": ["null", "string"], "default": None},
            {
                "name": "data",
                "type": {
                    "type": "record",
                    "name": "Order",
                    "fields": [
                        {"name": "order", "type": "long"},
                        {"name": "total", "type": "double"},
                        {"name": "raw", "type": "bytes"},
                    ],
                },
            },
        ],
    }
)
ORDER_JSON_SCHEMA = json.dumps(
    {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "OrderPlaced",
        "type": "object",
        "properties": {"type": {"type": "string"}, "data": {"type": "object"}},
        "required": ["type", "data"],
    }
)
DEBEZIUM_AVRO = json.dumps(
    {
        "type": "record",
        "name": "Envelope",
        "namespace": "dbserver1.inventory.customers",
        "fields": [
            {"name": "op", "type": "string"},
            {"name": "ts_ms", "type": "long"},
            {
                "name": "source",
                "type": {
                    "type": "record",
                    "name": "Source",
                    "fields": [
                        {"name": "table", "type": "string"},
                        {"name": "lsn", "type": "long"},
                    ],
                },
            },
            {"name": "after", "type": ["null", {"type": "map", "values": "string"}]},
        ],
    }
)
DEBEZIUM_MAPPING = {
    "mappings": [
        {
            "topics": r"^events\.dbz\..+",
            "id": "join(':', [topic, to_string(value.source.lsn)])",
            "type": "join('.', [value.source.table, value.op])",
            "tenant_id": "headers.tenant",
            "occurred_at": "value.ts_ms",
            "data": "value.after",
        }
    ]
}


@pytest.fixture
async def standin() -> AsyncIterator[SchemaRegistryStandIn]:
    registry = await SchemaRegistryStandIn(auth=("sr-user", "sr-pass-not-logged")).up()
    yield registry
    await registry.down()


def settings(url: str, **kw: Any) -> Settings:
    return Settings(
        schema_registry_url=url,
        schema_registry_username="sr-user",
        schema_registry_password="sr-pass-not-logged",  # type: ignore[arg-type]
        **kw,
    )


async def serialize(url: str, kind: str, schema: str, obj: Any, topic: str = TOPIC) -> bytes:
    """What a real producer writes (run off the loop: the client is synchronous)."""

    def run() -> bytes:
        with SchemaRegistryClient(
            {"url": url, "basic.auth.user.info": "sr-user:sr-pass-not-logged"}
        ) as client:
            if kind == "avro":
                serializer: Any = AvroSerializer(client, schema)
            else:
                serializer = JSONSerializer(schema, client)
            return serializer(obj, SerializationContext(topic, MessageField.VALUE))

    return await asyncio.to_thread(run)


def record(value: bytes, topic: str = TOPIC, **kw: Any) -> ConsumerRecord:
    return ConsumerRecord(
        topic, 0, kw.get("offset", 5), 1_795_428_000_000, 0, kw.get("key"), value,
        None, 0, len(value), kw.get("headers", ()),
    )  # fmt: skip


#: Every SchemaWaits a test made, closed after it (their HTTP clients).
_MADE: list[SchemaWaits] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _MADE:
        await _MADE.pop().close()


def waits(url: str, mappings: Mappings | None = None, conf: Settings | None = None) -> SchemaWaits:
    registry = SchemaRegistry(conf or settings(url))
    made = SchemaWaits(Decoder(1 << 20, registry, mappings or Mappings()), Metrics())
    _MADE.append(made)
    return made


async def test_avro_record_with_the_envelope_fields_is_read_as_the_envelope(
    standin: SchemaRegistryStandIn,
) -> None:
    obj = {
        "id": "o-1",
        "type": "order.placed",
        "tenant_id": "acme",
        "data": {"order": 42, "total": 9.5, "raw": b"\x00\x01"},
    }
    value = await serialize(standin.url, "avro", ORDER_AVRO, obj)
    assert value[0] == 0  # the Confluent wire format
    w = waits(standin.url)
    event = await w.parse(record(value))
    assert (event.id, event.type, event.tenant_id) == ("o-1", "order.placed", "acme")
    assert orjson.loads(event.data) == {"order": 42, "total": 9.5, "raw": "AAE="}
    # Cached: the second record of that schema asks the registry nothing.
    asked = len(standin.requests)
    await w.parse(record(value, offset=6))
    assert len(standin.requests) == asked


async def test_json_schema_record_is_decoded(standin: SchemaRegistryStandIn) -> None:
    obj = {"type": "order.placed", "data": {"order": 7}}
    value = await serialize(standin.url, "json", ORDER_JSON_SCHEMA, obj)
    event = await waits(standin.url).parse(record(value))
    assert event.type == "order.placed" and orjson.loads(event.data) == {"order": 7}


async def test_a_registry_under_a_path_as_apicurios_ccompat_api() -> None:
    registry = await SchemaRegistryStandIn(
        auth=("sr-user", "sr-pass-not-logged"), prefix="/apis/ccompat/v7"
    ).up()
    try:
        value = await serialize(registry.url, "json", ORDER_JSON_SCHEMA, {"type": "t", "data": {}})
        assert (await waits(registry.url).parse(record(value))).type == "t"
        assert registry.requests[-1].startswith("GET /apis/ccompat/v7/schemas/ids/")
    finally:
        await registry.down()


async def test_unknown_schema_id_is_rejected(standin: SchemaRegistryStandIn) -> None:
    value = b"\x00" + (4242).to_bytes(4, "big") + b"\x02\x04"
    with pytest.raises(RejectedEvent) as info:
        await waits(standin.url).parse(record(value))
    assert info.value.reason.startswith("unknown_schema: schema id 4242")


async def test_protobuf_is_rejected_with_a_clear_reason(standin: SchemaRegistryStandIn) -> None:
    schema_id = standin.register('syntax = "proto3"; message M { string a = 1; }', "PROTOBUF")
    value = b"\x00" + schema_id.to_bytes(4, "big") + b"\x00\x0a\x01a"
    with pytest.raises(RejectedEvent) as info:
        await waits(standin.url).parse(record(value))
    assert info.value.reason.startswith("unsupported_schema:") and "Protobuf" in info.value.reason


async def test_a_registry_that_is_away_holds_the_record_and_rejects_nothing(
    standin: SchemaRegistryStandIn,
) -> None:
    obj = {"id": "o-2", "type": "order.placed", "data": {"order": 1, "total": 1.0, "raw": b""}}
    value = await serialize(standin.url, "avro", ORDER_AVRO, obj)
    await standin.down()
    w = waits(standin.url)
    with pytest.raises(SchemaPending):
        await w.parse(record(value))
    assert w.unreachable_since is not None
    assert w._metrics.registry_errors._value.get() == 1
    await standin.up()
    assert (await w.parse(record(value))).id == "o-2"
    assert w.unreachable_since is None


async def test_wrong_credentials_wait_too_and_never_show_the_password(
    standin: SchemaRegistryStandIn,
) -> None:
    value = await serialize(standin.url, "json", ORDER_JSON_SCHEMA, {"type": "t", "data": {}})
    bad = Settings(
        schema_registry_url=standin.url,
        schema_registry_username="sr-user",
        schema_registry_password="wrong-password-xyz",  # type: ignore[arg-type]
    )
    w = waits(standin.url, conf=bad)
    with pytest.raises(SchemaPending):
        await w.parse(record(value))
    assert "wrong-password-xyz" not in repr(bad)


async def test_wire_format_without_a_registry_says_which_setting(
    standin: SchemaRegistryStandIn,
) -> None:
    value = await serialize(standin.url, "json", ORDER_JSON_SCHEMA, {"type": "t", "data": {}})
    with pytest.raises(RejectedEvent) as info:
        Decoder(1 << 20, None, Mappings()).parse(record(value))
    assert "WEBHOOK_STREAM_SCHEMA_REGISTRY_URL" in info.value.reason


async def test_a_record_without_type_or_mapping_is_rejected(
    standin: SchemaRegistryStandIn,
) -> None:
    value = await serialize(
        standin.url, "json", ORDER_JSON_SCHEMA, {"type": "x", "data": {}}, topic="events.a"
    )
    schema_id = standin.register('{"type": "object"}', "JSON")
    other = b"\x00" + schema_id.to_bytes(4, "big") + b'{"order": 1}'
    assert value
    with pytest.raises(RejectedEvent) as info:
        await waits(standin.url).parse(record(other))
    assert info.value.reason.startswith("unmapped_record:")


async def test_debezium_change_event_is_mapped_to_table_dot_op(
    standin: SchemaRegistryStandIn, tmp_path: Path
) -> None:
    path = tmp_path / "mappings.json"
    path.write_text(json.dumps(DEBEZIUM_MAPPING))
    change = {
        "op": "u",
        "ts_ms": 1_795_428_000_000,
        "source": {"table": "customers", "lsn": 33},
        "after": {"id": "1004", "email": "anne@example.com"},
    }
    topic = "events.dbz.inventory.customers"
    value = await serialize(standin.url, "avro", DEBEZIUM_AVRO, change, topic=topic)
    rec = record(value, topic=topic, headers=[("tenant", b"acme")], key=b'{"id": 1004}')
    event = await waits(standin.url, load_mappings(str(path))).parse(rec)
    assert event.type == "customers.u"
    assert event.id == f"{topic}:33"
    assert event.tenant_id == "acme"
    assert event.occurred_at == "2026-11-23T10:00:00.000Z"
    assert orjson.loads(event.data) == {"id": "1004", "email": "anne@example.com"}


def test_plain_json_record_is_mapped_and_a_null_type_names_the_expression(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mappings.json"
    mapping = {"topics": r"^events\.shop$", "type": "value.kind", "id": "key"}
    path.write_text(json.dumps({"mappings": [mapping]}))
    decoder = Decoder(1 << 20, None, load_mappings(str(path)))
    event = decoder.parse(record(b'{"kind": "OrderPlaced", "n": 1}', "events.shop", key=b"k-9"))
    assert (event.type, event.id, orjson.loads(event.data)) == (
        "OrderPlaced",
        "k-9",
        {"kind": "OrderPlaced", "n": 1},
    )
    with pytest.raises(RejectedEvent) as info:
        decoder.parse(record(b'{"n": 1}', "events.shop"))
    assert info.value.reason == (
        "missing_type: mapping for '^events\\\\.shop$': type expression 'value.kind' yielded null"
    )
    # Other topics keep the envelope.
    assert decoder.parse(record(b'{"type": "a.b", "data": 1}', "events.other")).type == "a.b"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"mappings": [{"topics": "^x", "type": "a.["}]}, "mappings[0].type: not a JMESPath"),
        ({"mappings": [{"topics": "^x"}]}, "mappings[0].type: an expression is required"),
        ({"mappings": [{"topics": "(", "type": "a"}]}, "mappings[0].topics"),
        ({"mappings": [{"topics": "^x", "type": "a", "kind": "b"}]}, "unknown field(s) kind"),
        ([], 'needs {"mappings": [...]}'),
    ],
)
def test_a_bad_mappings_file_names_what_is_wrong(tmp_path: Path, doc: Any, message: str) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as info:
        load_mappings(str(path))
    assert message in str(info.value) and "WEBHOOK_STREAM_EVENT_MAPPINGS" in str(info.value)


def test_registry_settings_are_checked() -> None:
    for bad in ("https://u:p@sr.example", "sr.example:8081", "https://"):
        with pytest.raises(ConfigError, match="SCHEMA_REGISTRY_URL: http"):
            Settings(schema_registry_url=bad).validate()
    with pytest.raises(ConfigError, match="set both"):
        Settings(schema_registry_url="https://sr.example", schema_registry_username="u").validate()
    env = {
        "WEBHOOK_STREAM_SCHEMA_REGISTRY_URL": "https://sr.example:8081",
        "WEBHOOK_STREAM_SCHEMA_REGISTRY_USERNAME": "u",
        "WEBHOOK_STREAM_SCHEMA_REGISTRY_PASSWORD": "secret-pw",
    }
    assert "secret-pw" not in repr(Settings.from_env(env))
    assert Settings.from_env({"WEBHOOK_STREAM_COMPRESSION": "LZ4"}).compression == "lz4"
    assert Settings().compression == "zstd"
    with pytest.raises(ConfigError, match="COMPRESSION: 'brotli' is not one of"):
        Settings.from_env({"WEBHOOK_STREAM_COMPRESSION": "brotli"})


class _Consumer:
    """The four calls :class:`SchemaWaits` makes on an aiokafka consumer, recorded."""

    def __init__(self, owned: set[Any]) -> None:
        self.owned = owned
        self.calls: list[tuple[str, Any, Any]] = []

    def assignment(self) -> set[Any]:
        return self.owned

    def seek(self, tp: Any, offset: int) -> None:
        self.calls.append(("seek", tp, offset))

    def pause(self, *tps: Any) -> None:
        self.calls.extend(("pause", tp, None) for tp in tps)

    def resume(self, *tps: Any) -> None:
        self.calls.extend(("resume", tp, None) for tp in tps)


async def test_held_partitions_resume_in_place_once_the_registry_answers(
    standin: SchemaRegistryStandIn,
) -> None:
    obj = {"id": "o-3", "type": "order.placed", "data": {"order": 3, "total": 1.0, "raw": b""}}
    value = await serialize(standin.url, "avro", ORDER_AVRO, obj)
    schema_id = int.from_bytes(value[1:5], "big")
    await standin.down()
    w = waits(standin.url)
    a, b, gone = (TopicPartition(TOPIC, p) for p in (0, 1, 2))
    consumer = _Consumer({a, b})
    for tp, offset in ((a, 7), (b, 3), (gone, 9)):
        with pytest.raises(SchemaPending):
            await w.parse(record(value, offset=offset))
        w.hold(consumer, tp, offset, schema_id)  # type: ignore[arg-type]
    assert w.waiting() == 2  # the revoked partition is its next owner's
    assert ("seek", a, 7) in consumer.calls and ("pause", b, None) in consumer.calls
    assert w._metrics.registry_waiting._value.get() == 2
    consumer.owned = {a}  # b is revoked meanwhile
    await standin.up()
    await eventually(lambda: w.waiting() == 0, timeout=2 * schema_waits.BACKOFF_MAX + 5)
    assert [c for c in consumer.calls if c[0] == "resume"] == [("resume", a, None)]
    assert (await w.parse(record(value, offset=7))).id == "o-3"


async def test_an_https_registry_is_trusted_through_the_ca_file(tmp_path: Path) -> None:
    """``SCHEMA_REGISTRY_CA_FILE`` is the CA trusted; with another, the registry counts as
    away (the record waits), never as the record's fault."""
    pki, other = make_pki(tmp_path / "pki"), make_pki(tmp_path / "other", name="other")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(pki.cert, pki.key)
    registry = await SchemaRegistryStandIn(auth=("sr-user", "sr-pass-not-logged"), tls=server).up()
    try:
        schema_id = registry.register(ORDER_JSON_SCHEMA, "JSON")
        value = b"\x00" + schema_id.to_bytes(4, "big") + b'{"type": "t.x", "data": {"n": 1}}'
        for cafile, trusted in ((pki.ca, True), (other.ca, False)):
            conf = settings(registry.url, schema_registry_ca_file=str(cafile))
            w = waits(registry.url, conf=conf)
            if trusted:
                assert (await w.parse(record(value))).type == "t.x"
            else:
                with pytest.raises(SchemaPending):
                    await w.parse(record(value))
                assert w.unreachable_since is not None
    finally:
        await registry.down()
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"SCHEMA_REGISTRY_CA_FILE: .*not a PEM CA bundle"):
        SchemaRegistry(settings("https://127.0.0.1:1", schema_registry_ca_file=str(bad)))
