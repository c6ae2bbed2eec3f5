"""Who owns which status partition: a group assignor that tells every member.

The status views of all workers form one consumer group (``<app_id>-status``) on
``webhooks.deliveries``, ``webhooks.attempts`` and ``webhooks.deadletter``. Like Faust's
own assignor (what ``@app.table_route`` reads), each member sends its HTTP address in its
join metadata, and the leader sends the whole partition -> address map back in every
member's assignment. Partition ``p`` of the three topics always goes to one member
(co-partitioned: the same endpoints).

The assignment is sticky to the data: each member also reports how far its store has
applied each partition (the sum of its next offsets on the three topics), and a partition
goes to the member that has applied the most of it, balanced to ``ceil(n/m)``/``floor(n/m)``
per member by moving the partitions whose new owner has least to re-read. So a worker that
restarts gets back the partitions its store holds and reads only what it missed, and a
rebalance moves as little history as the balance allows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from aiokafka.partitioner import DefaultPartitioner

__all__ = ["OwnerAssignor", "partition_of", "spread"]

log = logging.getLogger(__name__)

_partitioner = DefaultPartitioner()


def partition_of(endpoint_id: str, partitions: int) -> int:
    """The partition the producers put ``endpoint_id``'s records in (murmur2, as Java)."""
    every = list(range(partitions))
    return _partitioner(endpoint_id.encode(), every, every)


def spread(n: int, members: list[str], applied: dict[str, dict[int, int]]) -> dict[int, str]:
    """Partition -> member: to whoever applied most of it, then balanced at least cost."""
    if not members or not n:
        return {}

    def score(member: str, p: int) -> int:
        return applied[member].get(p, -1)

    owner = {p: max(members, key=lambda m: (score(m, p), -members.index(m))) for p in range(n)}
    hi, lo = -(-n // len(members)), n // len(members)

    def count(member: str) -> int:
        return sum(1 for o in owner.values() if o == member)

    def move(givers: list[str], takers: list[str]) -> None:
        # The partition whose new owner loses least applied history (ties: lowest p).
        _, p, taker = min(
            (score(owner[p], p) - score(t, p), p, t)
            for p in range(n)
            if owner[p] in givers
            for t in takers
        )
        owner[p] = taker

    while over := [m for m in members if count(m) > hi]:
        move(over[:1], [m for m in members if count(m) < hi])
    while under := [m for m in members if count(m) < lo]:
        move([m for m in members if count(m) > lo], under[:1])
    return owner


class OwnerAssignor(AbstractPartitionAssignor):
    """Co-partitioned range assignment; every member learns every partition's owner."""

    name = "webhook-stream-status"
    version = 0

    def __init__(self, own_url: str, applied: Callable[[], dict[int, int]]) -> None:
        self.own_url = own_url
        self._applied = applied
        #: partition -> owner's URL, as of the last assignment (empty before the first).
        self.owners: dict[int, str] = {}
        self.generation = 0

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        applied = {str(p): n for p, n in self._applied().items()}
        return ConsumerProtocolMemberMetadata(
            self.version, list(topics), orjson.dumps({"url": self.own_url, "applied": applied})
        )

    def assign(
        self, cluster: Any, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        urls: dict[str, str] = {}
        applied: dict[str, dict[int, int]] = {}
        topics: set[str] = set()
        for member_id, meta in members.items():
            topics.update(meta.subscription)
            try:
                doc = orjson.loads(meta.user_data or b"{}")
                urls[member_id] = str(doc.get("url", ""))
                applied[member_id] = {int(p): int(n) for p, n in doc.get("applied", {}).items()}
            except (orjson.JSONDecodeError, AttributeError, ValueError):
                urls[member_id], applied[member_id] = "", {}
        counts = [len(cluster.partitions_for_topic(t) or ()) for t in sorted(topics)]
        n = min(counts) if counts else 0
        if counts and len(set(counts)) > 1:
            log.error("status topics differ in partitions %s: using the first %d", counts, n)
        owner_of = spread(n, sorted(members), applied)
        owners = {str(p): urls[m] for p, m in owner_of.items()}
        out = {}
        for member_id, meta in members.items():
            mine = [p for p, m in owner_of.items() if m == member_id]
            # Only the topics it subscribes: in a rolling upgrade that adds a status topic
            # (webhooks.rejected), a worker of the previous version refuses any other.
            subscribed = set(meta.subscription)
            out[member_id] = ConsumerProtocolMemberAssignment(
                self.version,
                sorted((t, mine) for t in topics if t in subscribed),
                orjson.dumps({"owners": owners}),
            )
        return out

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        try:
            owners = orjson.loads(assignment.user_data or b"{}").get("owners", {})
            self.owners = {int(p): url for p, url in owners.items()}
        except (orjson.JSONDecodeError, AttributeError, ValueError):
            self.owners = {}
        self.generation += 1
