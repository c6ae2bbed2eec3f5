"""Every accepted input form reaches the endpoint; every bad input lands on webhooks.rejected."""

from __future__ import annotations

import base64

import orjson

from tests.support import Kafka, Receiver, Worker, event, json_of, uid
from webhook_stream.core.schemas import conforms, encode_single_object


async def test_each_input_form_is_delivered(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    etype = uid("form") + ".created"
    await worker.create_subscription(
        id=uid("ep"), url=receiver.url("/forms"), event_types=[etype], tenant_id="acme"
    )
    await kafka.send(
        "events.forms", event(etype, {"form": "envelope"}, id="e-envelope", tenant_id="acme")
    )
    await kafka.send(
        "events.forms",
        {
            "specversion": "1.0",
            "id": "e-structured",
            "type": etype,
            "source": "/shop",
            "time": "2026-11-23T10:00:00Z",
            "tenantid": "acme",
            "data": {"form": "structured"},
        },
    )
    await kafka.send(
        "events.forms",
        orjson.dumps({"form": "binary"}),
        headers=[
            ("ce_specversion", b"1.0"),
            ("ce_id", b"e-binary"),
            ("ce_type", etype.encode()),
            ("ce_source", b"/shop"),
            ("ce_tenantid", b"acme"),
            ("content-type", b"application/json"),
        ],
    )
    avro = encode_single_object(
        "event_envelope",
        {
            "id": "e-avro",
            "type": etype,
            "tenant_id": "acme",
            "occurred_at": None,
            "data": orjson.dumps({"form": "avro"}).decode(),
        },
    )
    await kafka.send("events.forms", avro)
    got = await receiver.wait_count("/forms", 4)
    by_id = {r.json["id"]: r.json for r in got}
    assert set(by_id) == {"e-envelope", "e-structured", "e-binary", "e-avro"}
    for eid, body in by_id.items():
        assert body["type"] == etype
        assert body["data"] == {"form": eid.removeprefix("e-")}
    assert by_id["e-structured"]["timestamp"] == "2026-11-23T10:00:00.000Z"


async def test_bad_inputs_land_on_rejected_and_worker_keeps_going(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    etype = uid("after") + ".ok"
    await worker.create_subscription(id=uid("ep"), url=receiver.url("/after"), event_types=[etype])
    marker = uid("bad")
    bad = {
        "invalid_json": b"{not json " + marker.encode(),
        "missing_type": orjson.dumps({"id": marker, "data": {}}),
        "unknown_avro_fingerprint": b"\xc3\x01" + b"\x00" * 8 + marker.encode(),
        "too_large": orjson.dumps({"type": "x.y", "data": {"pad": "x" * 30000, "m": marker}}),
    }
    sent = {}
    for reason, value in bad.items():
        md = await kafka.send("events.badinput", value, key=marker)
        sent[reason] = (md.partition, md.offset, value)
    await kafka.send("events.badinput", event(etype, id=uid("e")), key=marker)
    await receiver.wait_count("/after", 1)  # the worker went past the bad records

    def ours(r: object) -> bool:
        return (
            json_of(r)["source"]["topic"] == "events.badinput"
            and base64.b64decode(json_of(r)["key_b64"]).decode() == marker
        )

    records = [json_of(r) for r in await kafka.wait_records("webhooks.rejected", ours, count=4)]
    for reason, (partition, offset, value) in sent.items():
        (rec,) = [
            r
            for r in records
            if r["source"]["offset"] == offset and r["source"]["partition"] == partition
        ]
        assert rec["reason"].startswith(reason), rec["reason"]
        assert base64.b64decode(rec["value_b64"]) == value
        assert conforms("rejected", rec)
