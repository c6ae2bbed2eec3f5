"""Prometheus metrics (SPEC section 9). Labels stay low-cardinality: no endpoint ids."""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from webhook_stream.core.lag import LagWatch

__all__ = ["ChildSamples", "Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_E2E_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60, 300, 1800, 3600, 21600, 86400)


class Metrics:
    """One registry per worker, so tests can build several apps in one process."""

    def __init__(
        self,
        lag_interval: float = 10.0,
        lag_probe: Callable[[], AIOKafkaConsumer] | None = None,
    ) -> None:
        """``lag_interval`` and ``lag_probe`` (a factory of the consumer that reads a lagging
        record's timestamp; none: no ages) configure the lag sampling."""
        self.registry = CollectorRegistry()
        r = self.registry
        # The per-delivery metrics: plain numbers read when scraped (`_HotFamilies`). The
        # library's own take a lock per update, 3 % of the delivery loop (measured).
        self.deliveries = HotCounter(
            "webhook_deliveries",
            "Deliveries by final or intermediate outcome.",
            "outcome",
            ("succeeded", "retried", "dead_lettered"),
        )
        self.attempt_duration = HotHistogram(
            "webhook_attempt_duration_seconds", "Duration of one HTTP attempt.", _LATENCY_BUCKETS
        )
        self.end_to_end = HotHistogram(
            "webhook_end_to_end_seconds",
            "Event timestamp to successful delivery.",
            _E2E_BUCKETS,
        )
        self.events = HotCounter(
            "webhook_events",
            "Input events by result.",
            "result",
            ("fanned_out", "no_match", "rejected"),
        )
        r.register(
            _HotFamilies(
                [self.deliveries, self.attempt_duration, self.end_to_end, self.events], time.time()
            )
        )
        self.in_flight = Gauge("webhook_in_flight", "HTTP attempts in flight.", registry=r)
        self.pending = Gauge(
            "webhook_pending_deliveries", "Deliveries held in memory by this worker.", registry=r
        )
        self.parked = Gauge(
            "webhook_parked_deliveries",
            "Deliveries parked for blocked or busy endpoints on this worker's partitions.",
            registry=r,
        )
        self.parked_deferred = Gauge(
            "webhook_parked_deferred",
            "Parked deliveries over their tenant's or endpoint's read-back share (deferred).",
            registry=r,
        )
        self.blocked = Gauge(
            "webhook_blocked_endpoints",
            "Strict endpoints whose head waits for a retry (head-of-line blocked).",
            registry=r,
        )
        self.retry_backlog = Gauge(
            "webhook_retry_backlog",
            "Deliveries waiting in retry topics (buffered here).",
            ["topic"],
            registry=r,
        )
        self.retry_deferred = Gauge(
            "webhook_retry_deferred",
            "Retry records over their tenant's share, left in the log until due (not buffered).",
            ["topic"],
            registry=r,
        )
        self.retry_moved = Counter(
            "webhook_retry_moved",
            "Retry records written again with their due time (out of order, long waits, a "
            "tenant's deferred records holding up others' commit).",
            ["topic"],
            registry=r,
        )
        self.takeover_skipped = Counter(
            "webhook_takeover_skipped",
            "Deliveries a new owner skipped: its partition's last owner had finished them.",
            registry=r,
        )
        self.duplicates_skipped = Counter(
            "webhook_duplicates_skipped",
            "Fresh deliveries skipped: a repeated fan-out's copy of one this worker attempted.",
            registry=r,
        )
        self.undecodable = Counter(
            "webhook_undecodable_batches",
            "Runs of records skipped because they could not be decoded (to webhooks.rejected).",
            registry=r,
        )
        self.stalls = Counter(
            "webhook_stalls",
            "Times the worker's event loop stood still long enough to count as a stall.",
            registry=r,
        )
        self.ownership_dropped = Counter(
            "webhook_ownership_dropped",
            "Work dropped, not done, because ownership of its partition lapsed (a stall).",
            ["loop"],
            registry=r,
        )
        self.throttled = Counter(
            "webhook_throttled",
            "Endpoints that started parking because a budget was full (endpoint or tenant).",
            ["budget"],
            registry=r,
        )
        self.throttled_tenants = Gauge(
            "webhook_throttled_tenants",
            "Tenants with an endpoint parking because a budget was full (this worker).",
            registry=r,
        )
        self.subscriptions = Gauge(
            "webhook_subscriptions", "Subscriptions in this worker's registry.", registry=r
        )
        self.consumer_lag = Gauge(
            "webhook_consumer_lag",
            "Records behind the end of each partition this worker's group consumers own "
            "(end offset minus committed offset).",
            ["group", "topic", "partition"],
            registry=r,
        )
        self.consumer_lag_seconds = Gauge(
            "webhook_consumer_lag_seconds",
            "Age of the oldest unprocessed record of each of this worker's groups: now minus "
            "the timestamp of the record at the committed offset, the largest over the "
            "partitions it owns (0 when caught up).",
            ["group"],
            registry=r,
        )
        #: Samples both for the consumers each loop registers (runtime runs it).
        self.lag = LagWatch(self.consumer_lag, self.consumer_lag_seconds, lag_interval, lag_probe)
        self.status_queries_pending = Gauge(
            "webhook_status_queries_pending",
            "Status queries sent to the status view process and not yet answered.",
            registry=r,
        )
        self.registry_waiting = Gauge(
            "webhook_schema_registry_waiting_partitions",
            "Event partitions paused until the Schema Registry answers for a writer schema.",
            registry=r,
        )
        self.registry_errors = Counter(
            "webhook_schema_registry_errors",
            "Schema Registry requests that got no usable answer (each retried with backoff).",
            registry=r,
        )
        self.succeeded = self.deliveries.labels("succeeded")
        self.retried = self.deliveries.labels("retried")
        self.dead_lettered = self.deliveries.labels("dead_lettered")
        self.fanned_out = self.events.labels("fanned_out")
        self.no_match = self.events.labels("no_match")
        self.rejected = self.events.labels("rejected")

    def samples(self) -> ChildSamples:
        """This process's samples as plain data, for a parent's :meth:`render` (a child
        process answers with them over its pipe; ``_created`` left out: the parent's
        creation times stand)."""
        return [
            [
                f.name,
                [[s.name, s.labels, s.value] for s in f.samples if not s.name.endswith("_created")],
            ]
            for f in self.registry.collect()
        ]

    def render(self, *others: ChildSamples) -> bytes:
        """The exposition; with ``others`` (a child process's :meth:`samples`) added sample
        by sample: each process counts what the other leaves at zero (the same families).
        Plain data, not the child's text: parsing the exposition cost ~4 ms a scrape."""
        if not others:
            return generate_latest(self.registry)
        return generate_latest(_Merged(self.registry, others))


class Count:
    """One labelled counter's value. No lock: only the event loop's thread updates it."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class HotCounter:
    """A counter family of fixed label values (all exposed from the start, at 0)."""

    def __init__(self, name: str, doc: str, label: str, values: tuple[str, ...]) -> None:
        self.name, self.doc, self.label = name, doc, label
        self._children = {v: Count() for v in values}

    def labels(self, value: str) -> Count:
        return self._children[value]

    def family(self, created: float) -> Metric:
        family = CounterMetricFamily(self.name, self.doc, labels=[self.label])
        for value, count in self._children.items():
            family.add_metric([value], count.value, created=created)
        return family


class HotHistogram:
    """A histogram without a lock (bucket ``i`` counts observations ``<= bounds[i]``)."""

    __slots__ = ("_bounds", "_counts", "_sum", "doc", "name")

    def __init__(self, name: str, doc: str, bounds: tuple[float, ...]) -> None:
        self.name, self.doc, self._bounds = name, doc, bounds
        self._counts = [0] * (len(bounds) + 1)  # the last: +Inf
        self._sum = 0.0

    def observe(self, amount: float) -> None:
        self._sum += amount
        self._counts[bisect_left(self._bounds, amount)] += 1

    def family(self, created: float) -> Metric:
        family = HistogramMetricFamily(self.name, self.doc)
        cumulative, buckets = 0, []
        for bound, count in zip((*self._bounds, math.inf), self._counts, strict=True):
            cumulative += count
            buckets.append((floatToGoString(bound), cumulative))
        family.add_metric([], buckets, self._sum)
        family.samples.append(Sample(f"{self.name}_created", {}, created))
        return family


class _HotFamilies:
    """The collector of the hot families: their numbers, read when scraped."""

    def __init__(self, families: list[HotCounter | HotHistogram], created: float) -> None:
        self._families, self._created = families, created

    def collect(self) -> Iterator[Metric]:
        for family in self._families:
            yield family.family(self._created)


#: :meth:`Metrics.samples`: ``[family, [[sample, labels, value], ...]]`` per family.
ChildSamples = list[list[Any]]


class _Merged:
    """A registry's families with other processes' samples added (a collector for
    ``generate_latest``). Both sides are :class:`Metrics`: the same families."""

    def __init__(self, registry: CollectorRegistry, others: tuple[ChildSamples, ...]) -> None:
        self._registry, self._others = registry, others

    def collect(self) -> Iterator[Metric]:
        extra: dict[str, list[list[Any]]] = {}
        for other in self._others:
            for name, samples in other:
                extra.setdefault(name, []).extend(samples)
        for family in self._registry.collect():
            added = extra.get(family.name)
            if added:
                family.samples = _summed(family.samples, added)
            yield family


def _summed(own: list[Sample], added: list[list[Any]]) -> list[Sample]:
    samples = list(own)
    index = {(s.name, tuple(sorted(s.labels.items()))): i for i, s in enumerate(samples)}
    for name, labels, value in added:
        if not isinstance(value, int | float):
            continue  # NaN crosses the pipe's JSON as null: one sample lost, not the scrape
        key = (name, tuple(sorted(labels.items())))
        i = index.get(key)
        if i is None:
            index[key] = len(samples)
            samples.append(Sample(name, labels, value))
        else:
            samples[i] = samples[i]._replace(value=samples[i].value + value)
    return samples
