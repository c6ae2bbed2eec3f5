"""The document's ``webhooks:`` section: one entry per operational type; real payloads fit."""

from __future__ import annotations

from typing import Any

import jsonschema
import orjson
from openapi_spec_validator import validate

from webhook_stream.api.openapi.document import build_document
from webhook_stream.core.operational import TYPES
from webhook_stream.core.records import Delivery, Event, SourceRef
from webhook_stream.delivery.operational import attempt_facts
from webhook_stream.delivery.policy import Action, Decision
from webhook_stream.subscriptions.model import Subscription
from webhook_stream.subscriptions.operational import endpoint_fact

AT = "2026-12-06T08:00:00.000Z"


def bodies() -> list[dict[str, Any]]:
    """What a subscriber receives for each type, built by the deciding functions."""
    kw: dict[str, Any] = {"id": "ep", "url": "https://e.com/h", "event_types": ("a",)}
    on = Subscription(**kw, secret="s", tenant_id="acme", version=3, incarnation="inc_1")
    off = Subscription(**kw, secret="s", tenant_id="acme", version=3, disabled=True)
    facts = [
        endpoint_fact("create", None, on, 1, None, AT),
        endpoint_fact("patch", on, on, 2, None, AT),
        endpoint_fact("delete", on, None, 3, None, AT),
        endpoint_fact("disable", on, off, 4, {"reason": "gone", "consecutive_failures": 1}, AT),
        endpoint_fact("patch", off, on, 5, None, AT),
    ]
    ev = Event("e1", "order.created", AT, "{}", SourceRef("events.o", 0, 1), tenant_id="acme")

    def d(n: int, status: int | None) -> Delivery:
        return Delivery("msg_1", "ep", "acme", ev, AT, attempts=n, last_status_code=status)

    facts += attempt_facts(d(4, 503), Decision(Action.RETRYING, step=5), 4, AT)
    facts += attempt_facts(d(9, None), Decision(Action.FAILED, reason="exhausted"), 4, AT)
    facts += attempt_facts(d(6, 200), Decision(Action.SUCCEEDED), 4, AT)
    out = []
    for fact in facts:
        assert fact is not None
        env = fact.envelope()
        # The receiver's body, as Event.webhook_body() writes it.
        out.append({"id": env["id"], "type": env["type"], "timestamp": AT, "data": env["data"]})
    return out


def test_every_operational_type_is_a_webhook_with_a_schema_its_payload_fits() -> None:
    doc = build_document()
    validate(doc)  # OpenAPI 3.1
    assert set(doc["webhooks"]) == set(TYPES)
    schemas = doc["components"]["schemas"]
    got = bodies()
    assert {b["type"] for b in got} == set(TYPES)
    for body in got:
        ref = doc["webhooks"][body["type"]]["post"]["requestBody"]["content"]
        name = ref["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        schema = orjson.loads(orjson.dumps(schemas[name]))
        data_ref = schema["properties"]["data"].pop("$ref").rsplit("/", 1)[1]
        schema["properties"]["data"] = schemas[data_ref]
        jsonschema.Draft202012Validator(schema).validate(body)
        other = "EndpointFact" if data_ref == "MessageAttemptFact" else "MessageAttemptFact"
        assert not jsonschema.Draft202012Validator(schemas[other]).is_valid(body["data"])
