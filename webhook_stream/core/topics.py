"""Topic names and the provisioning plan (partitions, compaction, retention per role)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from webhook_stream.core.kafka import connection
from webhook_stream.core.operational import OPERATIONAL
from webhook_stream.core.settings import Settings, format_duration

__all__ = [
    "ATTEMPTS",
    "DEADLETTER",
    "DELIVERIES",
    "DELIVERY_PROGRESS",
    "ENDPOINT_FLOW",
    "ENDPOINT_HEALTH",
    "ENDPOINT_STATUS",
    "EVENT_TYPES",
    "PARKED",
    "REJECTED",
    "SUBSCRIPTIONS",
    "SUBSCRIPTION_REQUESTS",
    "SUBSCRIPTION_RESULTS",
    "TOKENS",
    "TopicSpec",
    "ensure_topics",
    "plan",
    "retry_topic",
    "retry_topics",
]

log = logging.getLogger(__name__)

SUBSCRIPTIONS = "webhooks.subscriptions"
DELIVERIES = "webhooks.deliveries"
DEADLETTER = "webhooks.deadletter"
ATTEMPTS = "webhooks.attempts"
REJECTED = "webhooks.rejected"
ENDPOINT_STATUS = "webhooks.endpoint_status"
TOKENS = "webhooks.tokens"
#: Compacted: the event-type catalog, keyed by type name.
EVENT_TYPES = "webhooks.event_types"
#: Deliveries set aside for an endpoint that is blocked or over its share (keyed and
#: partitioned like ``webhooks.deliveries``).
PARKED = "webhooks.parked"
#: Compacted: per endpoint with parked deliveries, its strict head (if any).
ENDPOINT_FLOW = "webhooks.endpoint_flow"
#: Compacted, internal: per partition of ``webhooks.deliveries``, the offsets its owner
#: finished beyond the committed prefix (read by the next owner, which skips them).
DELIVERY_PROGRESS = "webhooks.delivery_progress"
ENDPOINT_HEALTH = "webhooks.endpoint_health"
SUBSCRIPTION_REQUESTS = "webhooks.subscription_requests"
SUBSCRIPTION_RESULTS = "webhooks.subscription_results"
RETRY_PREFIX = "webhooks.retry."

_DAY_MS = 86_400_000


def retry_topic(delay_s: float) -> str:
    """``webhooks.retry.30s`` for a 30-second step."""
    return RETRY_PREFIX + format_duration(delay_s)


def retry_topics(settings: Settings) -> list[str]:
    return [retry_topic(d) for d in sorted(set(settings.retry_schedule))]


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    role: str = ""


def plan(settings: Settings) -> list[TopicSpec]:
    """Every topic the app owns, with settings suited to its role."""
    p = settings.partitions

    def keep(days: int) -> dict[str, str]:
        return {"cleanup.policy": "delete", "retention.ms": str(days * _DAY_MS)}

    specs = [
        TopicSpec(SUBSCRIPTIONS, p, {"cleanup.policy": "compact"}, "subscription table source"),
        TopicSpec(DELIVERIES, p, keep(7), "one record per (event, endpoint)"),
        TopicSpec(DEADLETTER, p, keep(30), "final failures; alerting and replay"),
        TopicSpec(ATTEMPTS, p, keep(7), "delivery log: one record per HTTP attempt"),
        TopicSpec(REJECTED, p, keep(30), "unparseable or refused input"),
        TopicSpec(ENDPOINT_STATUS, p, keep(30), "endpoint disabled/enabled notices"),
        # Few records and read whole by every worker: one partition keeps start-up cheap.
        TopicSpec(TOKENS, 1, {"cleanup.policy": "compact"}, "tenant API tokens (hashes only)"),
        TopicSpec(
            EVENT_TYPES, 1, {"cleanup.policy": "compact"}, "event-type catalog: schemas, examples"
        ),
        # Must outlive the longest head-of-line wait (a strict head's whole schedule).
        TopicSpec(PARKED, p, keep(30), "deliveries waiting behind a blocked or busy endpoint"),
        TopicSpec(ENDPOINT_FLOW, p, {"cleanup.policy": "compact"}, "strict heads, parking"),
        # Partition n belongs to the owner of deliveries n (same group, range assignment).
        TopicSpec(
            DELIVERY_PROGRESS,
            p,
            {"cleanup.policy": "compact"},
            "deliveries finished beyond each partition's committed offset",
        ),
        TopicSpec(
            ENDPOINT_HEALTH, p, {"cleanup.policy": "compact"}, "failure streaks per endpoint"
        ),
        TopicSpec(
            SUBSCRIPTION_REQUESTS, p, keep(1), "subscription writes, decided by one owner per id"
        ),
        TopicSpec(SUBSCRIPTION_RESULTS, p, keep(1), "outcome of each subscription write"),
        TopicSpec(OPERATIONAL, p, keep(30), "operational events: what happened to endpoints"),
    ]
    for delay in sorted(set(settings.retry_schedule)):
        # A waiting delivery must outlive its delay by a wide margin.
        days = max(7, int(delay * 4 // 86400) + 1)
        specs.append(TopicSpec(retry_topic(delay), p, keep(days), f"retry after {delay:g}s"))
    return specs


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the planned topics that do not exist yet; return the names created."""
    admin = AIOKafkaAdminClient(**connection(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in plan(settings) if s.name not in existing]
        created: list[str] = []
        for spec in missing:
            new = NewTopic(
                spec.name, spec.partitions, settings.replication_factor, None, spec.config
            )
            try:
                await admin.create_topics([new])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass  # another worker won the race
        if created:
            log.info("created topics: %s", ", ".join(created))
        return created
    finally:
        await admin.close()
