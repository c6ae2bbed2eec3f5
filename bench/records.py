"""Row 5r: broker records written and read per delivery, per topic, over case A.

Written: every topic's records are counted by reading them, from where each partition
ended before the case to where it ends after (the broker's end offsets alone are not
trusted: Tansu may answer less than the true end for batched writes), divided by the
case's deliveries. Read: what was written times the worker-side readers of the topic in
a one-worker deployment (``READERS``, from the consumers the worker runs; a group reads a
record once in the cluster, a group-less tail once per worker). Case A has one delivery
per event and nothing failing, so retries, parking and dead letters stay at zero.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from webhook_stream.core import topics
from webhook_stream.core.operational import OPERATIONAL

from .report import Row

__all__ = ["READERS", "count_between", "positions", "records_row"]

#: Consumers of one worker (and its status view) that read each topic's every record.
READERS: dict[str, tuple[str, ...]] = {
    "events.bench": ("fan-out group",),
    topics.DELIVERIES: ("delivery group", "status view group"),
    topics.ATTEMPTS: ("status view group",),
    topics.DELIVERY_PROGRESS: ("delivery group",),
    topics.ENDPOINT_HEALTH: ("table tail, every worker",),
    OPERATIONAL: ("status view group",),
}


async def positions(bootstrap: str) -> dict[TopicPartition, int]:
    """Every partition of every topic and its true end now (read up to, see above)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, fetch_max_wait_ms=100, max_poll_records=5000
    )
    await consumer.start()
    try:
        tps = [
            TopicPartition(topic, p)
            for topic in await consumer.topics()
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        if not tps:
            return {}
        consumer.assign(tps)
        for tp, reported in (await consumer.end_offsets(tps)).items():
            consumer.seek(tp, reported)
        await _drain(consumer)
        return {tp: await consumer.position(tp) for tp in tps}
    finally:
        await consumer.stop()


async def count_between(
    bootstrap: str, before: dict[TopicPartition, int], after: dict[TopicPartition, int]
) -> dict[str, int]:
    """Records per topic from ``before`` to ``after`` (partitions new since then from 0)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, fetch_max_wait_ms=100, max_poll_records=5000
    )
    await consumer.start()
    counts: dict[str, int] = {}
    try:
        consumer.assign(list(after))
        for tp in after:
            consumer.seek(tp, before.get(tp, 0))

        def count(tp: TopicPartition, records: list[Any]) -> None:
            n = sum(1 for r in records if r.offset < after[tp])
            counts[tp.topic] = counts.get(tp.topic, 0) + n

        await _drain(consumer, count)
    finally:
        await consumer.stop()
    return counts


async def _drain(consumer: AIOKafkaConsumer, seen: Any = None) -> None:
    quiet = 0
    while quiet < 3:  # three empty fetches in a row: read to the end
        batch = await consumer.getmany(timeout_ms=300)
        quiet = 0 if batch else quiet + 1
        if seen is not None:
            for tp, records in batch.items():
                seen(tp, records)


def records_row(counts: dict[str, int], deliveries: int) -> tuple[Row, dict[str, Any]]:
    """Row 5r: written and read per delivery, total and per topic."""
    per = {t: n / max(1, deliveries) for t, n in sorted(counts.items()) if n}
    read = {t: w * len(READERS.get(t, ())) for t, w in per.items()}
    parts = ", ".join(
        f"{t.removeprefix('webhooks.')} {w:.2f}w/{read[t]:.2f}r" for t, w in per.items()
    )
    row = Row(
        "5r",
        "broker records per delivery (case A): written / read",
        f"{sum(per.values()):.2f} / {sum(read.values()):.2f}",
        "",
        f"per topic, written/read: {parts} (reads: written x the worker's readers of the topic)",
    )
    return row, {"written_per_delivery": per, "read_per_delivery": read}
