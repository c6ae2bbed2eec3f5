"""``webhook-stream reseal``: re-write every subscription sealed with the newest key.

After a new key is prepended to ``WEBHOOK_STREAM_SECRET_KEY`` (``NEW,OLD``), records
sealed with ``OLD`` stay readable but keep ``OLD`` needed. This reads the latest record of
every endpoint, opens its secrets and header values with any configured key, seals them
with the newest one and writes the record back (same key, so the same partition): the old
record becomes superseded and compaction drops it. Only secret fields change.

A write that lands between our read and our write (an API PATCH meanwhile) would be
overwritten by our older copy; so after writing, the records that arrived since the read
are checked, and any such write is itself re-sealed and written again (it wins, as it
did before). Values that no configured key opens are reported and left as they are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaProducer

from webhook_stream.core import fetch, kafka
from webhook_stream.core.errors import ConfigError
from webhook_stream.core.sealing import SETTING, SecretBox, SecretKeyError
from webhook_stream.core.settings import Settings
from webhook_stream.core.topics import SUBSCRIPTIONS
from webhook_stream.subscriptions.secrets import seal_subscription_secrets

__all__ = ["ResealSummary", "reseal"]

_PROGRESS_EVERY = 1000
_ROUNDS = 3


@dataclass
class ResealSummary:
    scanned: int = 0  # records read
    endpoints: int = 0  # live endpoints (latest record not a tombstone)
    resealed: int = 0  # records written back
    concurrent: int = 0  # writes made meanwhile, re-sealed again
    failed: list[str] = field(default_factory=list)  # endpoint ids no key opens


Progress = Callable[[ResealSummary], None]
_Latest = dict[bytes, tuple[int, int, bytes | None]]  # key -> (partition, offset, value)


async def _read(
    settings: Settings,
    start: dict[int, int] | None,
    summary: ResealSummary,
    progress: Progress,
    skip: AbstractSet[tuple[int, int]] = frozenset(),
) -> tuple[_Latest, dict[int, int]]:
    """Latest record per key from ``start`` (default: the beginning) to the end now,
    leaving out the records at ``skip`` (partition, offset)."""
    consumer = kafka.tail_consumer(settings, max_poll_records=5000)
    await consumer.start()
    try:
        tps = await fetch.partitions_of(consumer, SUBSCRIPTIONS)
        if not tps:
            raise ConfigError(f"topic {SUBSCRIPTIONS} does not exist (run webhook-stream topics)")
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        for tp in tps:
            if start is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, start.get(tp.partition, 0))
        latest: _Latest = {}
        async for tp, record in fetch.read_to_end(consumer, end, max_records=5000):
            if record.offset >= end[tp] or record.key is None:
                continue
            if (tp.partition, record.offset) in skip:
                continue
            latest[record.key] = (tp.partition, record.offset, record.value)
            summary.scanned += 1
            if summary.scanned % _PROGRESS_EVERY == 0:
                progress(summary)
        return latest, {tp.partition: off for tp, off in end.items()}
    finally:
        await consumer.stop()


def _resealed(value: bytes, box: SecretBox) -> bytes:
    doc = orjson.loads(value)
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    return orjson.dumps(seal_subscription_secrets(doc, box))


async def reseal(
    settings: Settings, producer: AIOKafkaProducer, progress: Progress
) -> ResealSummary:
    """Re-seal every live subscription with the newest key of ``WEBHOOK_STREAM_SECRET_KEY``."""
    box = SecretBox.from_setting(settings.secret_key)
    if box is None:
        raise ConfigError(f"{SETTING} is not set: there is no key to seal with")
    summary = ResealSummary()
    latest, end = await _read(settings, None, summary, progress)
    summary.endpoints = sum(1 for _, _, value in latest.values() if value is not None)
    written: dict[bytes, tuple[int, int]] = {}
    for round_ in range(_ROUNDS):
        pending: list[tuple[bytes, asyncio.Future]] = []
        for key, (_, _, value) in latest.items():
            if value is None:
                continue
            try:
                new = _resealed(value, box)
            except (SecretKeyError, ValueError):
                summary.failed.append(key.decode("utf-8", "replace"))
                continue
            pending.append((key, await producer.send(SUBSCRIPTIONS, new, key=key)))
        for key, future in pending:
            meta = await future
            written[key] = (meta.partition, meta.offset)
            if round_ == 0:
                summary.resealed += 1
                if summary.resealed % _PROGRESS_EVERY == 0:
                    progress(summary)
            else:
                summary.concurrent += 1
        # Writes by others since our read, older than our copy of the same endpoint.
        ours = set(written.values())
        since, end = await _read(settings, end, ResealSummary(), lambda _: None, ours)
        latest = {
            key: record
            for key, record in since.items()
            if key in written and record[0] == written[key][0] and record[1] < written[key][1]
        }
        if not latest:
            break
    return summary
