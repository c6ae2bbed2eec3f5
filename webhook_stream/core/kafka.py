"""Factories for the aiokafka clients a worker runs, and two group-offset helpers.

All share the consumer-group timings from settings, so failover behaves the same on every
path (see the README's failover section).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import OffsetAndMetadata

from webhook_stream.core import fetch_waits
from webhook_stream.core.fetch_waits import FetchWaits
from webhook_stream.core.kafka_auth import client_options
from webhook_stream.core.produce import size_error
from webhook_stream.core.settings import Settings

__all__ = [
    "BACKGROUND_FETCH_WAIT",
    "AdaptiveConsumer",
    "CachedPartitioner",
    "JoinedListener",
    "RecordBatcher",
    "commit_as",
    "committed",
    "connection",
    "group_consumer",
    "producer",
    "tail_consumer",
    "waits_of",
]

log = logging.getLogger(__name__)

#: aiokafka's default ``max_request_size`` and ``Settings.max_record_bytes``'s.
DEFAULT_MAX_RECORD_BYTES = 1_048_576


class JoinedListener(ConsumerRebalanceListener):
    """Sets ``joined`` once the consumer has its first assignment (possibly empty)."""

    def __init__(self) -> None:
        self.joined = asyncio.Event()

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.joined.set()


class CachedPartitioner:
    """aiokafka's default partitioner (murmur2, as Java clients), remembered per key.

    Every delivery sends two records keyed by its endpoint id, and murmur2 in pure Python
    costs 1.5-4 us per key; there are few distinct keys. Results are the default's, so
    other producers of the same topics agree on every key's partition.
    """

    def __init__(self, max_keys: int = 100_000) -> None:
        self._default = DefaultPartitioner()
        self._max_keys = max_keys
        self._known: dict[tuple[bytes, int], int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return self._default(key, all_partitions, available)  # spread at random
        slot = (key, len(all_partitions))
        found = self._known.get(slot)
        if found is None:
            if len(self._known) >= self._max_keys:
                self._known.clear()
            found = self._known[slot] = self._default(key, all_partitions, available)
        return found


#: How long the delivery process holds attempt records to batch them (RecordBatcher).
ATTEMPTS_LINGER_S = 0.01


class RecordBatcher:
    """Records queued now go to Kafka as one batch per partition, once per event-loop turn.

    ``producer.send()`` costs about 13 us of CPU per record here, a batch built by the
    caller about 6 (measured, 1.5 KB records). :meth:`send` returns at once with a future
    that resolves like ``send()``'s (to the record's metadata, or its error). One flusher
    task hands the batches over one after another, so per-partition order is the order of
    :meth:`send` calls. Partitions are chosen as aiokafka's default partitioner would.

    Memory is bounded by the caller: a producer of many records (the fan-out) waits with
    :meth:`wait_for_room` while :attr:`full`. A record over ``max_record_bytes`` is
    refused at once (its future fails with :class:`RecordTooLarge`), never batched.

    ``linger_s``: records no reader waits for (attempt records, not delivery records)
    are held up to that long, or until half of ``max_queued`` are queued, so a worker
    that gets a share of the load still writes one batch per partition per linger: per
    loop turn, three workers wrote three times the produce requests of one for the same
    deliveries (bench rows 3c/3d).
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        max_queued: int = 2000,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        linger_s: float = 0.0,
    ) -> None:
        self._producer = producer
        self._max_queued = max_queued
        self._linger_s = linger_s
        self._hurry = asyncio.Event()
        self.max_record_bytes = max_record_bytes
        self._partitioner = CachedPartitioner()
        self._partitions: dict[str, list[int]] = {}
        self._queued: list[_Queued] = []
        self._flushing = 0
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._closing = False
        self._flusher: asyncio.Task[None] | None = None

    @property
    def full(self) -> bool:
        """At least ``max_queued`` records are not yet handed to the producer."""
        return len(self._queued) + self._flushing >= self._max_queued

    async def wait_for_room(self) -> None:
        while self.full:
            self._room.clear()
            await self._room.wait()

    def send(
        self, topic: str, value: bytes, *, key: bytes, headers: Any = None
    ) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if len(value) + len(key) > self.max_record_bytes - 1024:  # cheap test first
            too_large = size_error(key, value, headers, self.max_record_bytes)
            if too_large is not None:
                future.set_exception(too_large)
                return future
        self._queued.append((topic, key, value, headers or [], future))
        self._wake.set()
        if len(self._queued) * 2 >= self._max_queued:
            self._hurry.set()
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_forever())
        return future

    async def close(self) -> None:
        """Hand over what is queued, then stop (the producer is the caller's to stop)."""
        self._closing = True
        self._wake.set()
        self._hurry.set()
        if self._flusher is not None:
            await self._flusher

    async def _flush_forever(self) -> None:
        while self._queued or not self._closing:
            await self._wake.wait()
            if self._linger_s and not self._closing:
                await self._linger()
            self._wake.clear()
            queued, self._queued = self._queued, []
            self._flushing = len(queued)
            try:
                await self._flush(queued)
            except Exception as exc:  # noqa: BLE001 - every waiter learns of it
                # The producer is failing (metadata, closed): records of this round still
                # waiting for their ack are failed too. Their owners stop the worker, and
                # uncommitted work is redone: at least once, never silently lost.
                for *_, future in queued:
                    if not future.done():
                        future.set_exception(exc)
            finally:
                self._flushing = 0
                self._room.set()

    async def _linger(self) -> None:
        """Wait ``linger_s``, less when the queue is half full or the batcher closes."""
        if len(self._queued) * 2 >= self._max_queued:
            return
        self._hurry.clear()
        timer = asyncio.get_running_loop().call_later(self._linger_s, self._hurry.set)
        try:
            await self._hurry.wait()
        finally:
            timer.cancel()

    async def _flush(self, queued: list[_Queued]) -> None:
        batches: dict[tuple[str, int], tuple[Any, list[asyncio.Future[Any]]]] = {}
        for topic, key, value, headers, future in queued:
            partitions = self._partitions.get(topic)
            if partitions is None:
                partitions = sorted(await self._producer.partitions_for(topic))
                self._partitions[topic] = partitions
            tp = (topic, self._partitioner(key, partitions, partitions))
            batch = batches.get(tp)
            if batch is not None and batch[0].append(
                timestamp=None, key=key, value=value, headers=headers
            ):
                batch[1].append(future)
                continue
            if batch is not None:  # full: hand it over, start the next
                await self._hand_over(tp, *batches.pop(tp))
            builder = self._producer.create_batch()
            builder.append(timestamp=None, key=key, value=value, headers=headers)
            batches[tp] = (builder, [future])
        for tp, batch in batches.items():
            await self._hand_over(tp, *batch)

    async def _hand_over(
        self, tp: tuple[str, int], builder: Any, futures: list[asyncio.Future[Any]]
    ) -> None:
        acked = await self._producer.send_batch(builder, tp[0], partition=tp[1])
        _resolve(acked, *futures)


_Queued = tuple[str, bytes, bytes, Any, "asyncio.Future[Any]"]


def _resolve(acked: asyncio.Future[Any], *futures: asyncio.Future[Any]) -> None:
    """Settle ``futures`` as ``acked`` (the broker's answer for their batch) settles."""

    def settle(done: asyncio.Future[Any]) -> None:
        for future in futures:
            if future.done():
                continue
            if done.cancelled():
                future.cancel()
            elif (exc := done.exception()) is not None:
                future.set_exception(exc)
            else:
                future.set_result(done.result())

    acked.add_done_callback(settle)


def connection(settings: Settings) -> dict[str, Any]:
    """Bootstrap servers and security options: what every Kafka client here is built with."""
    return {"bootstrap_servers": settings.bootstrap_servers, **client_options(settings)}


def producer(settings: Settings) -> AIOKafkaProducer:
    """The shared producer. ``acks=all``: a hand-off counts only once it is durable."""
    return AIOKafkaProducer(
        **connection(settings),
        client_id=f"{settings.app_id}-producer",
        acks="all",
        linger_ms=2,
        max_batch_size=262_144,
        max_request_size=settings.max_record_bytes,
        compression_type=None if settings.compression == "none" else settings.compression,
        request_timeout_ms=30_000,
        partitioner=CachedPartitioner(),
    )


#: Fetch wait of consumers off the delivery path (status views, retry waiting, tables):
#: their records are not latency-critical, and every empty fetch costs the worker and the
#: broker CPU (on Tansu, which never answers a fetch early, one per wait per consumer).
BACKGROUND_FETCH_WAIT = 0.2


class AdaptiveConsumer(AIOKafkaConsumer):
    """An aiokafka consumer whose fetch wait lengthens while fetches come back empty
    (:mod:`~webhook_stream.core.fetch_waits`)."""

    def __init__(self, *args: Any, fetch_waits: FetchWaits, **kwargs: Any) -> None:
        # aiokafka's fetch routine also wakes every ``consumer_timeout_ms`` (200 ms by
        # default) though its fetch is in flight, which it wakes for anyway: on an idle
        # worker that was 21 of its 44 wakeups a second. Twice the longest fetch wait, it
        # only fires when nothing else would (a fallback; rebalances, seeks, pauses and
        # fetch answers each wake the routine at once).
        kwargs.setdefault("consumer_timeout_ms", _routine_timeout_ms(fetch_waits))
        super().__init__(*args, fetch_max_wait_ms=fetch_waits.short_ms, **kwargs)
        self.fetch_waits = fetch_waits

    async def start(self) -> None:
        await super().start()
        fetch_waits.install(self._fetcher, self.fetch_waits)


def _routine_timeout_ms(waits: FetchWaits) -> int:
    """The longest aiokafka's fetch routine sleeps: longer than any fetch it waits for."""
    return max(200, 2 * waits.longest_ms)


def waits_of(settings: Settings, background: bool) -> FetchWaits:
    """The short wait (``fetch_max_wait``; 200 ms at least off the delivery path) and the
    longest one a quiet consumer lengthens to (``fetch_idle_wait``, off the delivery path
    ``background_idle_wait``; never below the short one)."""
    short, longest = settings.fetch_max_wait, settings.fetch_idle_wait
    if background:
        short, longest = max(short, BACKGROUND_FETCH_WAIT), settings.background_idle_wait
    short_ms = int(short * 1000)
    return FetchWaits(short_ms, max(short_ms, int(longest * 1000)))


def group_consumer(
    settings: Settings, group_suffix: str, *, background: bool = False, **kwargs: Any
) -> AIOKafkaConsumer:
    """A consumer in group ``<app_id>-<suffix>``, committing by hand."""
    return AdaptiveConsumer(
        **connection(settings),
        client_id=f"{settings.app_id}-{group_suffix}",
        group_id=f"{settings.app_id}-{group_suffix}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(settings.session_timeout * 1000),
        rebalance_timeout_ms=int(settings.rebalance_timeout * 1000),
        heartbeat_interval_ms=int(settings.heartbeat_interval * 1000),
        max_poll_interval_ms=300_000,
        fetch_waits=waits_of(settings, background),
        **kwargs,
    )


def tail_consumer(
    settings: Settings, *, background: bool = False, **kwargs: Any
) -> AIOKafkaConsumer:
    """A group-less consumer (``assign()`` + seek) for reading whole topics."""
    return AdaptiveConsumer(
        **connection(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_waits=waits_of(settings, background),
        **kwargs,
    )


async def committed(settings: Settings, group_id: str, topic: str) -> dict[TopicPartition, int]:
    """The offsets ``group_id`` has committed on ``topic`` (partitions without one left out)."""
    consumer = AIOKafkaConsumer(**connection(settings), group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        found = {tp: await consumer.committed(tp) for tp in tps}
    finally:
        await consumer.stop()
    return {tp: offset for tp, offset in found.items() if offset is not None and offset >= 0}


async def commit_as(settings: Settings, group_id: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit ``offsets`` for ``group_id`` without joining it (the group must be empty)."""
    consumer = AIOKafkaConsumer(**connection(settings), group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
    except KafkaError as exc:
        # The group got a member meanwhile (another worker started): it commits its own.
        log.warning("could not commit offsets for group %s: %r", group_id, exc)
    finally:
        await consumer.stop()


async def adopt_committed(settings: Settings, group: str, previous: str, topic: str) -> bool:
    """A ``group`` with no offsets on ``topic`` starts at ``previous``'s committed ones.

    For a group that replaces another (an upgrade): starting empty, it would replay every
    retained record from the earliest one. True when offsets were adopted.
    """
    if await committed(settings, group, topic):
        return False
    legacy = await committed(settings, previous, topic)
    if not legacy:
        return False
    await commit_as(settings, group, legacy)
    log.warning(
        "group %s starts at group %s's committed offsets on %s (upgrade from 0.1)",
        group,
        previous,
        topic,
    )
    return True
