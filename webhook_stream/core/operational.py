"""Operational events: what happened to an endpoint, as an event on ``webhooks.operational``.

One record per fact, written by the owner of the fact (the subscription write owner for
``webhook.endpoint.*``, the owner of the endpoint's delivery partition for
``webhook.message.attempt.*``) before the offset of what caused it is committed. The id
is a hash of the fact itself, so a re-send after a crash carries the same id and
receivers deduplicate. The record is the JSON event envelope the ``events.*`` topics
carry (``schemas/operational_event.avsc``), keyed by endpoint id; the fan-out reads the
topic like any events topic (:func:`input_pattern`).
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from webhook_stream.core.records import Delivery, Event

__all__ = [
    "ATTEMPT_EXHAUSTED",
    "ATTEMPT_FAILING",
    "ATTEMPT_RECOVERED",
    "ENDPOINT_CREATED",
    "ENDPOINT_DELETED",
    "ENDPOINT_DISABLED",
    "ENDPOINT_ENABLED",
    "ENDPOINT_UPDATED",
    "OPERATIONAL",
    "TYPES",
    "OperationalEvent",
    "endpoint_path",
    "for_operator",
    "input_pattern",
    "not_to_itself",
    "operational_id",
    "send_operational",
]

OPERATIONAL = "webhooks.operational"

ENDPOINT_CREATED = "webhook.endpoint.created"
ENDPOINT_UPDATED = "webhook.endpoint.updated"
ENDPOINT_DELETED = "webhook.endpoint.deleted"
ENDPOINT_DISABLED = "webhook.endpoint.disabled"
ENDPOINT_ENABLED = "webhook.endpoint.enabled"
ATTEMPT_FAILING = "webhook.message.attempt.failing"
ATTEMPT_EXHAUSTED = "webhook.message.attempt.exhausted"
ATTEMPT_RECOVERED = "webhook.message.attempt.recovered"

TYPES = (
    ENDPOINT_CREATED,
    ENDPOINT_UPDATED,
    ENDPOINT_DELETED,
    ENDPOINT_DISABLED,
    ENDPOINT_ENABLED,
    ATTEMPT_FAILING,
    ATTEMPT_EXHAUSTED,
    ATTEMPT_RECOVERED,
)


def operational_id(*parts: object) -> str:
    """The event id of one fact: the same parts (a re-send) give the same id."""
    text = "\x00".join("" if p is None else str(p) for p in parts)
    return "op_" + hashlib.sha256(text.encode()).hexdigest()[:32]


def endpoint_path(endpoint_id: str) -> str:
    """The endpoint's API path (the console shows it at ``/ui/`` under the same id)."""
    return f"/subscriptions/{endpoint_id}"


def input_pattern(events_pattern: str) -> str:
    """The fan-out's subscription: the events topics and ``webhooks.operational``."""
    return f"(?:{events_pattern})|(?:^webhooks\\.operational$)"


@dataclass(frozen=True, slots=True)
class OperationalEvent:
    """One operational event: the envelope fields; ``data`` holds the facts to act on."""

    id: str
    type: str
    tenant_id: str | None
    occurred_at: str
    endpoint_id: str
    data: dict[str, Any] = field(default_factory=dict)

    def envelope(self) -> dict[str, Any]:
        # The tenant in data too: receivers get {id, type, timestamp, data}, not the envelope.
        body = {
            "endpoint_id": self.endpoint_id,
            "endpoint_path": endpoint_path(self.endpoint_id),
            "tenant_id": self.tenant_id,
        }
        return {
            "id": self.id,
            "type": self.type,
            "tenant_id": self.tenant_id,
            "occurred_at": self.occurred_at,
            "data": {**body, **self.data},
        }

    def encode(self) -> bytes:
        return orjson.dumps(self.envelope())


async def send_operational(producer: Any, event: OperationalEvent) -> asyncio.Future[Any]:
    """Queue ``event`` on ``webhooks.operational`` keyed by its endpoint; the ack future."""
    return await producer.send(OPERATIONAL, event.encode(), key=event.endpoint_id.encode())


def about(event: Event) -> str | None:
    """The endpoint an operational event is about (None for any other event)."""
    if event.source.topic != OPERATIONAL:
        return None
    try:
        data = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return None
    subject = data.get("endpoint_id") if isinstance(data, dict) else None
    return subject if isinstance(subject, str) else None


def for_operator(event: Event, topic: str) -> Event | None:
    """The copy of a tenant's operational event for the operator's subscriptions (those
    without a tenant): the admin may subscribe across tenants, a tenant only to its own.
    None for any other event, and for an event already without a tenant."""
    if topic != OPERATIONAL or event.tenant_id is None:
        return None
    return replace(event, tenant_id=None)


def not_to_itself(event: Event, deliveries: list[Delivery]) -> list[Delivery]:
    """No feedback loop: an operational event never goes to the endpoint it is about
    (a failing endpoint would otherwise be told of its failures, fail, and so on)."""
    subject = about(event)
    if subject is None:
        return deliveries
    return [d for d in deliveries if d.endpoint_id != subject]
