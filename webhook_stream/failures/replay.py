"""Replay: re-queue dead-lettered deliveries, or re-fan-out a time range of a source topic.

Both keep the ``webhook-id`` (it is derived from the event id and the endpoint id), so
receivers that deduplicate on it see a replayed delivery as the same message. Replaying
dead letters skips deliveries that have succeeded since (safe to run twice; ``force``
re-sends anyway). Replaying events re-sends whatever matches: run it twice and endpoints
get the events twice, with the same ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from webhook_stream.core import fetch, kafka
from webhook_stream.core.errors import RejectedEvent, WebhookStreamError
from webhook_stream.core.records import H_DELIVERY, H_STATUS, DeadLetterRecord, Delivery
from webhook_stream.core.settings import Settings, parse_duration
from webhook_stream.core.topics import ATTEMPTS, DEADLETTER
from webhook_stream.ingest.decoding import parse_record
from webhook_stream.ingest.fanout import fan_out, send_delivery
from webhook_stream.subscriptions.index import SubscriptionIndex

__all__ = ["ReplayError", "ReplaySummary", "parse_time", "replay_deadletter", "replay_events"]

log = logging.getLogger(__name__)

Progress = Callable[["ReplaySummary"], None]
_PROGRESS_EVERY = 1000


class ReplayError(WebhookStreamError):
    """A replay request is invalid (unknown topic, missing tenant, bad time)."""


@dataclass
class ReplaySummary:
    scanned: int = 0
    matched: int = 0
    requeued: int = 0
    skipped_succeeded: int = 0
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_time(text: str, now: float | None = None) -> float:
    """ISO-8601 (``2026-11-23T10:00:00Z``) or an age such as ``2h`` / ``30m`` ago."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?(ms|s|m|h|d)", text):
        return (time.time() if now is None else now) - parse_duration(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ReplayError(f"not a time: {text!r} (use ISO-8601 or an age like 2h)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


async def scan(
    settings: Settings,
    topic: str,
    since: float | None,
    until: float | None,
    *,
    missing_ok: bool = False,
) -> AsyncIterator[Any]:
    """Records of ``topic`` with timestamps in [since, until], up to the end at call time.

    ``missing_ok``: a topic that does not exist has no records (a tenant is not told
    which topics exist), else it is a :class:`ReplayError`.
    """
    consumer = kafka.tail_consumer(settings, max_poll_records=5000)
    await consumer.start()
    try:
        tps = await fetch.partitions_of(consumer, topic)
        if not tps:
            if missing_ok:
                return
            raise ReplayError(f"topic {topic!r} does not exist")
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        if since is None:
            await consumer.seek_to_beginning(*tps)
        else:
            found = await consumer.offsets_for_times(dict.fromkeys(tps, int(since * 1000)))
            for tp in tps:
                if found.get(tp) is None:
                    consumer.seek(tp, end[tp])
                else:
                    consumer.seek(tp, found[tp].offset)
        until_ms = None if until is None else int(until * 1000)
        since_ms = None if since is None else int(since * 1000)
        # "The end at call time" is every record written before the call, not only those
        # below the end offset read at the start: Tansu's high-water mark can trail the
        # records a fetch returns (under load, the newest dead letter was missed). So a
        # partition is done only once a fetch past that offset comes back empty, and what
        # lies beyond it counts if it was written before the call.
        called_ms = int(time.time() * 1000)
        remaining = set(tps)
        while remaining:
            batch = await fetch.getmany(consumer, *remaining, timeout_ms=500, max_records=5000)
            for tp in list(remaining):
                records = batch.get(tp, [])
                for record in records:
                    if isinstance(record, fetch.Undecodable):
                        continue  # logged; the fan-out rejected it when it read it
                    if record.offset >= end[tp]:
                        if record.timestamp > called_ms:
                            remaining.discard(tp)  # written after the call: the end
                            break
                        if since_ms is not None and record.timestamp < since_ms:
                            continue
                    if until_ms is None or record.timestamp <= until_ms:
                        yield record
                if not records and await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()


async def _counted(
    scanning: AsyncIterator[Any], summary: ReplaySummary, progress: Progress | None, count: bool
) -> AsyncIterator[Any]:
    """``scanning``, counting each record into ``summary`` (unless ``count`` is False: the
    caller counts only its own) and reporting progress."""
    async for record in scanning:
        if count:
            summary.scanned += 1
            if progress and summary.scanned % _PROGRESS_EVERY == 0:
                progress(summary)
        yield record


async def _requeue(
    producer: AIOKafkaProducer, deliveries: list[Delivery], summary: ReplaySummary
) -> ReplaySummary:
    """Send ``deliveries`` (none on a dry run) and wait until the broker has them all."""
    summary.matched += len(deliveries)
    if not summary.dry_run:
        await asyncio.gather(*[await send_delivery(producer, d) for d in deliveries])
        summary.requeued = len(deliveries)
    return summary


async def _succeeded_since(settings: Settings, since: float | None) -> set[str]:
    ids: set[str] = set()
    async for record in scan(settings, ATTEMPTS, since, None):
        headers = dict(record.headers or ())
        if headers.get(H_STATUS) == b"succeeded" and H_DELIVERY in headers:
            ids.add(headers[H_DELIVERY].decode())
    return ids


async def replay_deadletter(
    settings: Settings,
    producer: AIOKafkaProducer,
    *,
    endpoint: str | None = None,
    tenant: str | None = None,
    since: float | None = None,
    until: float | None = None,
    dry_run: bool = False,
    force: bool = False,
    progress: Progress | None = None,
    delivery: str | None = None,
    scoped: bool = False,
    live: Callable[[Delivery], bool] | None = None,
) -> ReplaySummary:
    """Re-queue dead-lettered deliveries (latest record per delivery id) to their endpoints.

    ``delivery`` replays that one delivery id only (the console's "Replay" on one row).
    ``live`` keeps only deliveries of endpoints as they are now (the API: of the current
    incarnation of the id). ``scoped`` (a tenant's request): ``scanned`` counts only the
    records that pass the filters, so nothing of other tenants shows.
    """
    summary = ReplaySummary(dry_run=dry_run)
    latest: dict[str, Delivery] = {}
    scanning = scan(settings, DEADLETTER, since, until, missing_ok=scoped)
    async for record in _counted(scanning, summary, progress, not scoped):
        try:
            found = DeadLetterRecord.to_delivery(record.value)
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("skipping undecodable dead-letter record at offset %s", record.offset)
            continue
        if endpoint is not None and found.endpoint_id != endpoint:
            continue
        if tenant is not None and found.tenant_id != tenant:
            continue
        if delivery is not None and found.delivery_id != delivery:
            continue
        if live is not None and not live(found):
            continue
        if scoped:
            summary.scanned += 1
        latest[found.delivery_id] = found
    if tenant is None and endpoint is None:
        tenants = {d.tenant_id for d in latest.values()}
        if len(tenants) > 1:
            raise ReplayError(
                f"dead letters of {len(tenants)} tenants match: pass --tenant (or --endpoint)"
            )
    done = set() if force else await _succeeded_since(settings, since)
    todo = [d for delivery_id, d in latest.items() if delivery_id not in done]
    summary.skipped_succeeded = len(latest) - len(todo)
    return await _requeue(producer, todo, summary)


async def replay_events(
    settings: Settings,
    producer: AIOKafkaProducer,
    index: SubscriptionIndex,
    *,
    topic: str,
    since: float,
    until: float | None = None,
    endpoint: str | None = None,
    tenant: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    scoped: bool = False,
) -> ReplaySummary:
    """Fan a time range of ``topic`` out again, optionally to one endpoint or tenant only.

    ``scoped`` (a tenant's request): ``scanned`` counts the tenant's events only, and a
    topic that does not exist is as empty (a tenant is not told which topics exist).
    """
    if not re.match(settings.events_pattern, topic):
        raise ReplayError(f"{topic!r} is not an events topic ({settings.events_pattern})")
    if endpoint is None and tenant is None and len({s.tenant_id for s in index}) > 1:
        raise ReplayError("endpoints belong to several tenants: pass --tenant (or --endpoint)")
    summary = ReplaySummary(dry_run=dry_run)
    todo: list[Delivery] = []
    scanning = scan(settings, topic, since, until, missing_ok=scoped)
    async for record in _counted(scanning, summary, progress, not scoped):
        try:
            event = parse_record(record, settings.max_event_bytes)
        except RejectedEvent:
            continue  # it went to webhooks.rejected the first time
        if tenant is None or event.tenant_id == tenant:
            if scoped:
                summary.scanned += 1
            todo.extend(
                fan_out(
                    event, index, only_endpoint=endpoint, origin="replay", headers=record.headers
                )
            )
    return await _requeue(producer, todo, summary)
