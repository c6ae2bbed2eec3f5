"""Consumer lag of this worker's groups, in records and in seconds.

``webhook_consumer_lag{group,topic,partition}``: records behind the end of each
partition a group of this worker owns: the partition's end offset minus the group's
committed offset (the records not yet finished, held in memory ones included), or minus
its beginning when nothing was committed yet. Each worker reports only the partitions
assigned to it, so a sum over the workers counts each partition once; a partition that
moved away is removed from the gauge.

``webhook_consumer_lag_seconds{group}``: the age of the oldest unprocessed record, now
minus the timestamp of the record at the committed offset, the largest over the group's
partitions here (0 when caught up). The timestamp is read by a group-less probe consumer
that fetches one record per lagging partition, and only when the committed offset moved
since the last sample: a stuck partition costs nothing after its first sample.

The status group commits nothing (its store holds its offsets): its view reports the next
offset it will apply per owned partition, through :meth:`LagWatch.watch_positions`.

Per group and interval: ListOffsets and OffsetFetch, plus the fetches above; off the
hot paths, and a failure is logged and skipped, never raised.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Gauge

from webhook_stream.core.errors import StatusUnavailable

__all__ = ["LagWatch", "oldest_age"]

log = logging.getLogger(__name__)

#: Lagging partitions probed for a timestamp per sample (the rest wait for the next one).
_MAX_PROBED = 64
#: How long one sample waits for the probe's records, at most.
_PROBE_WAIT = 2.0

Positions = Callable[[], Awaitable[dict[TopicPartition, int]]]


def oldest_age(
    now_ms: int, behind: Mapping[TopicPartition, int], stamps: Mapping[TopicPartition, int]
) -> float:
    """Seconds since the oldest unprocessed record: over the partitions ``behind`` > 0,
    ``now_ms`` minus the timestamp (ms) of the record at their committed offset. 0 when
    none is behind; partitions without a known timestamp are left out; never negative
    (a producer's clock ahead of ours)."""
    ages = [now_ms - stamps[tp] for tp, n in behind.items() if n > 0 and tp in stamps]
    return max(0.0, max(ages, default=0) / 1000)


class LagWatch:
    """Samples the lag of the consumers :meth:`watch` was given, every ``interval`` s."""

    def __init__(
        self,
        gauge: Gauge,
        age: Gauge | None = None,
        interval: float = 10.0,
        probe_factory: Callable[[], AIOKafkaConsumer] | None = None,
    ) -> None:
        self._gauge = gauge
        self._age = age
        self.interval = interval
        #: Makes the group-less probe consumer (none: no ages).
        self.probe_factory = probe_factory
        self._probe: AIOKafkaConsumer | None = None
        self._stamps: dict[tuple[TopicPartition, int], int] = {}
        self._consumers: dict[str, AIOKafkaConsumer] = {}
        self._positions: dict[str, Positions] = {}
        self._topics: dict[str, frozenset[str] | None] = {}
        self._shown: dict[str, set[TopicPartition]] = {}
        self._running = True
        self._wake = asyncio.Event()

    def watch(
        self, group: str, consumer: AIOKafkaConsumer, topics: frozenset[str] | None = None
    ) -> None:
        """Report ``group``'s lag on ``topics`` (default: all it is assigned) from
        ``consumer`` (started) until :meth:`unwatch`."""
        self._consumers[group] = consumer
        self._topics[group] = topics

    def watch_positions(self, group: str, positions: Positions) -> None:
        """Report the lag of a group that commits nothing: ``positions()`` answers the
        next offset to process per owned partition (end offsets come from the probe)."""
        self._positions[group] = positions

    def unwatch(self, group: str) -> None:
        self._consumers.pop(group, None)
        self._positions.pop(group, None)
        self._show(group, {}, None)

    def stop(self) -> None:
        self._running = False
        self._wake.set()

    async def run(self) -> None:
        try:
            while self._running:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.interval)
                except TimeoutError:
                    pass
                if self._running:
                    await self.sample()
        finally:
            await self._close_probe()

    async def sample(self) -> None:
        """Update the gauges for every watched group once."""
        groups: list[tuple[str, Any, bool]] = [
            *((group, consumer, True) for group, consumer in self._consumers.items()),
            *((group, positions, False) for group, positions in self._positions.items()),
        ]
        used: set[tuple[TopicPartition, int]] = set()
        for group, source, committing in groups:
            if committing and _rebalancing(source):
                # Its assignment reads empty until the group re-joins: keep the last sample
                # (a new topic matching the fan-out's pattern must not hide its lag).
                continue
            try:
                if committing:
                    end, done = await _offsets(source, self._topics.get(group))
                else:
                    end, done = await self._offsets_at(await source())
            except (KafkaError, OSError, StatusUnavailable) as exc:
                # A rebalance, a broker hiccup, a status view restarting: the next will do.
                log.debug("consumer lag of %s not sampled: %r", group, exc)
                continue
            except Exception:
                # A metric must never stop the worker.
                log.warning("consumer lag of %s not sampled", group, exc_info=True)
                continue
            behind = {tp: max(0, end[tp] - done[tp]) for tp in done if tp in end}
            try:
                age = await asyncio.wait_for(self._age_of(behind, done, used), _PROBE_WAIT + 10)
            except (KafkaError, OSError, TimeoutError) as exc:
                log.debug("age of the oldest record of %s not sampled: %r", group, exc)
                age = None  # the record count is still shown
            except Exception:
                log.warning("age of the oldest record of %s not sampled", group, exc_info=True)
                await self._close_probe()  # made again at the next sample
                age = None
            if self._consumers.get(group, self._positions.get(group)) is source:
                self._show(group, behind, age)
        self._stamps = {key: ts for key, ts in self._stamps.items() if key in used}

    async def _offsets_at(
        self, positions: dict[TopicPartition, int]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        if not positions:
            return {}, {}
        probe = await self._get_probe()
        if probe is None:
            return {}, {}
        return await probe.end_offsets(sorted(positions)), positions

    async def _age_of(
        self,
        behind: dict[TopicPartition, int],
        done: dict[TopicPartition, int],
        used: set[tuple[TopicPartition, int]],
    ) -> float | None:
        if self._age is None or self.probe_factory is None:
            return None
        lagging = {tp: done[tp] for tp, n in behind.items() if n > 0}
        used.update(lagging.items())
        await self._read_stamps(lagging)
        stamps = {tp: self._stamps[(tp, o)] for tp, o in lagging.items() if (tp, o) in self._stamps}
        if lagging and not stamps:
            return None  # behind, but no timestamp read yet: not 0, the last value stays
        return oldest_age(int(time.time() * 1000), behind, stamps)

    async def _read_stamps(self, lagging: dict[TopicPartition, int]) -> None:
        """The timestamps of the records at ``lagging``'s offsets not known yet."""
        wanted = {tp: o for tp, o in sorted(lagging.items()) if (tp, o) not in self._stamps}
        wanted = dict(list(wanted.items())[:_MAX_PROBED])
        if not wanted:
            return
        probe = await self._get_probe()
        if probe is None:
            return
        probe.assign(list(wanted))
        try:
            for tp, offset in wanted.items():
                probe.seek(tp, offset)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + min(_PROBE_WAIT, max(self.interval, 0.1))
            while wanted and (left := deadline - loop.time()) > 0:
                got = await probe.getmany(*wanted, timeout_ms=max(1, int(left * 1000)))
                for tp, records in got.items():
                    if records and tp in wanted:
                        # The first record at or after the offset (compaction, markers).
                        self._stamps[(tp, wanted.pop(tp))] = records[0].timestamp
        finally:
            probe.assign([])  # no background fetching between samples

    async def _get_probe(self) -> AIOKafkaConsumer | None:
        if self._probe is None and self.probe_factory is not None:
            probe = self.probe_factory()
            try:
                await probe.start()
            except BaseException:
                await probe.stop()  # its connections, half open
                raise
            self._probe = probe
        return self._probe

    async def _close_probe(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            try:
                await probe.stop()
            except Exception:
                log.debug("lag probe did not stop cleanly", exc_info=True)

    def _show(self, group: str, lag: dict[TopicPartition, int], age: float | None) -> None:
        for tp in self._shown.get(group, set()) - lag.keys():
            try:
                self._gauge.remove(group, tp.topic, str(tp.partition))
            except KeyError:
                pass
        for tp, behind in lag.items():
            self._gauge.labels(group, tp.topic, str(tp.partition)).set(behind)
        self._shown[group] = set(lag)
        if self._age is None:
            return
        if group not in self._consumers and group not in self._positions:
            try:
                self._age.remove(group)
            except KeyError:
                pass
        elif age is not None:
            self._age.labels(group).set(age)


def _rebalancing(consumer: AIOKafkaConsumer) -> bool:
    """A subscribed consumer between losing its assignment and getting the next one."""
    subscription = consumer._subscription.subscription  # aiokafka has no public flag
    return subscription is not None and subscription.assignment is None


async def _committed(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition]
) -> dict[TopicPartition, int | None]:
    """The group's committed offset of each of ``tps`` (None: none), in one request:
    ``consumer.committed`` asks once per partition, which for the retry group's 72
    partitions made an idle worker send 10 requests a second (issue 34)."""
    found = await consumer._coordinator.fetch_committed_offsets(tps)
    out: dict[TopicPartition, int | None] = {}
    for tp in tps:
        offset = found[tp].offset if tp in found else -1
        out[tp] = None if offset == -1 else offset
    return out


async def _offsets(
    consumer: AIOKafkaConsumer, topics: frozenset[str] | None
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """End offsets and the next offset to process (committed, else the beginning)."""
    tps = sorted(tp for tp in consumer.assignment() if topics is None or tp.topic in topics)
    if not tps:
        return {}, {}
    end = await consumer.end_offsets(tps)
    committed = await _committed(consumer, tps)
    missing = [tp for tp, offset in committed.items() if offset is None]
    begin = await consumer.beginning_offsets(missing) if missing else {}
    done = {tp: begin.get(tp, 0) if offset is None else offset for tp, offset in committed.items()}
    return end, done
