"""Row 4 by hop: where an event's end-to-end latency goes, read back from the topics.

For each of row 4's deliveries (endpoints ``ep_lat_*``):

- *fan-out hop*: the event's ``sent_at`` (set right before it is produced) to its delivery
  record's timestamp (set by the fan-out's producer as it queues the record): the event's
  produce, the fan-out's fetch wait, decoding and matching;
- *delivery hop*: that timestamp to the attempt's start (``attempted_at`` less its
  ``duration_ms``): the fan-out's produce, the worker's fetch wait, its lane;
- *HTTP*: the attempt's duration (request written to response read).

All three clocks are this machine's ``time.time()``; the record timestamps are whole ms.
"""

from __future__ import annotations

import statistics
from datetime import datetime

import orjson
from aiokafka import AIOKafkaConsumer

from webhook_stream.core.fetch import open_topic, read_to_end
from webhook_stream.core.topics import ATTEMPTS, DELIVERIES

from .report import p99_of

PREFIX = b"ep_lat_"


async def _read(bootstrap: str, topic: str, prefix: bytes = PREFIX) -> list[tuple[int, bytes]]:
    """(timestamp ms, value) of every record of ``topic`` whose key starts with ``prefix``
    (a row-4 endpoint's, by default)."""
    # A consumer per topic: one assigned a topic keeps only that topic's metadata.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await open_topic(consumer, topic)
        end = await consumer.end_offsets(tps)
        found = []
        async for _tp, record in read_to_end(consumer, end):
            if record.key is not None and record.key.startswith(prefix) and record.value:
                found.append((record.timestamp, record.value))
        return found
    finally:
        await consumer.stop()


async def hop_latencies(bootstrap: str) -> dict[str, list[float]]:
    """Seconds per hop (``fan-out``, ``delivery``, ``http``), one entry per delivery."""
    queued: dict[str, tuple[float, float]] = {}
    for ts_ms, value in await _read(bootstrap, DELIVERIES):
        doc = orjson.loads(value)
        if doc.get("attempts"):
            continue  # a retry's record, not the fan-out's
        sent_at = orjson.loads(doc["event"]["data"])["sent_at"]  # data: JSON text
        queued[doc["delivery_id"]] = (sent_at, ts_ms / 1000)
    hops: dict[str, list[float]] = {"fan-out": [], "delivery": [], "http": []}
    for _ts_ms, value in await _read(bootstrap, ATTEMPTS):
        doc = orjson.loads(value)
        first = queued.pop(doc["delivery_id"], None)
        if first is None:
            continue
        sent_at, fanned_at = first
        duration = doc["duration_ms"] / 1000
        started = datetime.fromisoformat(doc["attempted_at"]).timestamp() - duration
        hops["fan-out"].append(fanned_at - sent_at)
        hops["delivery"].append(started - fanned_at)
        hops["http"].append(duration)
    return hops


def hop_percentiles(hops: dict[str, list[float]]) -> dict[str, tuple[float, float]]:
    """p50 and p99 in ms of each hop read back."""
    out = {}
    for name, values in hops.items():
        if values:
            ordered = sorted(values)
            out[name] = (statistics.median(ordered) * 1000, p99_of(ordered) * 1000)
    return out


def hop_summary(hops: dict[str, list[float]]) -> str:
    """``fan-out 12/21, delivery 14/25, http 1/3 ms (p50/p99)``."""
    parts = [f"{name} {p50:.0f}/{p99:.0f}" for name, (p50, p99) in hop_percentiles(hops).items()]
    return ", ".join(parts) + " ms (p50/p99)" if parts else "no hops read back"


async def outcomes(bootstrap: str, endpoint_id: str) -> str:
    """What the delivery log says of one endpoint's deliveries: why some never arrived.

    ``120 delivery records; attempts: succeeded 118, retrying 2``.
    """
    key = endpoint_id.encode()
    deliveries = [v for _, v in await _read(bootstrap, DELIVERIES, key)]
    counts: dict[str, int] = {}
    for _, value in await _read(bootstrap, ATTEMPTS, key):
        doc = orjson.loads(value)
        label = (
            doc["outcome"]
            if doc["outcome"] == "succeeded"
            else f"{doc['outcome']} ({doc.get('error') or doc.get('status_code')})"
        )
        counts[label] = counts.get(label, 0) + 1
    seen = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))
    return f"{len(deliveries):,} delivery records; attempts: {seen or 'none'}"
