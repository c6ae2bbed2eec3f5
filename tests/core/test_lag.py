"""LagWatch: end minus committed per owned partition; labels of partitions moved away go."""

from __future__ import annotations

import time
from types import SimpleNamespace

from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from webhook_stream.core.lag import oldest_age
from webhook_stream.core.metrics import Metrics


class FakeConsumer:
    """The calls LagWatch makes of an aiokafka consumer (committed offsets through its
    coordinator, all partitions in one request)."""

    def __init__(self, end: dict[TopicPartition, int], committed: dict[TopicPartition, int]):
        self.end, self.done, self.owned = end, committed, set(end)
        # aiokafka's subscription state: ``assignment`` is None while the group re-joins.
        self._subscription = SimpleNamespace(subscription=SimpleNamespace(assignment=object()))
        self._coordinator = SimpleNamespace(fetch_committed_offsets=self._fetch_committed)
        #: Committed-offset requests made (one per sample, however many partitions).
        self.offset_fetches = 0

    def rejoining(self, yes: bool) -> None:
        self._subscription.subscription.assignment = None if yes else object()

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.end[tp] for tp in tps}

    async def _fetch_committed(
        self, tps: list[TopicPartition]
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        self.offset_fetches += 1
        # Kafka answers -1 for a partition without a committed offset.
        return {tp: OffsetAndMetadata(self.done.get(tp, -1), "") for tp in tps}

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 2)


def samples(metrics: Metrics) -> dict[tuple[str, str, str], float]:
    (family,) = [m for m in metrics.registry.collect() if m.name == "webhook_consumer_lag"]
    return {
        (s.labels["group"], s.labels["topic"], s.labels["partition"]): s.value
        for s in family.samples
    }


async def test_lag_per_partition_and_labels_follow_the_assignment() -> None:
    metrics = Metrics()
    a, b, p = (TopicPartition("webhooks.deliveries", n) for n in (0, 1, 2))
    progress = TopicPartition("webhooks.delivery_progress", 0)
    consumer = FakeConsumer({a: 10, b: 7, p: 5, progress: 9}, {a: 4, b: 7})
    metrics.lag.watch("ws-deliver", consumer, frozenset({"webhooks.deliveries"}))  # type: ignore[arg-type]
    await metrics.lag.sample()
    assert samples(metrics) == {
        ("ws-deliver", "webhooks.deliveries", "0"): 6,
        ("ws-deliver", "webhooks.deliveries", "1"): 0,
        ("ws-deliver", "webhooks.deliveries", "2"): 3,  # nothing committed: from the beginning
    }
    assert consumer.offset_fetches == 1  # one request for the three partitions
    consumer.owned, consumer.done[a] = set(), 10  # mid-rebalance: the assignment reads empty
    consumer.rejoining(True)
    await metrics.lag.sample()
    assert samples(metrics)[("ws-deliver", "webhooks.deliveries", "0")] == 6  # the last sample
    consumer.rejoining(False)
    consumer.owned = {b}  # the rebalance took partitions 0 and 2 elsewhere
    await metrics.lag.sample()
    assert samples(metrics) == {("ws-deliver", "webhooks.deliveries", "1"): 0}
    metrics.lag.unwatch("ws-deliver")
    assert samples(metrics) == {}


def test_oldest_age_is_the_oldest_lagging_record_and_0_when_caught_up() -> None:
    a, b, c = (TopicPartition("webhooks.retry.5s", n) for n in (0, 1, 2))
    now = 1_000_000
    # b is the oldest record, c is older still but caught up, a has no timestamp yet.
    behind = {a: 3, b: 1, c: 0}
    stamps = {b: now - 7_500, c: now - 60_000}
    assert oldest_age(now, behind, stamps) == 7.5
    assert oldest_age(now, {a: 0, b: 0}, stamps) == 0.0
    assert oldest_age(now, {}, {}) == 0.0
    assert oldest_age(now, {a: 2}, {}) == 0.0  # nothing known: nothing claimed
    assert oldest_age(now, {b: 1}, {b: now + 2_000}) == 0.0  # a producer's clock ahead


class FakeRecord:
    def __init__(self, timestamp: int) -> None:
        self.timestamp = timestamp


class FakeProbe:
    """The group-less consumer LagWatch reads timestamps (and the status group's ends) with."""

    def __init__(
        self, end: dict[TopicPartition, int], stamps: dict[tuple[TopicPartition, int], int]
    ):
        self.end, self.stamps = end, stamps
        self.assigned: list[TopicPartition] = []
        self.at: dict[TopicPartition, int] = {}
        self.fetched: list[tuple[TopicPartition, int]] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.end[tp] for tp in tps}

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = list(tps)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.at[tp] = offset

    async def getmany(self, *tps: TopicPartition, timeout_ms: int) -> dict:
        self.fetched += [(tp, self.at[tp]) for tp in tps]
        return {tp: [FakeRecord(self.stamps[(tp, self.at[tp])])] for tp in tps}


def ages(metrics: Metrics) -> dict[str, float]:
    (family,) = [m for m in metrics.registry.collect() if m.name == "webhook_consumer_lag_seconds"]
    return {s.labels["group"]: s.value for s in family.samples}


async def test_age_per_group_probes_each_offset_once_and_reports_a_positions_group() -> None:
    metrics = Metrics()
    retry = TopicPartition("webhooks.retry.5s", 0)
    status = TopicPartition("webhooks.deliveries", 1)
    now = int(time.time() * 1000)
    probe = FakeProbe({status: 9}, {(retry, 4): now - 30_000, (status, 6): now - 5_000})
    metrics.lag.probe_factory = lambda: probe  # type: ignore[assignment,return-value]
    consumer = FakeConsumer({retry: 10}, {retry: 4})
    positions = {status: 6}

    async def status_positions() -> dict[TopicPartition, int]:
        return dict(positions)

    metrics.lag.watch("ws-retry", consumer)  # type: ignore[arg-type]
    metrics.lag.watch_positions("ws-status", status_positions)
    await metrics.lag.sample()
    assert samples(metrics) == {
        ("ws-retry", "webhooks.retry.5s", "0"): 6,
        ("ws-status", "webhooks.deliveries", "1"): 3,
    }
    got = ages(metrics)
    assert 30 <= got["ws-retry"] < 35 and 5 <= got["ws-status"] < 10, got
    await metrics.lag.sample()
    assert len(probe.fetched) == 2  # offsets unchanged: their timestamps are known
    assert probe.assigned == []  # nothing fetched in the background between samples
    consumer.done[retry], positions[status] = 10, 9  # caught up
    await metrics.lag.sample()
    assert ages(metrics) == {"ws-retry": 0.0, "ws-status": 0.0}
    metrics.lag.unwatch("ws-retry")
    assert ages(metrics) == {"ws-status": 0.0}


async def test_a_failing_probe_keeps_the_record_count_and_the_last_age() -> None:
    metrics = Metrics()
    tp = TopicPartition("webhooks.deliveries", 0)
    now = int(time.time() * 1000)
    probe = FakeProbe({}, {(tp, 4): now - 3_000})
    metrics.lag.probe_factory = lambda: probe  # type: ignore[assignment,return-value]
    consumer = FakeConsumer({tp: 10}, {tp: 4})
    metrics.lag.watch("ws-deliver", consumer)  # type: ignore[arg-type]
    await metrics.lag.sample()
    assert 3 <= ages(metrics)["ws-deliver"] < 8

    async def broken(*_tps: TopicPartition, timeout_ms: int) -> dict:
        raise RuntimeError("a bug in the probe")

    probe.getmany = broken  # type: ignore[method-assign]
    consumer.done[tp], consumer.end[tp] = 6, 12  # moved: the new offset's record is read
    await metrics.lag.sample()  # logged, not raised
    assert samples(metrics) == {("ws-deliver", "webhooks.deliveries", "0"): 6}
    assert 3 <= ages(metrics)["ws-deliver"] < 8  # the last value, not a false 0
