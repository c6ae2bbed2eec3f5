"""Who owns which status partition: a group assignor that tells every member.

The status views of all workers form one consumer group (``<app_id>-status``) on
``webhooks.deliveries``, ``webhooks.attempts`` and ``webhooks.deadletter``. Like Faust's
own assignor (what ``@app.table_route`` reads), each member sends its HTTP address in its
join metadata, and the leader sends the whole partition -> address map back in every
member's assignment. Partition ``p`` of the three topics always goes to one member
(co-partitioned: the same endpoints), spread like Kafka's range assignor.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from aiokafka.partitioner import DefaultPartitioner

__all__ = ["OwnerAssignor", "partition_of"]

log = logging.getLogger(__name__)

_partitioner = DefaultPartitioner()


def partition_of(endpoint_id: str, partitions: int) -> int:
    """The partition the producers put ``endpoint_id``'s records in (murmur2, as Java)."""
    every = list(range(partitions))
    return _partitioner(endpoint_id.encode(), every, every)


class OwnerAssignor(AbstractPartitionAssignor):
    """Co-partitioned range assignment; every member learns every partition's owner."""

    name = "webhook-stream-status"
    version = 0

    def __init__(self, own_url: str) -> None:
        self.own_url = own_url
        #: partition -> owner's URL, as of the last assignment (empty before the first).
        self.owners: dict[int, str] = {}
        self.generation = 0

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:  # type: ignore[override]
        return ConsumerProtocolMemberMetadata(
            self.version, list(topics), orjson.dumps({"url": self.own_url})
        )

    def assign(  # type: ignore[override]
        self, cluster: Any, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        urls: dict[str, str] = {}
        topics: set[str] = set()
        for member_id, meta in members.items():
            topics.update(meta.subscription)
            try:
                urls[member_id] = str(orjson.loads(meta.user_data or b"{}").get("url", ""))
            except orjson.JSONDecodeError:
                urls[member_id] = ""
        counts = [len(cluster.partitions_for_topic(t) or ()) for t in sorted(topics)]
        n = min(counts) if counts else 0
        if counts and len(set(counts)) > 1:
            log.error("status topics differ in partitions %s: using the first %d", counts, n)
        order = sorted(members)
        # Contiguous ranges of partitions per member, in member-id order.
        owner_of = {p: order[p * len(order) // n] for p in range(n)} if order and n else {}
        owners = {str(p): urls[m] for p, m in owner_of.items()}
        out = {}
        for member_id in members:
            mine = [p for p, m in owner_of.items() if m == member_id]
            out[member_id] = ConsumerProtocolMemberAssignment(
                self.version,
                sorted((t, mine) for t in topics),
                orjson.dumps({"owners": owners}),
            )
        return out

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:  # type: ignore[override]
        try:
            owners = orjson.loads(assignment.user_data or b"{}").get("owners", {})
            self.owners = {int(p): url for p, url in owners.items()}
        except (orjson.JSONDecodeError, AttributeError, ValueError):
            self.owners = {}
        self.generation += 1
