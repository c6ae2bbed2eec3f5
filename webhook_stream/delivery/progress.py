"""Durable done-sets: what a partition's owner finished beyond its committed offset.

Kafka keeps one committed offset per partition, and the delivery consumer commits only a
prefix of finished records (:class:`~webhook_stream.delivery.lanes.OffsetTracker`). One
endpoint's lane often runs ahead of another's in the same partition, so at a kill -9 the
dead owner has finished many deliveries past that prefix; its successor would repeat them
all (measured: most of what a kill -9 repeated). Kafka's offset-commit metadata could carry
them, but Tansu (the embedded broker) drops it. So the committer writes them here:

* per partition *n* that has them, one record on the compacted, internal
  ``webhooks.delivery_progress`` partition *n* (key ``p<n>``) listing, as ranges, the
  offsets of ``webhooks.deliveries`` *n* and ``webhooks.parked`` *n* finished beyond the
  prefix; once it is acknowledged, its offset + 1 is committed on
  ``webhooks.delivery_progress`` *n* in the same commit as the prefixes. The consumer is
  subscribed to the topic (range assignment: partition *n* of all three has one owner) only
  so that it may commit there; it keeps those partitions paused and never reads them.
* a new owner reads the record below that committed offset (bounded by a timeout; without
  it, it only repeats more) and skips the listed offsets at or past its committed ones:
  each is taken and finished at once, not delivered again. Its own records list them too
  while they are beyond its prefix or not reached yet (a next owner reads only the newest).

Only *attempted* records are listed (their attempt, retry, dead-letter or rejected
records made them done). A record that was only parked is not: a next owner that reads its
source again treats the parked copy as stale (:meth:`.flow_state.FlowStates.stale`), so skipping
the source would lose the delivery. Once its copy has been attempted, both the copy and
the source are listed (``OffsetTracker.track``): the delivery is finished, whichever of the
two the next owner would otherwise take.

Why this is safe: an offset is listed only once everything produced for it has been
acknowledged (``acks=all``), so "this record is finished" is true for ever, whichever owner
reads it, however old the record is (compaction may serve a later one: just as true). A
lost or unreadable progress record only means more is delivered again, never less.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from webhook_stream.core import fetch, kafka
from webhook_stream.core.metrics import Metrics
from webhook_stream.core.settings import Settings
from webhook_stream.core.topics import DELIVERIES, DELIVERY_PROGRESS, PARKED
from webhook_stream.delivery.lanes import OffsetTracker

__all__ = ["Progress", "decode_ranges", "encode_ranges"]

log = logging.getLogger(__name__)

#: How long a takeover waits for the last owner's progress records.
_READ_TIMEOUT = 5.0
#: The sources a progress record covers, by their key in its value.
_SOURCES = (("deliveries", DELIVERIES), ("parked", PARKED))


def encode_ranges(offsets: Iterable[int], budget: int | None = None) -> list[list[int]]:
    """``[start, end)`` ranges of ``offsets``, lowest first; within ``budget`` JSON bytes.

    Over the budget, the highest ranges are left out (they are the least likely to matter:
    the next owner's lanes reach them last).
    """
    ordered = iter(sorted(offsets))
    first = next(ordered, None)
    if first is None:
        return []
    ranges: list[list[int]] = []
    start = last = first
    for offset in ordered:  # once per offset, on every commit: kept lean
        if offset > last + 1:
            ranges.append([start, last + 1])
            start = offset
        last = offset
    ranges.append([start, last + 1])
    if budget is not None:
        # No range is longer in JSON than its two largest offsets and "[,],".
        most = max(0, (budget - 2) // (2 * len(str(last + 1)) + 4))
        del ranges[most:]
    return ranges


def decode_ranges(value: object, at_least: int = 0, limit: int = 1_000_000) -> set[int]:
    """The offsets of ``[[start, end), ...]`` from ``at_least`` on, at most ``limit`` of them.

    Whatever is not a pair of integers is ignored (the record is a hint, never trusted to
    be well formed).
    """
    out: set[int] = set()
    if not isinstance(value, list):
        return out
    for item in value:
        if not (isinstance(item, list) and len(item) == 2):
            continue
        start, end = item
        if not (type(start) is int and type(end) is int):
            continue
        start = max(start, at_least)
        end = min(end, start + limit - len(out))
        out.update(range(start, end))
        if len(out) >= limit:
            break
    return out


def _progress_tp(partition: int) -> TopicPartition:
    return TopicPartition(DELIVERY_PROGRESS, partition)


class Progress:
    """Writes this owner's done-sets; skips what the last owner's say is finished."""

    def __init__(
        self,
        settings: Settings,
        producer: AIOKafkaProducer,
        tracker: OffsetTracker,
        metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._producer = producer
        self._tracker = tracker
        self._metrics = metrics
        # Half of each record's budget per source; far below the largest record.
        self._budget = settings.max_record_bytes // 8
        #: Per deliveries/parked partition: offsets to skip (finished by the last owner).
        self.skips: dict[TopicPartition, set[int]] = {}

    # -- writing (the committer) ----------------------------------------------------------

    async def write(
        self, grown: set[TopicPartition], assigned: set[TopicPartition]
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """Write a progress record for each partition in ``grown``; offsets to commit.

        Returns ``{webhooks.delivery_progress n: OffsetAndMetadata}`` for the records
        acknowledged. Raises :class:`KafkaError` when one could not be written.
        """
        sends: dict[TopicPartition, asyncio.Future[Any]] = {}
        for n in sorted({tp.partition for tp in grown}):
            tp = _progress_tp(n)
            if tp not in assigned:
                continue  # cannot commit there (topic missing, or not ours any more)
            value: dict[str, dict[str, Any]] = {}
            for name, topic in _SOURCES:
                source = TopicPartition(topic, n)
                # With what the last owner finished and this one has not reached yet: the
                # next owner reads only the newest record.
                done = self._tracker.done_beyond(source) + list(self.skips.get(source, ()))
                if done:
                    value[name] = {
                        "committed": self._tracker.head(source),
                        "done": encode_ranges(done, self._budget),
                    }
            if value:
                sends[tp] = await self._producer.send(
                    DELIVERY_PROGRESS, orjson.dumps(value), key=b"p%d" % n, partition=n
                )
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, fut in sends.items():
            offsets[tp] = OffsetAndMetadata((await fut).offset + 1, "")
        return offsets

    # -- reading (a takeover) -------------------------------------------------------------

    def revoked(self, tps: Iterable[TopicPartition] | None) -> None:
        if tps is None:
            self.skips.clear()
        for tp in tps or ():
            self.skips.pop(tp, None)

    def skip(self, tp: TopicPartition, offset: int) -> bool:
        """True (once) when the record at ``offset`` was finished by the last owner."""
        skips = self.skips.get(tp)
        if not skips or offset not in skips:
            return False
        skips.discard(offset)
        if not skips:
            del self.skips[tp]
        self._metrics.takeover_skipped.inc()
        return True

    async def load(self, consumer: AIOKafkaConsumer, parts: list[int]) -> None:
        """Before taking records of ``parts``: the offsets their last owner finished.

        Bounded in time; on any failure it goes on without them (more is repeated).
        """
        for n in parts:
            for _, topic in _SOURCES:
                self.skips.pop(TopicPartition(topic, n), None)
        try:
            found = await asyncio.wait_for(self._load(consumer, parts), _READ_TIMEOUT)
        except (TimeoutError, KafkaError, OSError) as exc:
            log.warning(
                "could not read %s (%r): deliveries finished by the last owner are repeated",
                DELIVERY_PROGRESS,
                exc,
            )
            return
        for n, skipped in sorted(found.items()):
            log.info(
                "takeover of partition %d: %d deliveries its last owner finished are skipped",
                n,
                skipped,
            )

    async def _load(self, consumer: AIOKafkaConsumer, parts: list[int]) -> dict[int, int]:
        want: dict[TopicPartition, int] = {}
        for n in parts:
            committed = await consumer.committed(_progress_tp(n))
            if committed:
                want[_progress_tp(n)] = committed - 1
        if not want:
            return {}
        counts: dict[int, int] = {}
        for n, value in (await self._read(want)).items():
            for name, topic in _SOURCES:
                source = TopicPartition(topic, n)
                entry = value.get(name) if isinstance(value, dict) else None
                if not isinstance(entry, dict):
                    continue
                committed = await consumer.committed(source) or 0
                offsets = decode_ranges(entry.get("done"), at_least=committed)
                if offsets:
                    self.skips[source] = offsets
                    counts[n] = counts.get(n, 0) + len(offsets)
        return counts

    async def _read(self, want: dict[TopicPartition, int]) -> dict[int, object]:
        """The first record at or after ``want[tp]`` of each ``tp`` (compaction may have
        removed the exact one; a later one is just as true)."""
        found: dict[int, object] = {}
        reader = kafka.tail_consumer(self._settings)
        await reader.start()
        try:
            reader.assign(list(want))
            for tp, offset in want.items():
                reader.seek(tp, offset)
            while len(found) < len(want):
                batch = await fetch.getmany(reader, timeout_ms=500)
                for tp, records in batch.items():
                    for record in records:
                        if tp.partition in found or record.offset < want[tp]:
                            continue
                        if isinstance(record, fetch.Undecodable):
                            found[tp.partition] = None  # as an unreadable record (logged)
                            continue
                        try:
                            found[tp.partition] = orjson.loads(record.value or b"null")
                        except orjson.JSONDecodeError:
                            log.warning("unreadable record on %s ignored", DELIVERY_PROGRESS)
                            found[tp.partition] = None
        finally:
            await reader.stop()
        return found
