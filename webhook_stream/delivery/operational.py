"""The message facts of operational events, decided by the owner of the delivery partition.

After each attempt the dispatcher asks :func:`attempt_facts` (pure) what the attempt
means for ``webhooks.operational``: ``failing`` when one message has failed
``operational_failing_after`` times in a row, ``exhausted`` when it is dead-lettered after
its attempts, ``recovered`` when a message that had been announced failing succeeds. The
attempt count travels in the delivery record, so the decision needs no state: the next
owner after a kill -9 decides the same for the same attempt, with the same event id.

Deliveries *of* operational events produce none (no cascade): an operational endpoint
that fails is still retried, dead-lettered and auto-disabled like any endpoint, and its
``disabled`` event (from the write owner) goes to the tenant's other subscriptions.
"""

from __future__ import annotations

import asyncio
from typing import Any

from webhook_stream.core.operational import (
    ATTEMPT_EXHAUSTED,
    ATTEMPT_FAILING,
    ATTEMPT_RECOVERED,
    OPERATIONAL,
    OperationalEvent,
    operational_id,
    send_operational,
)
from webhook_stream.core.records import Delivery
from webhook_stream.delivery.policy import Action, Decision

__all__ = ["OperationalFacts", "attempt_facts"]


def attempt_facts(
    delivery: Delivery, decision: Decision, failing_after: int, at: str
) -> list[OperationalEvent]:
    """The operational events one attempt of ``delivery`` (already counted in
    ``delivery.attempts``, its outcome in ``delivery.last_*``) makes true."""
    if delivery.event.source.topic == OPERATIONAL:
        return []  # no cascade
    n = delivery.attempts
    kinds: list[str] = []
    announced = failing_after > 0 and n > failing_after  # failing was announced before
    if decision.action is Action.SUCCEEDED:
        if announced:
            kinds.append(ATTEMPT_RECOVERED)
    else:
        if failing_after > 0 and n == failing_after:
            kinds.append(ATTEMPT_FAILING)
        if decision.action is Action.FAILED:
            kinds.append(ATTEMPT_EXHAUSTED)
    if not kinds:
        return []  # most attempts: no facts built
    facts: dict[str, Any] = {
        "delivery_id": delivery.delivery_id,
        "event_id": delivery.event.id,
        "event_type": delivery.event.type,
        "attempt_count": n,
        "last_status": delivery.last_status_code,
        "last_error": delivery.last_error,
        "first_attempt_at": delivery.first_attempt_at,
        "incarnation": delivery.incarnation,
    }
    if decision.action is Action.FAILED:
        facts["reason"] = decision.reason
    return [
        OperationalEvent(
            id=operational_id(delivery.endpoint_id, delivery.delivery_id, kind),
            type=kind,
            tenant_id=delivery.tenant_id,
            occurred_at=at,
            endpoint_id=delivery.endpoint_id,
            data=facts,
        )
        for kind in kinds
    ]


class OperationalFacts:
    """The dispatcher's shell: decide, then queue the events with the attempt's sends."""

    def __init__(self, producer: Any, failing_after: int) -> None:
        self._producer = producer
        self._failing_after = failing_after

    async def after_attempt(
        self, delivery: Delivery, decision: Decision, at: str
    ) -> list[asyncio.Future[Any]]:
        return [
            await send_operational(self._producer, event)
            for event in attempt_facts(delivery, decision, self._failing_after, at)
        ]
