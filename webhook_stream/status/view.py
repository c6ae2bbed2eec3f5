"""Delivery status and the attempt log, as every worker sees them.

Each worker's status view process (:mod:`.process`) tails
``webhooks.deliveries``, ``webhooks.attempts`` and ``webhooks.deadletter`` (group-less,
from ``status_window`` ago) into bounded in-memory views, so any worker answers
``GET /deliveries/{id}`` and ``GET /subscriptions/{id}/attempts`` without routing the
request. Faust tables would need a repartition by delivery id and their multi-worker
recovery was unreliable on Tansu (notes: faust-on-tansu section 2). Records are indexed
by their ``ws-*`` headers and parsed only when read.

Beside them (for the console): the deliveries now dead-lettered (an index, so listing them
never scans a topic) and per-minute attempt counters per endpoint and in total
(:mod:`.stats`).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections import OrderedDict, deque
from datetime import datetime
from typing import Any

import orjson
from aiokafka import TopicPartition

from webhook_stream.core import kafka
from webhook_stream.core.records import H_DELIVERY, H_STATUS, to_iso
from webhook_stream.core.settings import Settings
from webhook_stream.core.topics import ATTEMPTS, DEADLETTER, DELIVERIES
from webhook_stream.status.stats import EndpointStats, MinuteCounts, rate_summary, summed

__all__ = ["DeliveryLog"]

log = logging.getLogger(__name__)

#: Attempt outcome -> delivery status.
_STATUS_OF_OUTCOME = {"succeeded": "succeeded", "retrying": "retrying", "failed": "dead_lettered"}


#: One delivery's view: (endpoint_id, status, attempts, dead_letter, status_ms), where
#: ``status_ms`` is the timestamp of the record that set ``status`` (the three topics are
#: read independently, so a replay record can arrive after the attempt that followed it).
#: A plain tuple of strings, bytes and ints, replaced on update: the garbage collector
#: stops tracking such tuples, so tens of thousands of them do not lengthen its full
#: passes (mutable objects here made those 50-100 ms under load, measured).
_State = tuple[str, str, tuple[bytes, ...], bytes | None, int]

#: A dead-lettered delivery in the index: (dead_lettered_at ms, endpoint_id, tenant_id).
_Dead = tuple[int, str, str | None]

#: Fields of a dead-letter record a listing shows (not the event's data).
_DEAD_FIELDS = (
    "delivery_id",
    "endpoint_id",
    "tenant_id",
    "attempts",
    "last_status_code",
    "last_error",
    "first_attempt_at",
    "last_attempt_at",
    "created_at",
    "dead_lettered_at",
    "reason",
)


def _attempt_key(attempt: dict[str, Any]) -> str:
    """Sort key (and cursor) of an attempt: time, delivery, attempt number."""
    return f"{attempt['attempted_at']}|{attempt['delivery_id']}|{attempt['attempt']:06d}"


def _iso_ms(text: Any, default: int) -> int:
    try:
        return int(datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return default


class DeliveryLog:
    """Bounded views: the latest deliveries by id and the latest attempts per endpoint."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._deliveries: OrderedDict[str, _State] = OrderedDict()
        self._attempts: OrderedDict[str, deque[bytes]] = OrderedDict()
        self._dead: dict[str, _Dead] = {}
        self._stats: OrderedDict[str, EndpointStats] = OrderedDict()
        self._totals = MinuteCounts()
        self._running = True

    def stop(self) -> None:
        self._running = False

    # -- reads (API)
    def delivery(self, delivery_id: str) -> dict[str, Any] | None:
        state = self._deliveries.get(delivery_id)
        if state is None:
            return None
        endpoint_id, status, attempts, dead_letter, _ = state
        body: dict[str, Any] = {
            "delivery_id": delivery_id,
            "endpoint_id": endpoint_id,
            "status": status,
            "attempts": [orjson.loads(a) for a in attempts],
        }
        if dead_letter is not None:
            dl = orjson.loads(dead_letter)
            body["dead_letter"] = {k: dl[k] for k in ("reason", "dead_lettered_at", "last_error")}
        return body

    def attempts(
        self, endpoint_id: str, *, limit: int = 50, outcome: str | None = None
    ) -> list[dict[str, Any]]:
        """The endpoint's latest attempts, newest first."""
        return self.attempt_page(endpoint_id, limit=limit, outcome=outcome)["items"]

    def attempt_page(
        self,
        endpoint_id: str,
        *,
        limit: int = 50,
        outcome: str | None = None,
        event_type: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        after: str | None = None,
    ) -> dict[str, Any]:
        """One page of the endpoint's kept attempts, newest first: ``{"items", "next"}``.

        ``next`` is the last item's key (:func:`_attempt_key`); at most
        ``attempts_per_endpoint`` attempts are kept, so this sorts a few dozen records.
        """
        since = None if since_ms is None else to_iso(since_ms / 1000)
        until = None if until_ms is None else to_iso(until_ms / 1000)
        chosen = []
        for raw in self._attempts.get(endpoint_id, ()):
            a = orjson.loads(raw)
            if outcome is not None and a["outcome"] != outcome:
                continue
            if event_type is not None and a.get("event_type") != event_type:
                continue
            at = a["attempted_at"]
            if (since is not None and at < since) or (until is not None and at > until):
                continue
            key = _attempt_key(a)
            if after is None or key < after:
                chosen.append((key, a))
        chosen.sort(key=lambda pair: pair[0], reverse=True)
        more = len(chosen) > limit
        chosen = chosen[:limit]
        return {
            "items": [a for _, a in chosen],
            "next": chosen[-1][0] if more else None,
        }

    def deadletters(
        self,
        *,
        endpoint_id: str | None = None,
        tenant_id: str | None = None,
        scoped: bool = False,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> dict[str, Any]:
        """Deliveries now dead-lettered, newest first: ``{"items", "next"}``.

        ``scoped`` keeps only ``tenant_id``'s (a tenant token; None is then tenant-less).
        The index holds only dead-lettered deliveries, so this never reads a topic.
        """

        def wanted(did: str, dead: _Dead) -> bool:
            at, endpoint, tenant = dead
            return (
                (endpoint_id is None or endpoint == endpoint_id)
                and (not scoped or tenant == tenant_id)
                and (since_ms is None or at >= since_ms)
                and (until_ms is None or at <= until_ms)
                and (after is None or f"{at:015d}|{did}" < after)
            )

        found = heapq.nlargest(
            limit + 1,
            ((dead[0], did) for did, dead in self._dead.items() if wanted(did, dead)),
        )
        more = len(found) > limit
        found = found[:limit]
        items = []
        for _, did in found:
            dead_letter = self._deliveries[did][3]
            record = orjson.loads(dead_letter) if dead_letter is not None else {}
            item = {k: record.get(k) for k in _DEAD_FIELDS}
            event = record.get("event") or {}
            item.update(delivery_id=did, event_id=event.get("id"), event_type=event.get("type"))
            items.append(item)
        return {
            "items": items,
            "next": f"{found[-1][0]:015d}|{found[-1][1]}" if more else None,
        }

    def endpoint_stats(self, endpoint_ids: list[str]) -> list[dict[str, Any]]:
        """Per endpoint: attempts of the last hour, success rate, last attempt, dead letters."""
        now_ms = int(time.time() * 1000)
        out = []
        for endpoint_id in endpoint_ids:
            stats = self._stats.get(endpoint_id)
            if stats is None:
                out.append(
                    {
                        "endpoint_id": endpoint_id,
                        "succeeded_last_hour": 0,
                        "failed_last_hour": 0,
                        "success_rate": None,
                        "last_attempt": None,
                        "dead_letters": 0,
                    }
                )
                continue
            succeeded, failed = stats.counts.totals(now_ms)
            total = succeeded + failed
            last = None
            if stats.last is not None:
                a = orjson.loads(stats.last[1])
                last = {
                    k: a.get(k)
                    for k in ("delivery_id", "attempted_at", "outcome", "status_code", "error")
                }
            out.append(
                {
                    "endpoint_id": endpoint_id,
                    "succeeded_last_hour": succeeded,
                    "failed_last_hour": failed,
                    "success_rate": round(succeeded / total, 4) if total else None,
                    "last_attempt": last,
                    "dead_letters": stats.dead_letters,
                }
            )
        return out

    def overview(self, endpoint_ids: list[str] | None = None) -> dict[str, Any]:
        """Attempts per minute over the last hour and the dead-letter depth.

        ``endpoint_ids`` None is everything (the admin); else those endpoints only.
        """
        now_ms = int(time.time() * 1000)
        if endpoint_ids is None:
            series = self._totals.series(now_ms)
            depth = len(self._dead)
        else:
            stats = [s for s in map(self._stats.get, endpoint_ids) if s is not None]
            series = summed([s.counts for s in stats], now_ms)
            depth = sum(s.dead_letters for s in stats)
        return {
            **rate_summary(series),
            "dead_letters": depth,
            "minutes": [{"at": to_iso(m * 60), "succeeded": s, "failed": f} for m, s, f in series],
        }

    # -- the tail
    async def run(self) -> None:
        topics = (DELIVERIES, ATTEMPTS, DEADLETTER)
        consumer = kafka.tail_consumer(self._settings, background=True, max_poll_records=5000)
        await consumer.start()
        try:
            await consumer.topics()
            tps = [
                TopicPartition(t, p)
                for t in topics
                for p in sorted(consumer.partitions_for_topic(t) or ())
            ]
            consumer.assign(tps)
            since_ms = int((time.time() - self._settings.status_window) * 1000)
            starts = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
            for tp in tps:
                found = starts.get(tp)
                if found is None:
                    await consumer.seek_to_end(tp)
                else:
                    consumer.seek(tp, found.offset)
            while self._running:
                batch = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, records in batch.items():
                    for n, record in enumerate(records, 1):
                        self._apply(tp.topic, record)
                        if n % 1000 == 0:
                            await asyncio.sleep(0)  # a long batch must not stall status queries
        finally:
            await consumer.stop()

    def _apply(self, topic: str, record: Any) -> None:
        headers = dict(record.headers or ())
        delivery_id = headers.get(H_DELIVERY)
        if delivery_id is None or record.key is None:
            return
        did = delivery_id.decode()
        endpoint_id = record.key.decode("utf-8", "replace")
        state = self._deliveries.get(did)
        if state is None:
            state = self._deliveries[did] = (endpoint_id, "pending", (), None, -1)
            if len(self._deliveries) > self._settings.status_cache_size:
                evicted, _ = self._deliveries.popitem(last=False)
                self._undead(evicted)
        if topic == DELIVERIES:
            if headers.get(H_STATUS) == b"replay":
                self._set_status(did, state, "pending", record.timestamp)
            return
        if topic == ATTEMPTS:
            endpoint, status_now, attempts, dead_letter, at = state
            state = (endpoint, status_now, (*attempts, record.value), dead_letter, at)
            self._deliveries[did] = state
            outcome = headers.get(H_STATUS, b"").decode()
            status = _STATUS_OF_OUTCOME.get(outcome)
            if status is not None:
                self._set_status(did, state, status, record.timestamp)
            self._count(endpoint_id, record.timestamp, outcome == "succeeded", record.value)
            per_endpoint = self._attempts.get(endpoint_id)
            if per_endpoint is None:
                per_endpoint = self._attempts[endpoint_id] = deque(
                    maxlen=self._settings.attempts_per_endpoint
                )
                if len(self._attempts) > self._settings.status_cache_size // 10:
                    self._attempts.popitem(last=False)
            else:
                self._attempts.move_to_end(endpoint_id)
            per_endpoint.append(record.value)
        elif topic == DEADLETTER:
            endpoint, status_now, attempts, _, at = state
            state = self._deliveries[did] = (endpoint, status_now, attempts, record.value, at)
            self._set_status(did, state, "dead_lettered", record.timestamp)

    def _set_status(self, did: str, state: _State, status: str, at_ms: int) -> None:
        """Newest record wins, whatever order the topics were read in."""
        if at_ms >= state[4]:
            state = self._deliveries[did] = (state[0], status, state[2], state[3], at_ms)
        dead = state[1] == "dead_lettered" and state[3] is not None
        if dead and did not in self._dead:
            record = orjson.loads(state[3])  # type: ignore[arg-type]
            at = _iso_ms(record.get("dead_lettered_at"), state[4])
            self._dead[did] = (at, state[0], record.get("tenant_id"))
            self._endpoint(state[0]).dead_letters += 1
        elif not dead and did in self._dead:
            self._undead(did)

    def _undead(self, did: str) -> None:
        dead = self._dead.pop(did, None)
        if dead is not None:
            stats = self._stats.get(dead[1])
            if stats is not None:
                stats.dead_letters = max(0, stats.dead_letters - 1)

    def _endpoint(self, endpoint_id: str) -> EndpointStats:
        stats = self._stats.get(endpoint_id)
        if stats is None:
            stats = self._stats[endpoint_id] = EndpointStats()
            if len(self._stats) > self._settings.status_cache_size // 10:
                self._stats.popitem(last=False)
        else:
            self._stats.move_to_end(endpoint_id)
        return stats

    def _count(self, endpoint_id: str, at_ms: int, succeeded: bool, raw: bytes) -> None:
        self._totals.add(at_ms, succeeded)
        self._endpoint(endpoint_id).add(at_ms, succeeded, raw)
