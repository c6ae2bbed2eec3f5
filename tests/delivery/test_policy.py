"""The pure decision after an attempt (:func:`decide`), row by row, and the transport-error
vocabulary it reads."""

from __future__ import annotations

import pytest

from webhook_stream.delivery.policy import Action, Decision, Schedule, decide
from webhook_stream.http.client import HttpResult
from webhook_stream.http.errors import TransportError

SCHEDULE = Schedule.of((5.0, 30.0, 120.0), None)  # 4 attempts: the first and three retries


def result(status: int | None, error: str | None = None) -> HttpResult:
    return HttpResult(status, b"", None if error is None else TransportError(error), None, 0.01)


def test_a_2xx_succeeds_at_any_attempt() -> None:
    for attempt in (1, 4, 9):
        assert decide(result(204), attempt, SCHEDULE) == Decision(Action.SUCCEEDED)


def test_retriable_results_walk_the_schedule_then_are_exhausted() -> None:
    for outcome in (result(503), result(429), result(408), result(None, "timeout")):
        steps = [decide(outcome, attempt, SCHEDULE) for attempt in (1, 2, 3)]
        assert [d.action for d in steps] == [Action.RETRYING] * 3
        assert [d.step for d in steps] == [5.0, 30.0, 120.0]
        assert decide(outcome, 4, SCHEDULE) == Decision(Action.FAILED, reason="exhausted")


def test_max_attempts_beyond_the_schedule_repeats_its_last_step() -> None:
    longer = Schedule.of((5.0, 30.0), 5)
    assert [decide(result(500), a, longer).step for a in (1, 2, 3, 4)] == [5.0, 30.0, 30.0, 30.0]
    assert decide(result(500), 5, longer).reason == "exhausted"
    shorter = Schedule.of((5.0, 30.0, 120.0), 1)
    assert decide(result(500), 1, shorter).reason == "exhausted"


def test_fatal_statuses_and_refused_targets_say_why() -> None:
    for status in (301, 400, 404, 410, 422):
        assert decide(result(status), 1, SCHEDULE) == Decision(Action.FAILED, reason="fatal_status")
    assert decide(result(None, "forbidden_address"), 1, SCHEDULE).reason == "forbidden_address"
    for error in ("invalid_url", "invalid_header", "insecure_url"):
        assert decide(result(None, error), 1, SCHEDULE).reason == "invalid_target"


def test_an_extra_retry_code_retries() -> None:
    with_409 = Schedule.of((5.0,), None, frozenset({409}))
    assert decide(result(409), 1, with_409).action is Action.RETRYING
    assert decide(result(409), 1, SCHEDULE).action is Action.FAILED


def test_only_the_egress_proxy_is_not_the_receivers_fault() -> None:
    for error in ("proxy_connect", "proxy_auth", "proxy_error"):
        decision = decide(result(None, error), 1, SCHEDULE)
        assert decision.action is Action.RETRYING and not decision.blames_receiver
        assert decide(result(None, error), 4, SCHEDULE).blames_receiver is False
    for error in ("timeout", "connect", "dns", "tls", "forbidden_address"):
        assert decide(result(None, error), 1, SCHEDULE).blames_receiver


@pytest.mark.parametrize("error", list(TransportError))
def test_every_transport_error_is_retriable_unless_we_refused_to_send(
    error: TransportError,
) -> None:
    refused = {"insecure_url", "invalid_url", "invalid_header", "forbidden_address"}
    assert error.retriable is (error.value not in refused)
    assert error.blames_receiver is (not error.value.startswith("proxy_"))
    assert error == error.value  # records and logs keep the plain name
