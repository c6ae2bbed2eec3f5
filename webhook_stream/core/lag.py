"""Consumer lag: ``webhook_consumer_lag{group,topic,partition}`` for this worker's groups.

Records behind the end of each partition a group consumer of this worker owns: the
partition's end offset minus the group's committed offset (the records not yet
finished, held in memory ones included), or minus its beginning when nothing was
committed yet. Each worker reports only the partitions assigned to it, so a sum over the
workers counts each partition once; a partition that moved away is removed from the
gauge. Two broker requests per group and interval (ListOffsets, OffsetFetch): cheap
enough to run always.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Gauge

__all__ = ["LagWatch"]

log = logging.getLogger(__name__)


class LagWatch:
    """Samples the lag of the consumers :meth:`watch` was given, every ``interval`` s."""

    def __init__(self, gauge: Gauge, interval: float = 10.0) -> None:
        self._gauge = gauge
        self.interval = interval
        self._consumers: dict[str, AIOKafkaConsumer] = {}
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

    def unwatch(self, group: str) -> None:
        self._consumers.pop(group, None)
        self._show(group, {})

    def stop(self) -> None:
        self._running = False
        self._wake.set()

    async def run(self) -> None:
        while self._running:
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except TimeoutError:
                pass
            if self._running:
                await self.sample()

    async def sample(self) -> None:
        """Update the gauge for every watched group once."""
        for group, consumer in list(self._consumers.items()):
            try:
                lag = await _lag(consumer, self._topics.get(group))
            except (KafkaError, OSError) as exc:
                # A rebalance or a broker hiccup: the next sample will do.
                log.debug("consumer lag of %s not sampled: %r", group, exc)
                continue
            except Exception:
                # A metric must never stop the worker.
                log.warning("consumer lag of %s not sampled", group, exc_info=True)
                continue
            if self._consumers.get(group) is consumer:
                self._show(group, lag)

    def _show(self, group: str, lag: dict[TopicPartition, int]) -> None:
        for tp in self._shown.get(group, set()) - lag.keys():
            try:
                self._gauge.remove(group, tp.topic, str(tp.partition))
            except KeyError:
                pass
        for tp, behind in lag.items():
            self._gauge.labels(group, tp.topic, str(tp.partition)).set(behind)
        self._shown[group] = set(lag)


async def _lag(
    consumer: AIOKafkaConsumer, topics: frozenset[str] | None
) -> dict[TopicPartition, int]:
    tps = sorted(tp for tp in consumer.assignment() if topics is None or tp.topic in topics)
    if not tps:
        return {}
    end = await consumer.end_offsets(tps)
    committed = {tp: await consumer.committed(tp) for tp in tps}
    missing = [tp for tp, offset in committed.items() if offset is None]
    begin = await consumer.beginning_offsets(missing) if missing else {}
    lag: dict[TopicPartition, int] = {}
    for tp in tps:
        if tp not in end:
            continue
        done = committed[tp]
        if done is None:
            done = begin.get(tp, 0)
        lag[tp] = max(0, end[tp] - done)
    return lag
