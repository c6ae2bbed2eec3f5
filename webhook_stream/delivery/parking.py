"""Routing of taken records between endpoint lanes and ``webhooks.parked``.

:class:`Parking` decides, for each record the delivery consumer takes, whether it goes to
its endpoint's lane, to the lane of a strict endpoint's head, or to ``webhooks.parked``;
it is also the dispatcher's :class:`AttemptHooks` (a strict head failing or finishing). The
durable state lives in :mod:`webhook_stream.delivery.flow_state`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from webhook_stream.core.metrics import Metrics
from webhook_stream.core.records import Delivery
from webhook_stream.core.rejected import reject
from webhook_stream.core.settings import Settings
from webhook_stream.core.topics import DELIVERIES, PARKED
from webhook_stream.delivery.budgets import Admit, Budgets, admit, endpoint_share
from webhook_stream.delivery.flow_state import SRC_HEADER, FlowState, FlowStates
from webhook_stream.delivery.lanes import Lanes, OffsetTracker, Tracked
from webhook_stream.delivery.readback import (
    PARKED_BACKLOG,
    RESEEK_S,
    EndpointShare,
    ReadBack,
    Shares,
)
from webhook_stream.failures.deadletter import dead_letter
from webhook_stream.subscriptions.registry import SubscriptionRegistry

__all__ = ["FENCE_HEADER", "HEAD_PREFIX", "Item", "Parking", "source_offset"]

log = logging.getLogger(__name__)

#: Lane key prefix of a strict head coming back from a retry (its own lane: the
#: endpoint's lane waits for it).
HEAD_PREFIX = b"\x00head:"

#: Header of a takeover fence in ``webhooks.parked``: not a delivery, skipped when read.
FENCE_HEADER = "ws-takeover-fence"
#: Its key (not an endpoint id: ids cannot hold NUL).
_FENCE_KEY = b"\x00takeover-fence"


class Item(NamedTuple):
    """A record on its way through an endpoint's lane."""

    record: ConsumerRecord
    entry: Tracked
    #: The strict endpoint's head, back from a retry (it goes before the lane's others).
    head: bool


class Parking:
    """Parking of the delivery consumer: one per :class:`DeliveriesIn`."""

    def __init__(
        self,
        settings: Settings,
        registry: SubscriptionRegistry,
        producer: AIOKafkaProducer,
        metrics: Metrics,
        lanes: Lanes[Item],
        tracker: OffsetTracker,
        watch: Callable[[ConsumerRecord, Tracked, asyncio.Future[Any]], None],
    ) -> None:
        self._registry = registry
        self._producer = producer
        self._metrics = metrics
        self._lanes = lanes
        self._tracker = tracker
        self._watch = watch
        self.flow_states = FlowStates(settings, producer)
        self.budgets = Budgets.from_settings(settings)
        self.share = self.budgets.per_endpoint
        #: Endpoints parking because a budget was full: endpoint id -> (tenant, which budget).
        self.throttled: dict[str, tuple[str | None, Admit]] = {}
        self.max_held = settings.max_parked_held
        #: Parked records read back and not finished (:attr:`held`), their shares per tenant
        #: and endpoint; copies over them are deferred and read again.
        self.readback = ReadBack(Shares.from_settings(settings))
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        #: Per partition: committed ``webhooks.deliveries`` offset at assignment, end of
        #: ``webhooks.parked`` at assignment, next ``webhooks.parked`` offset to read.
        self._committed_at_assign: dict[int, int] = {}
        self._parked_end_at_assign: dict[int, int] = {}
        self._read_to: dict[int, int] = {}
        #: Per partition: committed ``webhooks.parked`` offset (every copy below delivered).
        self._committed_parked: dict[int, int] = {}
        self._partition_of: dict[str, int] = {}

    # -- assignment ------------------------------------------------------------------------

    async def assigned(self, consumer: AIOKafkaConsumer, assigned: list[TopicPartition]) -> None:
        """Before taking records of ``assigned``: where parking stands on them."""
        self._consumer = consumer
        parts = sorted({tp.partition for tp in assigned})
        deliveries = [TopicPartition(DELIVERIES, p) for p in parts]
        parked = [TopicPartition(PARKED, p) for p in parts]
        start = await consumer.beginning_offsets(deliveries + parked)
        end = await self._fence(consumer, parked, start)
        for p, d_tp, p_tp in zip(parts, deliveries, parked, strict=True):
            committed_d = await consumer.committed(d_tp)
            committed_p = await consumer.committed(p_tp)
            self._committed_at_assign[p] = committed_d if committed_d is not None else start[d_tp]
            self._read_to[p] = committed_p if committed_p is not None else start[p_tp]
            self._committed_parked[p] = self._read_to[p]
            self._parked_end_at_assign[p] = end[p_tp]
            self.readback.assigned(p, self._read_to[p])
        await self.flow_states.load(parts)
        for p in parts:
            if p not in self._read_to:
                continue  # given up meanwhile: the worker is stopping (revoked(None))
            await self.flow_states.mark_takeover(
                p, self._parked_end_at_assign[p], self._committed_at_assign[p], self._read_to[p]
            )
            log.debug(
                "takeover p%d: deliveries committed %d, parked committed %d end %d, markers %s",
                p,
                self._committed_at_assign[p],
                self._read_to[p],
                self._parked_end_at_assign[p],
                self.flow_states.markers.get(p),
            )

    async def _fence(
        self,
        consumer: AIOKafkaConsumer,
        parked: list[TopicPartition],
        start: dict[TopicPartition, int],
    ) -> dict[TopicPartition, int]:
        """Where each of ``parked`` ends at this takeover: every copy below was parked before.

        Not ``end_offsets()`` alone: a broker may answer it with less than the true end
        (Tansu answers the base offset of the partition's last batch plus one), and the
        copies a dead owner parked in that last batch would then not count as stale and be
        delivered ahead of the deliveries before them. So a fence record is appended and
        its acknowledged offset is the end; only a partition the broker calls empty has none.
        """
        reported = await consumer.end_offsets(parked)
        sends = {
            tp: await self._producer.send(
                PARKED, None, key=_FENCE_KEY, partition=tp.partition, headers=[(FENCE_HEADER, b"")]
            )
            for tp in parked
            if reported[tp] > start[tp]
        }
        end = dict(reported)
        for tp, fut in sends.items():
            end[tp] = max(reported[tp], (await fut).offset)
        return end

    def revoked(self, partitions: set[int] | None) -> None:
        """Blocked waiters of these partitions give up (their records stay uncommitted)."""
        self.flow_states.abandon(partitions)
        self.readback.revoked(partitions)
        for p in partitions if partitions is not None else list(self._read_to):
            self._read_to.pop(p, None)
            self._committed_parked.pop(p, None)

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        """The consumer committed ``offsets``: parked copies below them are delivered."""
        for tp, offset in offsets.items():
            if tp.topic == PARKED and tp.partition in self._committed_parked:
                self._committed_parked[tp.partition] = offset

    def partition_of(self, endpoint_id: str) -> int | None:
        """The partition of a strict endpoint seen here (None: not seen)."""
        state = self.flow_states.get(endpoint_id)
        return state.partition if state is not None else self._partition_of.get(endpoint_id)

    # -- routing ---------------------------------------------------------------------------

    async def take(self, tp: TopicPartition, record: ConsumerRecord) -> None:
        key = record.key or b""
        endpoint_id = key.decode("utf-8", "replace")
        sub = self._registry.get(endpoint_id)
        width = sub.lane_width if sub is not None else 1
        strict = sub is not None and sub.strict
        if strict:
            self._partition_of[endpoint_id] = tp.partition
        # A deferred copy read again keeps its entry (the commit waited below it).
        entry = self.readback.entry(tp, record.offset) or self._tracker.track(tp, record.offset)
        state = self.flow_states.get(endpoint_id)
        if tp.topic == PARKED:
            self._read_to[tp.partition] = max(self._read_to.get(tp.partition, 0), record.offset + 1)
            if _is_fence(record):
                self._tracker.done(entry)
                return
            if self._stale(tp, record):
                log.debug("parked p%d@%d of %s: stale", tp.partition, record.offset, endpoint_id)
                self._tracker.done(entry)
                return
            head = self._is_head(state, record)
            if not head and self.readback.dead_letters(tp.partition, record.offset, endpoint_id):
                await self._dead_letter(tp, record, entry, state)
                return
            if not self.readback.take(entry, endpoint_id, self.share_of(endpoint_id), head=head):
                return  # over its tenant's or endpoint's share: read again once they have room
            if state is not None:
                state.parked = max(0, state.parked - 1)
            lane = HEAD_PREFIX + key if head else key
            self._lanes.submit(lane, 1 if head else width, Item(record, entry, head), counted=False)
            return
        if state is not None:
            if self._is_head(state, record):
                self._lanes.submit(HEAD_PREFIX + key, 1, Item(record, entry, True))
                return
            await self._park(tp, record, entry, state)
            return
        tenant = sub.tenant_id if sub is not None else None
        share = endpoint_share(self.budgets, width, sub.rate_limit_per_s if sub else None)
        verdict = admit(
            self.budgets, share, self._lanes.size(key), tenant, self._lanes.group_size(tenant)
        )
        if verdict is not Admit.LANE:
            if verdict is Admit.TENANT:
                log.info(
                    "tenant %s holds its share (%d): parking deliveries of endpoint %s",
                    tenant,
                    self.budgets.per_tenant,
                    endpoint_id,
                )
            else:
                log.info("endpoint %s holds its share (%d): parking it", endpoint_id, share)
            self.throttled[endpoint_id] = (tenant, verdict)
            self._metrics.throttled.labels(verdict.value).inc()
            gate = await self.flow_states.start_parking(endpoint_id, tp.partition, strict)
            state = self.flow_states.get(endpoint_id)
            assert state is not None
            await self._park(tp, record, entry, state, gate)
            return
        self._lanes.submit(key, width, Item(record, entry, False), group=tenant)

    def share_of(self, endpoint_id: str) -> EndpointShare:
        """What an endpoint's copies read back may hold.

        A deleted or disabled endpoint's copies end at once, without an attempt: not held
        to its rate's share, so they all end in seconds, not one per seek back.
        """
        sub = self._registry.get(endpoint_id)
        shares = self.readback.shares
        per_tenant, spare = shares.per_tenant, shares.spare
        if sub is None:
            return EndpointShare(min(self.share, per_tenant), None, per_tenant, self.share, spare)
        rate = None if sub.disabled else sub.rate_limit_per_s
        own = endpoint_share(self.budgets, sub.lane_width, rate)
        return EndpointShare(min(own, per_tenant), sub.tenant_id, per_tenant, own, spare)

    def fresh(self, tp: TopicPartition, record: Any) -> bool:
        """False for a parked copy read again after a seek back that was taken already."""
        return self.readback.fresh(tp, record.offset)

    def poll_ms(self, ms: int) -> int:
        """How long the loop may wait for records: short while a seek back is due (seeks
        are made between batches, in :meth:`sweep`)."""
        return min(ms, int(RESEEK_S * 1000)) if self.readback.seek_due(self.share_of) else ms

    def to_pause(self, assignment: set[TopicPartition], batch: int) -> set[TopicPartition]:
        """``webhooks.parked`` partitions to pause: all at the read-back budget, else those
        read too far past a deferred copy."""
        if self.held >= max(1, self.max_held - batch):
            return {tp for tp in assignment if tp.topic == PARKED}
        waiting = self.readback.waiting()
        return {tp for tp in assignment if tp.topic == PARKED and tp.partition in waiting}

    @property
    def held(self) -> int:
        """Parked records read back and not finished."""
        return self.readback.held_total

    def throttled_tenants(self) -> set[str]:
        """Tenants with an endpoint parking because a budget was full (not strict blocks)."""
        return {t for t, _ in self.throttled.values() if t is not None}

    def finished_parked(self, item: Item) -> None:
        """A record read back from parking finished (or was given up)."""
        if item.record.topic == PARKED:
            self.readback.finished(item.entry)

    async def wait_turn(self, item: Item) -> bool:
        """Before an attempt: wait while the endpoint's head is out. False: give up."""
        if item.head:
            return True
        endpoint_id = (item.record.key or b"").decode("utf-8", "replace")
        return await self.flow_states.wait_released(endpoint_id)

    async def _park(
        self,
        tp: TopicPartition,
        record: ConsumerRecord,
        entry: Tracked,
        state: FlowState,
        gate: asyncio.Future | None = None,
    ) -> None:
        async with self._lock:
            await self._park_locked(tp, record, entry, state, gate)

    async def _park_locked(
        self,
        tp: TopicPartition,
        record: ConsumerRecord,
        entry: Tracked,
        state: FlowState,
        gate: asyncio.Future | None,
    ) -> None:
        # One producer, sent in this order under the lock: the partition keeps the order.
        fut = await self._producer.send(
            PARKED,
            record.value,
            key=record.key,
            partition=tp.partition,
            headers=[(SRC_HEADER, str(record.offset).encode())],
        )
        state.parked += 1
        state.sending += 1

        def acked(f: asyncio.Future) -> None:
            state.sending -= 1
            if not f.cancelled() and f.exception() is None:
                state.last_parked = max(state.last_parked, f.result().offset)

        fut.add_done_callback(acked)
        # The source offset commits once the parked copy and the endpoint's state are durable.
        self._watch(record, entry, fut if gate is None else asyncio.gather(fut, gate))

    async def _dead_letter(
        self, tp: TopicPartition, record: ConsumerRecord, entry: Tracked, state: FlowState | None
    ) -> None:
        """A deferred copy of a backlog that overflowed its window: to ``webhooks.deadletter``
        (:data:`PARKED_BACKLOG`), finished once that is written."""
        if state is not None:
            state.parked = max(0, state.parked - 1)
        # Its outcome is durable once written: a next owner may skip it and its source.
        entry.attempted = True
        src = source_offset(record)
        if src is not None:
            entry.source = (TopicPartition(DELIVERIES, tp.partition), src)
        try:
            delivery = Delivery.decode(record.value)
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            fut = await reject(self._producer, record, f"invalid_delivery_record: {exc}")
        else:
            self._metrics.dead_lettered.inc()
            fut = await dead_letter(self._producer, delivery, PARKED_BACKLOG)
        self._watch(record, entry, fut)

    def _stale(self, tp: TopicPartition, record: ConsumerRecord) -> bool:
        """A copy parked by an earlier owner whose source it never committed."""
        src = source_offset(record)
        return src is not None and self.flow_states.stale(tp.partition, record.offset, src)

    @staticmethod
    def _is_head(state: FlowState | None, record: ConsumerRecord) -> bool:
        if state is None or state.head is None:
            return False
        try:
            return orjson.loads(record.value).get("delivery_id") == state.head
        except (orjson.JSONDecodeError, AttributeError):
            return False

    # -- dispatcher hooks (AttemptHooks) ------------------------------------------------------

    async def before_retry(self, delivery: Delivery) -> None:
        """A strict endpoint's delivery goes to a retry topic: it becomes the head."""
        endpoint_id = delivery.endpoint_id
        partition = self._partition_of.get(endpoint_id)
        if partition is None:
            return
        key = endpoint_id.encode()
        async with self._lock:
            was_parking = self.flow_states.parking(endpoint_id)
            # Synchronously, before any await: what queued behind the head leaves the lane
            # before anything newer can be parked ahead of it.
            behind = [] if was_parking else self._lanes.take_queued(key)
            write = self.flow_states.block_now(endpoint_id, partition, delivery.delivery_id)
            state = self.flow_states.get(endpoint_id)
            assert state is not None
            gate = await write if write is not None else None
            for record, entry, _ in behind:
                tp = TopicPartition(record.topic, record.partition)
                await self._park_locked(tp, record, entry, state, gate)
        if gate is not None:
            await gate

    async def finished(self, delivery: Delivery) -> asyncio.Future | None:
        """A delivery succeeded or was dead-lettered: when it is a head, release it."""
        return await self.flow_states.release(delivery.endpoint_id, delivery.delivery_id)

    # -- housekeeping ----------------------------------------------------------------------

    async def sweep(self) -> None:
        """End parking of endpoints with nothing parked; update the gauges.

        Only once every parked copy is delivered *and committed*: a new owner that finds no
        state delivers the endpoint's new deliveries at once, so copies it would still
        read back from ``webhooks.parked`` would come after them, out of order.
        """
        consumer = self._consumer
        seeks = self.readback.seeks(self.share_of)
        for p, endpoint_id, copies in self.readback.overflowed:  # issue 28: not a silent drop
            log.warning(
                "endpoint %s: parked backlog dead-lettered (%d, p%d)", endpoint_id, copies, p
            )
        self.readback.overflowed.clear()
        for p, offset in seeks.items():
            tp = TopicPartition(PARKED, p)
            if consumer is not None and tp in consumer.assignment():
                consumer.seek(tp, offset)  # deferred copies come back in the log's order
        for endpoint_id, state in list(self.flow_states.states.items()):
            committed = self._committed_parked.get(state.partition)
            if (
                state.head is None
                and state.sending == 0
                and committed is not None
                and committed > state.last_parked
                and committed >= self._parked_end_at_assign.get(state.partition, 0)
                and self._lanes.size(endpoint_id.encode()) == 0
                and self._lanes.size(HEAD_PREFIX + endpoint_id.encode()) == 0
            ):
                log.info("endpoint %s has nothing parked any more", endpoint_id)
                await self.flow_states.end_parking(endpoint_id)
        for endpoint_id in [e for e in self.throttled if not self.flow_states.parking(e)]:
            del self.throttled[endpoint_id]
        self._metrics.throttled_tenants.set(len(self.throttled_tenants()))
        self._metrics.parked.set(self.flow_states.parked_total)
        self._metrics.parked_deferred.set(self.readback.deferred_total())
        self._metrics.blocked.set(self.flow_states.blocked_total)


def source_offset(record: ConsumerRecord) -> int | None:
    """The ``webhooks.deliveries`` offset a parked copy was parked from (None: not a copy)."""
    for name, value in record.headers or ():
        if name == SRC_HEADER:
            return int(value)
    return None


def _is_fence(record: ConsumerRecord) -> bool:
    return any(name == FENCE_HEADER for name, _ in record.headers or ())
