"""The endpoint facts of operational events, decided by the subscription write owner.

Every write the owner decides is one fact: created, updated, deleted, disabled (the
automatic disable, or a PATCH setting ``disabled``) or enabled (a PATCH clearing it).
:func:`endpoint_fact` (pure) names it; the owner sends it and waits for the broker's
acknowledgement before it writes the record, and so before the request's offset is
committed. A successor that decides the same request again (the previous owner died
before writing) reaches the same version, so the same event id: receivers deduplicate.
"""

from __future__ import annotations

from typing import Any

from webhook_stream.core.operational import (
    ENDPOINT_CREATED,
    ENDPOINT_DELETED,
    ENDPOINT_DISABLED,
    ENDPOINT_ENABLED,
    ENDPOINT_UPDATED,
    OperationalEvent,
    operational_id,
)
from webhook_stream.subscriptions.model import Subscription

__all__ = ["endpoint_fact"]


def endpoint_fact(
    op: str,
    current: Subscription | None,
    new: Subscription | None,
    version: int,
    body: dict[str, Any] | None,
    at: str,
) -> OperationalEvent | None:
    """The operational event of a decided write (``new`` None: a delete)."""
    sub = new or current
    if sub is None:
        return None
    data: dict[str, Any] = {"version": version, "incarnation": sub.incarnation}
    if new is None:
        kind = ENDPOINT_DELETED
    elif op == "create":
        kind = ENDPOINT_CREATED
    elif op == "disable":
        kind = ENDPOINT_DISABLED
        body = body or {}
        data["reason"] = str(body.get("reason", "unknown"))
        data["consecutive_failures"] = int(body.get("consecutive_failures", 0))
        data["first_failure_at"] = body.get("first_failure_at")
    elif current is not None and current.disabled != new.disabled:
        kind = ENDPOINT_DISABLED if new.disabled else ENDPOINT_ENABLED
        if new.disabled:
            data["reason"] = "manual"
    else:
        kind = ENDPOINT_UPDATED
    if new is not None:
        data["disabled"] = new.disabled
    return OperationalEvent(
        id=operational_id(sub.id, version, kind),
        type=kind,
        tenant_id=sub.tenant_id,
        occurred_at=at,
        endpoint_id=sub.id,
        data=data,
    )
