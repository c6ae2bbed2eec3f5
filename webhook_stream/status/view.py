"""Delivery status and the attempt log, as every worker sees them.

Each worker's status view process (:mod:`.process`) tails
``webhooks.deliveries``, ``webhooks.attempts`` and ``webhooks.deadletter`` (group-less,
from ``status_window`` ago) into bounded in-memory views, so any worker answers
``GET /deliveries/{id}`` and ``GET /subscriptions/{id}/attempts`` without routing the
request. Faust tables would need a repartition by delivery id and their multi-worker
recovery was unreliable on Tansu (notes: faust-on-tansu section 2). Records are indexed
by their ``ws-*`` headers and parsed only when read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from typing import Any

import orjson
from aiokafka import TopicPartition

from webhook_stream.core import kafka
from webhook_stream.core.records import H_DELIVERY, H_STATUS
from webhook_stream.core.settings import Settings
from webhook_stream.core.topics import ATTEMPTS, DEADLETTER, DELIVERIES

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


class DeliveryLog:
    """Bounded views: the latest deliveries by id and the latest attempts per endpoint."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._deliveries: OrderedDict[str, _State] = OrderedDict()
        self._attempts: OrderedDict[str, deque[bytes]] = OrderedDict()
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
        out = []
        for raw in reversed(self._attempts.get(endpoint_id, ())):
            attempt = orjson.loads(raw)
            if outcome is None or attempt["outcome"] == outcome:
                out.append(attempt)
                if len(out) >= limit:
                    break
        return out

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
                self._deliveries.popitem(last=False)
        if topic == DELIVERIES:
            if headers.get(H_STATUS) == b"replay":
                self._set_status(did, state, "pending", record.timestamp)
            return
        if topic == ATTEMPTS:
            endpoint, status_now, attempts, dead_letter, at = state
            state = (endpoint, status_now, (*attempts, record.value), dead_letter, at)
            self._deliveries[did] = state
            status = _STATUS_OF_OUTCOME.get(headers.get(H_STATUS, b"").decode())
            if status is not None:
                self._set_status(did, state, status, record.timestamp)
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
            self._deliveries[did] = (state[0], status, state[2], state[3], at_ms)
