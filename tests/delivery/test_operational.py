"""The deciding functions of operational events (pure): which facts, which ids, no loop."""

from __future__ import annotations

import re
from typing import Any

import orjson

from webhook_stream.core.operational import (
    OPERATIONAL,
    OperationalEvent,
    for_operator,
    input_pattern,
    not_to_itself,
)
from webhook_stream.core.records import Delivery, Event, SourceRef, delivery_id_for
from webhook_stream.core.schemas import validation_errors
from webhook_stream.core.settings import Settings
from webhook_stream.delivery.operational import attempt_facts
from webhook_stream.delivery.policy import Action, Decision
from webhook_stream.subscriptions.model import Subscription
from webhook_stream.subscriptions.operational import endpoint_fact

AT = "2026-12-06T08:00:00.000Z"
FAILING_AFTER = Settings().operational_failing_after  # the production default


def delivery(attempts: int, topic: str = "events.orders", **changes: Any) -> Delivery:
    ev = Event("evt_1", "order.created", AT, "{}", SourceRef(topic, 0, 7), tenant_id="acme")
    return Delivery(
        delivery_id=delivery_id_for(ev.id, "ep_1"),
        endpoint_id="ep_1",
        tenant_id="acme",
        event=ev,
        created_at=AT,
        attempts=attempts,
        last_status_code=503,
        last_error="HTTP 503",
        **changes,
    )


RETRYING = Decision(Action.RETRYING, step=5.0)
EXHAUSTED = Decision(Action.FAILED, reason="exhausted")
SUCCEEDED = Decision(Action.SUCCEEDED)


def kinds(events: list[OperationalEvent]) -> list[str]:
    return [e.type.rsplit(".", 1)[1] for e in events]


def test_the_default_is_documented_and_svix_like() -> None:
    assert FAILING_AFTER == 4


def test_failing_is_announced_once_at_the_threshold() -> None:
    per_attempt = [
        kinds(attempt_facts(delivery(n), RETRYING, FAILING_AFTER, AT)) for n in range(1, 9)
    ]
    assert per_attempt == [[], [], [], ["failing"], [], [], [], []]


def test_exhausted_when_dead_lettered_and_failing_with_it_at_the_threshold() -> None:
    assert kinds(attempt_facts(delivery(2), EXHAUSTED, 4, AT)) == ["exhausted"]
    assert kinds(attempt_facts(delivery(4), EXHAUSTED, 4, AT)) == ["failing", "exhausted"]
    (event,) = attempt_facts(delivery(6), EXHAUSTED, 4, AT)
    assert event.envelope()["data"]["reason"] == "exhausted"


def test_recovered_only_after_failing_was_announced() -> None:
    assert attempt_facts(delivery(1), SUCCEEDED, 4, AT) == []
    assert attempt_facts(delivery(4), SUCCEEDED, 4, AT) == []  # 3 failures: never failing
    (event,) = attempt_facts(delivery(5), SUCCEEDED, 4, AT)
    assert event.type == "webhook.message.attempt.recovered"


def test_zero_turns_failing_and_recovered_off() -> None:
    assert attempt_facts(delivery(4), RETRYING, 0, AT) == []
    assert attempt_facts(delivery(9), SUCCEEDED, 0, AT) == []


def test_ids_are_stable_per_fact_and_distinct_between_facts() -> None:
    a = attempt_facts(delivery(4), RETRYING, 4, AT)[0]
    again = attempt_facts(delivery(4), RETRYING, 4, "2027-01-01T00:00:00.000Z")[0]
    assert a.id == again.id and re.fullmatch(r"op_[0-9a-f]{32}", a.id)
    exhausted = attempt_facts(delivery(6), EXHAUSTED, 4, AT)[0]
    assert exhausted.id != a.id


def test_no_cascade_from_deliveries_of_operational_events() -> None:
    for decision, n in ((RETRYING, 4), (EXHAUSTED, 6), (SUCCEEDED, 6)):
        assert attempt_facts(delivery(n, topic=OPERATIONAL), decision, 4, AT) == []


def test_the_facts_to_act_on_and_the_schema() -> None:
    (event,) = attempt_facts(delivery(4, incarnation="inc_1"), RETRYING, 4, AT)
    env = orjson.loads(event.encode())
    assert env["tenant_id"] == "acme" and env["occurred_at"] == AT
    data = env["data"]
    assert data["endpoint_id"] == "ep_1" and data["endpoint_path"] == "/subscriptions/ep_1"
    assert data["attempt_count"] == 4 and data["last_status"] == 503
    assert data["last_error"] == "HTTP 503" and data["delivery_id"].startswith("msg_")
    assert validation_errors("operational_event", env) == []


def sub(**changes: Any) -> Subscription:
    fields: dict[str, Any] = {
        "id": "ep_1",
        "url": "https://example.com/h",
        "event_types": ("order.*",),
        "secret": "whsec_" + "A" * 32,
        "tenant_id": "acme",
        "version": 3,
        "incarnation": "inc_1",
    }
    return Subscription(**{**fields, **changes})


def test_endpoint_facts_name_the_write() -> None:
    on, off = sub(), sub(disabled=True)

    def kind(op: str, current: Any, new: Any, body: Any = None) -> str:
        fact = endpoint_fact(op, current, new, 4, body, AT)
        assert fact is not None
        assert validation_errors("operational_event", fact.envelope()) == []
        return fact.type.rsplit(".", 1)[1]

    assert kind("create", None, on) == "created"
    assert kind("patch", on, on) == "updated"
    assert kind("rotate", on, on) == "updated"
    assert kind("patch", on, off) == "disabled"
    assert kind("patch", off, on) == "enabled"
    assert kind("delete", on, None) == "deleted"
    auto = endpoint_fact("disable", on, off, 4, {"reason": "gone", "consecutive_failures": 1}, AT)
    assert auto is not None and auto.type == "webhook.endpoint.disabled"
    assert auto.envelope()["data"]["reason"] == "gone"
    manual = endpoint_fact("patch", on, off, 4, None, AT)
    assert manual is not None and manual.envelope()["data"]["reason"] == "manual"
    assert endpoint_fact("delete", None, None, 4, None, AT) is None


def test_endpoint_fact_ids_follow_the_version() -> None:
    first = endpoint_fact("patch", sub(), sub(), 4, None, AT)
    again = endpoint_fact("patch", sub(), sub(), 4, None, "2027-01-01T00:00:00.000Z")
    later = endpoint_fact("patch", sub(), sub(), 5, None, AT)
    assert first is not None and again is not None and later is not None
    assert first.id == again.id != later.id


def test_the_fan_out_reads_the_topic_and_never_tells_an_endpoint_about_itself() -> None:
    pattern = re.compile(input_pattern(Settings().events_pattern))
    assert pattern.match("webhooks.operational") and pattern.match("events.orders")
    assert not pattern.match("webhooks.deliveries") and not pattern.match("webhooks.operational2")
    op = Event(
        "op_1",
        "webhook.endpoint.disabled",
        AT,
        orjson.dumps({"endpoint_id": "ep_1"}).decode(),
        SourceRef(OPERATIONAL, 0, 1),
        tenant_id="acme",
    )
    to_self, to_other = delivery(0), delivery(0)
    to_other.endpoint_id = "ep_ops"
    assert not_to_itself(op, [to_self, to_other]) == [to_other]
    plain = delivery(0).event
    assert not_to_itself(plain, [to_self]) == [to_self]  # an events.* event is not about one


def test_the_operator_gets_a_tenantless_copy_of_operational_events_only() -> None:
    op = Event(
        "op_1", "webhook.endpoint.disabled", AT, "{}", SourceRef(OPERATIONAL, 0, 1), tenant_id="a"
    )
    copy = for_operator(op, OPERATIONAL)
    assert copy is not None and copy.tenant_id is None
    assert (copy.id, copy.type, copy.data) == (op.id, op.type, op.data)
    assert op.tenant_id == "a"  # the tenant's own event is untouched
    # Not for an events.* record (a producer naming webhook.* types crosses no tenant).
    assert for_operator(op, "events.orders") is None
    assert for_operator(copy, OPERATIONAL) is None  # already the operator's
