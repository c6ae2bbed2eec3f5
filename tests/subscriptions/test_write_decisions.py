"""What a write request comes to (:func:`decide_write`), decided without Kafka or a table."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from webhook_stream.core.errors import InvalidSubscription, WriteRefused
from webhook_stream.subscriptions.model import Subscription, generate_secret
from webhook_stream.subscriptions.write_decisions import Answer, Known, Write, decide_write
from webhook_stream.subscriptions.write_requests import WriteRequest

NOW, NOW_S = "2026-12-06T07:00:00Z", 1_796_540_400.0
CURRENT = Subscription(
    id="ep_1",
    url="https://receiver.example/hook",
    event_types=("order.*",),
    secret=generate_secret(),
    tenant_id="acme",
    headers=(("x-api-key", "s3cret-value"),),
    version=4,
    incarnation="inc_a",
)


def known(current: Subscription | None = CURRENT, last: str | None = None) -> Known:
    return Known(current, last, 5, NOW, NOW_S, "inc_new", False, 3600.0)


def request(op: str, **kw: Any) -> WriteRequest:
    return WriteRequest("ep_1", op, request_id="req_1", **kw)


def test_create_gives_the_next_version_times_and_a_new_incarnation() -> None:
    body = {"url": "https://receiver.example/hook", "event_types": ["order.*"], "tenant_id": "acme"}
    decision = decide_write(request("create"), body, known(current=None))
    assert isinstance(decision, Write) and decision.status == 201 and decision.new is not None
    new = decision.new
    assert (new.id, new.version, new.incarnation) == ("ep_1", 5, "inc_new")
    assert new.created_at == new.updated_at == NOW


def test_refusals_say_their_status_and_field() -> None:
    def refused(req: WriteRequest, body: Any = None, k: Known | None = None) -> tuple[int, Any]:
        with pytest.raises(WriteRefused) as caught:
            decide_write(req, body, k or known())
        return caught.value.status, caught.value.field

    body = {"url": "https://receiver.example/hook", "event_types": ["order.*"], "tenant_id": "acme"}
    assert refused(request("create"), body) == (409, "id")
    assert refused(request("create", tenant="other"), body, known(current=None)) == (
        403,
        "tenant_id",
    )
    assert refused(request("patch"), {}, known(current=None)) == (404, None)
    assert refused(request("patch", tenant="other"), {}) == (404, None)  # not its endpoint
    assert refused(request("delete", if_version=3)) == (412, "If-Match")
    assert refused(request("patch"), {"tenant_id": "other"}) == (400, "tenant_id")
    with pytest.raises(InvalidSubscription):
        decide_write(request("patch"), {"url": "ftp://x"}, known())


def test_a_request_decided_before_is_answered_the_same_without_a_write() -> None:
    assert decide_write(request("patch"), {}, known(last="req_1")) == Answer(200, 4)
    assert decide_write(request("create"), {}, known(last="req_1")) == Answer(201, 4)


def test_patch_keeps_a_masked_header_value_and_moves_the_version() -> None:
    decision = decide_write(
        request("patch", if_version=4),
        {"description": "new", "headers": {"x-api-key": "****alue"}},
        known(),
    )
    assert isinstance(decision, Write) and decision.new is not None
    assert decision.new.description == "new" and decision.new.version == 5
    assert dict(decision.new.headers) == {"x-api-key": "s3cret-value"}
    assert decision.new.updated_at == NOW and decision.new.incarnation == "inc_a"


def test_rotate_keeps_the_old_secret_for_the_grace() -> None:
    new_secret = generate_secret()
    decision = decide_write(request("rotate"), {"grace_s": 60, "secret": new_secret}, known())
    assert isinstance(decision, Write) and decision.new is not None
    assert decision.new.secret == new_secret
    assert decision.new.previous_secrets == ((CURRENT.secret, NOW_S + 60),)


def test_disable_is_a_compare_and_set_and_happens_once() -> None:
    decision = decide_write(request("disable", if_version=4), {"reason": "gone"}, known())
    assert isinstance(decision, Write) and decision.new is not None and decision.new.disabled
    with pytest.raises(WriteRefused):  # the user changed it since: their version wins
        decide_write(request("disable", if_version=3), {}, known())
    off = replace(CURRENT, disabled=True)
    assert decide_write(request("disable", if_version=4), {}, known(off)) == Answer(200, 4)


def test_delete_is_a_tombstone() -> None:
    assert decide_write(request("delete", if_version=4), None, known()) == Write(None, 200)
