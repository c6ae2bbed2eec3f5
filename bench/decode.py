"""Row 6g: decode cost per event for each input form, next to the plain JSON envelope.

In-process and standalone (no broker, no worker, no registry server): each form's records
are built once (the Schema Registry ones with the wire format confluent-kafka writes:
magic byte 0, 4-byte schema id, payload), the writer schemas are put in the decoder's
cache as a fetch would, and ``Decoder.parse`` (the fan-out's one call per input record)
is timed over them. The same Avro payloads are also read with ``fastavro`` (what
confluent-kafka's own deserializer uses) to measure it against ``avro-python3``, which
the worker uses; the worker switches only with the number.
"""

from __future__ import annotations

import io
import json
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import avro.io
import avro.schema
import fastavro
import orjson

from webhook_stream.core.schemas import encode_single_object
from webhook_stream.core.settings import Settings
from webhook_stream.ingest.mappings import Mappings, compile_mapping
from webhook_stream.ingest.registry import SchemaRegistry, parse_schema
from webhook_stream.ingest.sources import Decoder

from .report import Row

#: Records decoded per form (a bound on the loop whatever the per-record cost).
EVENTS = 5000

_ORDER = {
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
                    {"name": "customer", "type": "string"},
                    {"name": "total", "type": "double"},
                    {"name": "items", "type": {"type": "array", "items": "string"}},
                ],
            },
        },
    ],
}
_DEBEZIUM = {
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
                "fields": [{"name": "table", "type": "string"}, {"name": "lsn", "type": "long"}],
            },
        },
        {"name": "after", "type": ["null", {"type": "map", "values": "string"}]},
    ],
}


@dataclass
class _Rec:
    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int = 1_795_428_000_000


def _order(i: int) -> dict[str, Any]:
    return {
        "id": f"evt_{i}",
        "type": "order.placed",
        "tenant_id": "acme",
        "data": {"order": i, "customer": "c-42", "total": 99.5, "items": ["a", "b", "c"]},
    }


def _avro_bytes(schema: dict[str, Any], datum: Any) -> bytes:
    out = io.BytesIO()
    avro.io.DatumWriter(avro.schema.parse(json.dumps(schema))).write(
        datum, avro.io.BinaryEncoder(out)
    )
    return out.getvalue()


def _wire(schema_id: int, payload: bytes) -> bytes:
    return struct.pack(">bI", 0, schema_id) + payload


def _time(parse: Callable[[Any], Any], records: list[Any]) -> float:
    parse(records[0])  # warm
    t0 = time.perf_counter()
    for record in records:
        parse(record)
    return (time.perf_counter() - t0) / len(records) * 1e6


def decode_rows(events: int = EVENTS) -> tuple[list[Row], dict[str, float]]:
    """Microseconds per ``Decoder.parse`` of each form, and fastavro on the Avro payloads."""
    # The cache only: nothing is fetched (the URL is never called).
    registry = SchemaRegistry(Settings(schema_registry_url="http://127.0.0.1:9"))
    registry.remember(parse_schema(1, {"schema": json.dumps(_ORDER)}))
    registry.remember(parse_schema(2, {"schema": "{}", "schemaType": "JSON"}))
    registry.remember(parse_schema(3, {"schema": json.dumps(_DEBEZIUM)}))
    dbz = compile_mapping(
        {
            "topics": r"^events\.dbz\..+",
            "type": "join('.', [value.source.table, value.op])",
            "id": "join(':', [topic, to_string(value.source.lsn)])",
            "occurred_at": "value.ts_ms",
            "data": "value.after",
        },
        "bench",
    )
    mapping = Mappings([dbz])
    decoder = Decoder(1 << 20, registry, mapping)
    orders = [_order(i) for i in range(events)]
    avro_payloads = [_avro_bytes(_ORDER, o) for o in orders]
    change = {
        "op": "u",
        "ts_ms": 1_795_428_000_000,
        "source": {"table": "customers", "lsn": 1},
        "after": {"id": "1004", "email": "anne@example.com", "name": "Anne"},
    }
    forms: dict[str, list[Any]] = {
        "JSON envelope": [_Rec("events.b", 0, i, orjson.dumps(o)) for i, o in enumerate(orders)],
        "CloudEvents binary": [
            _Rec(
                "events.b",
                0,
                i,
                orjson.dumps(o["data"]),
                headers=(
                    ("ce_specversion", b"1.0"),
                    ("ce_id", o["id"].encode()),
                    ("ce_type", b"order.placed"),
                    ("ce_source", b"/shop"),
                    ("content-type", b"application/json"),
                ),
            )
            for i, o in enumerate(orders)
        ],
        "Avro single-object (own envelope)": [
            _Rec(
                "events.b",
                0,
                i,
                encode_single_object(
                    "event_envelope",
                    {**o, "occurred_at": None, "data": orjson.dumps(o["data"]).decode()},
                ),
            )
            for i, o in enumerate(orders)
        ],
        "Schema Registry Avro": [
            _Rec("events.b", 0, i, _wire(1, p)) for i, p in enumerate(avro_payloads)
        ],
        "Schema Registry JSON Schema": [
            _Rec("events.b", 0, i, _wire(2, orjson.dumps(o))) for i, o in enumerate(orders)
        ],
        "Debezium (registry Avro + JMESPath mapping)": [
            _Rec(
                "events.dbz.inventory.customers",
                0,
                i,
                _wire(
                    3,
                    _avro_bytes(_DEBEZIUM, {**change, "source": {"table": "customers", "lsn": i}}),
                ),
            )
            for i in range(events)
        ],
    }
    raw: dict[str, float] = {}
    rows: list[Row] = []
    base = 0.0
    for n, (name, records) in enumerate(forms.items()):
        us = _time(decoder.parse, records)
        raw[name] = us
        base = base or us
        rows.append(
            Row(
                f"6g.{n + 1}",
                f"decode: {name}",
                f"{us:,.1f} us/event",
                "",
                "in-process Decoder.parse" + ("" if n == 0 else f"; {us / base:.1f}x plain JSON"),
            )
        )
    parsed = fastavro.parse_schema(_ORDER)
    reader = avro.io.DatumReader(avro.schema.parse(json.dumps(_ORDER)))
    fast = _time(lambda p: fastavro.schemaless_reader(io.BytesIO(p), parsed), avro_payloads)
    slow = _time(lambda p: reader.read(avro.io.BinaryDecoder(io.BytesIO(p))), avro_payloads)
    raw["avro_python3_read_us"], raw["fastavro_read_us"] = slow, fast
    rows.append(
        Row(
            "6g.a",
            "Avro datum read: avro-python3 vs fastavro",
            f"{slow:,.1f} vs {fast:,.1f} us",
            "",
            f"the same {events:,} payloads; fastavro {slow / fast:.1f}x faster "
            "(the worker reads with avro-python3)",
        )
    )
    return rows, raw
