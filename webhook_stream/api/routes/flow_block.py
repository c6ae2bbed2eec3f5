"""The ``flow`` block of ``GET /subscriptions/{id}``: blocked-by and parked count.

Read from this worker's delivery consumer: exact on the worker that owns the endpoint's
partition; another worker shows ``"owned": false`` and no state.
"""

from __future__ import annotations

from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from webhook_stream.core.topics import DELIVERIES
from webhook_stream.delivery.consumer import DeliveriesIn

__all__ = ["flow_block"]

#: The producers' partitioner (murmur2): deliveries are keyed by endpoint id with it.
_PARTITIONER = DefaultPartitioner()


def flow_block(delivery: DeliveriesIn | None, endpoint_id: str) -> dict[str, Any]:
    if delivery is None:
        return {"owned": False, "blocked_by": None, "parked": 0, "throttled": None}
    state = delivery.parking.flow_states.get(endpoint_id)
    owned = state is not None or _owns(delivery, endpoint_id)
    blocked = None
    if state is not None and state.head is not None:
        blocked = {"delivery_id": state.head, "since": state.since}
    throttled = delivery.parking.throttled.get(endpoint_id)
    return {
        "owned": owned,
        "blocked_by": blocked,
        "parked": 0 if state is None else state.parked,
        # Which budget made it park: "endpoint" (its own share) or "tenant" (its tenant's).
        "throttled": None if throttled is None else throttled[1].value,
    }


def _owns(delivery: DeliveriesIn, endpoint_id: str) -> bool:
    partition = delivery.parking.partition_of(endpoint_id)
    if partition is None:
        # Not seen here yet (every non-strict endpoint): where its deliveries are keyed to.
        count = delivery.partition_count()
        if not count:
            return False
        partitions = list(range(count))
        partition = _PARTITIONER(endpoint_id.encode(), partitions, partitions)
    return any(tp.topic == DELIVERIES and tp.partition == partition for tp in delivery.owned)
