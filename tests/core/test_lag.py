"""LagWatch: end minus committed per owned partition; labels of partitions moved away go."""

from __future__ import annotations

from aiokafka import TopicPartition

from webhook_stream.core.metrics import Metrics


class FakeConsumer:
    """The four calls LagWatch makes of an aiokafka consumer."""

    def __init__(self, end: dict[TopicPartition, int], committed: dict[TopicPartition, int]):
        self.end, self.done, self.owned = end, committed, set(end)

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.end[tp] for tp in tps}

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.done.get(tp)

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
    consumer.owned = {b}  # a rebalance took partitions 0 and 2 elsewhere
    await metrics.lag.sample()
    assert samples(metrics) == {("ws-deliver", "webhooks.deliveries", "1"): 0}
    metrics.lag.unwatch("ws-deliver")
    assert samples(metrics) == {}
