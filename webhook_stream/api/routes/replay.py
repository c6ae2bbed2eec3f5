"""``POST /replay``: the CLI's replay through the API, scoped to the caller's tenant."""

from __future__ import annotations

from typing import Any

from webhook_stream.api.errors import ApiError
from webhook_stream.api.tenancy.auth import Principal
from webhook_stream.core.errors import InvalidSubscription
from webhook_stream.core.records import Delivery
from webhook_stream.failures.replay import (
    ReplaySummary,
    parse_time,
    replay_deadletter,
    replay_events,
)

__all__ = ["REPLAY_FIELDS", "run_replay"]

REPLAY_FIELDS = frozenset(
    {
        "source",
        "topic",
        "since",
        "until",
        "endpoint_id",
        "tenant_id",
        "delivery_id",
        "dry_run",
        "force",
    }
)


def _scope(principal: Principal, runtime: Any, body: dict[str, Any]) -> tuple[Any, Any]:
    """(endpoint, tenant) filters: a tenant token replays only to its own endpoints."""
    endpoint, tenant = body.get("endpoint_id"), body.get("tenant_id")
    if endpoint is not None and not isinstance(endpoint, str):
        raise InvalidSubscription("endpoint_id", "must be a string")
    if tenant is not None and not isinstance(tenant, str):
        raise InvalidSubscription("tenant_id", "must be a string")
    if principal.is_admin:
        return endpoint, tenant
    if tenant is not None:
        principal.check_tenant(tenant)
    if endpoint is not None:
        sub = runtime.registry.get(endpoint)
        if sub is None or not principal.sees(sub.tenant_id):
            raise ApiError("not_found", f"no subscription {endpoint!r}", "endpoint_id")
    # Filtering by tenant keeps both replays to this tenant's events and endpoints: fan-out
    # matches an event only to endpoints of the event's tenant.
    return endpoint, principal.tenant_id


async def run_replay(settings: Any, runtime: Any, body: Any, principal: Principal) -> ReplaySummary:
    """``{"source": "deadletter"|"events", ...}`` as in the CLI."""
    if not isinstance(body, dict):
        raise InvalidSubscription("body", "must be a JSON object")
    for name in body:
        if name not in REPLAY_FIELDS:
            raise InvalidSubscription(str(name)[:128], "unknown field")
    source = body.get("source")
    if source not in ("deadletter", "events"):
        raise InvalidSubscription("source", "must be 'deadletter' or 'events'")
    times = {}
    for name in ("since", "until"):
        value = body.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise InvalidSubscription(name, "must be ISO-8601 or an age such as 2h")
        times[name] = parse_time(value)
    endpoint, tenant = _scope(principal, runtime, body)
    delivery = body.get("delivery_id")
    if delivery is not None and (source != "deadletter" or not isinstance(delivery, str)):
        raise InvalidSubscription("delivery_id", "a string, for source=deadletter only")
    common = {
        "endpoint": endpoint,
        "tenant": tenant,
        "dry_run": body.get("dry_run") is True,
        # A tenant's counts are of its own records only, and say nothing of which topics
        # exist.
        "scoped": not principal.is_admin,
        **times,
    }
    if source == "deadletter":
        registry = runtime.registry

        def live(found: Delivery) -> bool:
            """Of an endpoint that exists, in the incarnation it was dead-lettered from."""
            sub = registry.get(found.endpoint_id)
            return sub is not None and sub.incarnation == found.incarnation

        return await replay_deadletter(
            settings,
            runtime.producer,
            force=body.get("force") is True,
            delivery=delivery,
            live=live,
            **common,
        )
    topic = body.get("topic")
    if not topic or not isinstance(topic, str):
        raise InvalidSubscription("topic", "required for source=events")
    if "since" not in times:
        raise InvalidSubscription("since", "required for source=events")
    return await replay_events(
        settings, runtime.producer, runtime.registry.index, topic=topic, **common
    )
