"""Endpoint flow state: strict heads and parking, kept durable in ``webhooks.endpoint_flow``.

Two reasons take an endpoint's deliveries off the shared partitions of
``webhooks.deliveries``:

* its share of the worker's pending budget is used up (one slow endpoint must not fill
  the budget and pause the partitions for everyone), or
* it is ``strict`` and its *head* (the earliest unfinished delivery) waits in a retry topic.

Then new deliveries for it are *parked*: appended to ``webhooks.parked`` (same key, same
partition number) and their ``webhooks.deliveries`` offsets committed. The same consumer
reads ``webhooks.parked`` for the partitions it owns and feeds the endpoint's lane in
order; a strict endpoint's lane waits while its head is out.

Durability (kill -9 of the owner): an endpoint that parks (strict or not) or is blocked
has a record in the compacted ``webhooks.endpoint_flow`` (key: endpoint id), written and
acknowledged before the head leaves for a retry topic and before a parked record's source
offset is committed; a tombstone once it has nothing parked. The next owner loads it on
assignment, so it parks the endpoint's new deliveries behind the parked ones (without it,
a best-effort endpoint's new deliveries would overtake its parked ones) and attempts
nothing before the head. Parked records carry their source offset: one whose source was
never committed will be read (and parked) again from ``webhooks.deliveries``, so the copy
is skipped; otherwise it would overtake the records parked before it by the next owner.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition

from webhook_stream.core import fetch, kafka
from webhook_stream.core.errors import FlowStateUnavailable
from webhook_stream.core.records import iso_now
from webhook_stream.core.settings import Settings
from webhook_stream.core.topics import ENDPOINT_FLOW

__all__ = ["SRC_HEADER", "FlowState", "FlowStates"]

log = logging.getLogger(__name__)

_LOAD_TIMEOUT = 10.0
#: Key prefix of a partition's takeover markers (not an endpoint id: ids cannot hold NUL).
_MARKER = "\x00takeover:"

#: Header of a parked record: the ``webhooks.deliveries`` offset it was parked from.
SRC_HEADER = "ws-src-offset"


@dataclass(slots=True)
class FlowState:
    """One endpoint that parks or is blocked (only those have a state)."""

    partition: int
    strict: bool
    #: Delivery id of the strict head waiting in a retry topic, and since when.
    head: str | None = None
    since: str | None = None
    #: Offset in ``webhooks.parked`` of the last record parked for it by this worker.
    last_parked: int = -1
    #: Parked copies sent and not yet acknowledged.
    sending: int = 0
    parked: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)
    abandoned: bool = False


class FlowStates:
    """The flow states of the endpoints on this worker's partitions, kept durable."""

    def __init__(self, settings: Settings, producer: AIOKafkaProducer) -> None:
        self._settings = settings
        self._producer = producer
        self.states: dict[str, FlowState] = {}
        #: Endpoints whose partition was revoked while they parked: nothing more of theirs
        #: is attempted here (the next owner keeps their order).
        self.abandoned: set[str] = set()
        #: Per partition, the takeovers whose stale parked copies are still unread:
        #: ``(end of webhooks.parked, committed webhooks.deliveries offset)`` at takeover.
        self.markers: dict[int, list[tuple[int, int]]] = {}

    # -- queries -------------------------------------------------------------------------

    def get(self, endpoint_id: str) -> FlowState | None:
        return self.states.get(endpoint_id)

    def parking(self, endpoint_id: str) -> bool:
        return endpoint_id in self.states

    @property
    def parked_total(self) -> int:
        return sum(s.parked for s in self.states.values())

    @property
    def blocked_total(self) -> int:
        return sum(1 for s in self.states.values() if s.head is not None)

    # -- transitions ---------------------------------------------------------------------

    async def start_parking(self, endpoint_id: str, partition: int, strict: bool) -> asyncio.Future:
        """Mark ``endpoint_id`` as parking; the returned send is its durable record."""
        state = self.states.get(endpoint_id)
        if state is None:
            state = self.states[endpoint_id] = FlowState(partition, strict)
            state.released.set()
        return await self._write(endpoint_id, state)

    def block_now(
        self, endpoint_id: str, partition: int, delivery_id: str
    ) -> Coroutine[Any, Any, asyncio.Future] | None:
        """The strict head failed and goes to a retry topic; blocked from this moment.

        Returns the write of the durable record (await it, then its future, before the
        head leaves), or None when it is already the head.
        """
        state = self.states.get(endpoint_id)
        if state is None:
            state = self.states[endpoint_id] = FlowState(partition, True)
        if state.head == delivery_id:
            return None
        state.strict = True
        state.head, state.since = delivery_id, iso_now()
        state.released.clear()
        log.info("strict endpoint %s blocked by delivery %s", endpoint_id, delivery_id)
        return self._write(endpoint_id, state)

    async def release(self, endpoint_id: str, delivery_id: str) -> asyncio.Future | None:
        """The head ``delivery_id`` finished (succeeded or dead-lettered): let the rest go."""
        state = self.states.get(endpoint_id)
        if state is None or state.head != delivery_id:
            return None
        state.head = state.since = None
        state.released.set()
        log.info("strict endpoint %s released by delivery %s", endpoint_id, delivery_id)
        return await self._write(endpoint_id, state)

    async def end_parking(self, endpoint_id: str) -> None:
        """Nothing parked any more: back to the shared partitions."""
        state = self.states.pop(endpoint_id, None)
        if state is not None:
            # Not awaited: a lost tombstone only makes the next owner park needlessly.
            await self._producer.send(
                ENDPOINT_FLOW, None, key=endpoint_id.encode(), partition=state.partition
            )

    async def wait_released(self, endpoint_id: str) -> bool:
        """Wait while the endpoint's head is out; False when the partition was revoked."""
        while True:
            if endpoint_id in self.abandoned:
                return False
            state = self.states.get(endpoint_id)
            if state is None or state.head is None:
                return True
            await state.released.wait()
            if state.abandoned:
                return False

    def abandon(self, partitions: set[int] | None) -> None:
        """Revoked (or stopping): forget these partitions' states.

        Waiters behind a blocked head give up (their records stay uncommitted; the next
        owner keeps the order). What is queued for an unblocked endpoint drains like any
        lane, so an orderly stop repeats nothing.
        """
        for endpoint_id, state in list(self.states.items()):
            if partitions is None or state.partition in partitions:
                del self.states[endpoint_id]
                if state.head is not None:
                    state.abandoned = True
                    state.released.set()
                    self.abandoned.add(endpoint_id)

    async def mark_takeover(
        self, partition: int, parked_end: int, committed: int, read_from: int
    ) -> None:
        """Remember (durably) which parked copies of ``partition`` are stale from now on.

        A later owner, or this one after a rebalance, must still skip them: by then the
        committed offset of ``webhooks.deliveries`` has moved past their sources.
        """
        kept = [(end, c0) for end, c0 in self.markers.get(partition, []) if end > read_from]
        if parked_end > read_from:
            kept.append((parked_end, committed))
        if kept == self.markers.get(partition, []):
            return
        self.markers[partition] = kept
        value = orjson.dumps([list(m) for m in kept]) if kept else None
        key = f"{_MARKER}{partition}".encode()
        await (await self._producer.send(ENDPOINT_FLOW, value, key=key, partition=partition))

    def stale(self, partition: int, offset: int, src: int) -> bool:
        return any(offset < end and src >= c0 for end, c0 in self.markers.get(partition, ()))

    async def _write(self, endpoint_id: str, state: FlowState) -> asyncio.Future:
        value = orjson.dumps(
            {
                "endpoint_id": endpoint_id,
                "head": state.head,
                "since": state.since,
                "parking": True,
                "strict": state.strict,
            }
        )
        return await self._producer.send(
            ENDPOINT_FLOW, value, key=endpoint_id.encode(), partition=state.partition
        )

    # -- recovery ------------------------------------------------------------------------

    async def load(self, partitions: list[int]) -> None:
        """Read the state of the endpoints on ``partitions`` (on assignment)."""
        if not partitions:
            return
        found: dict[str, FlowState | None] = {}
        for p in partitions:
            self.markers.pop(p, None)
        for attempt in range(1, 4):
            try:
                found = await asyncio.wait_for(self._read(partitions), _LOAD_TIMEOUT)
                break
            except TimeoutError:
                log.warning(
                    "reading %s took over %.0fs (try %d)", ENDPOINT_FLOW, _LOAD_TIMEOUT, attempt
                )
        else:
            # Going on without it could attempt a delivery behind a blocked head.
            raise FlowStateUnavailable(f"could not read {ENDPOINT_FLOW}")
        self.abandoned.clear()
        for endpoint_id, state in found.items():
            if state is not None:
                self.states[endpoint_id] = state
        blocked = sum(1 for s in found.values() if s is not None and s.head)
        if found:
            log.info(
                "flow state: %d endpoints parking, %d blocked on partitions %s",
                sum(1 for s in found.values() if s is not None),
                blocked,
                partitions,
            )

    async def _read(self, partitions: list[int]) -> dict[str, FlowState | None]:
        found: dict[str, FlowState | None] = {}
        consumer = kafka.tail_consumer(self._settings)
        await consumer.start()
        try:
            tps = [TopicPartition(ENDPOINT_FLOW, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            async for tp, record in fetch.read_to_end(consumer, end):
                key = (record.key or b"").decode("utf-8", "replace")
                if key.startswith(_MARKER):
                    self.markers[tp.partition] = _markers_of(record.value)
                else:
                    found[key] = _state_of(record.value, tp.partition)
        finally:
            await consumer.stop()
        return found


def _markers_of(value: bytes | None) -> list[tuple[int, int]]:
    if value is None:
        return []
    try:
        return [(int(end), int(c0)) for end, c0 in orjson.loads(value)]
    except (orjson.JSONDecodeError, TypeError, ValueError):
        log.warning("unreadable takeover marker on %s ignored", ENDPOINT_FLOW)
        return []


def _state_of(value: bytes | None, partition: int) -> FlowState | None:
    if value is None:
        return None
    try:
        data = orjson.loads(value)
        head, since = data.get("head"), data.get("since")
        strict = data.get("strict", True) is not False
    except (orjson.JSONDecodeError, AttributeError):
        log.warning("unreadable record on %s ignored", ENDPOINT_FLOW)
        return None
    state = FlowState(partition, strict, head if isinstance(head, str) else None, since)
    if state.head is None:
        state.released.set()
    return state
