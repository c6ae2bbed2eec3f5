"""Delivery: the Faust agent on ``webhooks.deliveries`` and the dispatch of one delivery.

Dispatch has three steps, in the manner of Svix's worker: *prepare* (find the endpoint,
sign the body), *send* (one HTTP attempt), *handle the result* (attempt log, then
success, a retry topic, or the dead-letter topic). A delivery's Kafka offset is acked
only after every record the result produced is acknowledged by the broker, and acks are
released in offset order (see :mod:`webhook_stream.lanes`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiokafka import AIOKafkaProducer

from . import __version__
from .deadletter import dead_letter
from .health import EndpointHealth
from .http_client import HttpClient, HttpResult
from .lanes import Lanes, OrderedAcker
from .metrics import Metrics
from .policy import Outcome, choose_retry_delay_topic, classify, retry_delay
from .ratelimit import TokenBuckets
from .records import AttemptRecord, Delivery, EndpointStatusRecord, iso_now, to_iso
from .registry import SubscriptionRegistry
from .rejected import reject
from .settings import Settings
from .signing import sign
from .status import record_headers
from .subscriptions import Subscription
from .topics import ATTEMPTS, DELIVERIES, ENDPOINT_STATUS, SUBSCRIPTIONS, retry_topic

if TYPE_CHECKING:
    import faust

__all__ = ["DeliveryPath", "Dispatcher", "register_agent"]

log = logging.getLogger(__name__)

USER_AGENT = f"webhook-stream/{__version__}"


class Dispatcher:
    """Prepare, send and handle the result of one delivery attempt."""

    def __init__(
        self,
        settings: Settings,
        registry: SubscriptionRegistry,
        http: HttpClient,
        producer: AIOKafkaProducer,
        metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._http = http
        self._producer = producer
        self._metrics = metrics
        self._topic_delays = tuple(sorted(set(settings.retry_schedule)))
        self._buckets = TokenBuckets()
        self._health = EndpointHealth(settings)

    async def process(self, delivery: Delivery) -> list[asyncio.Future]:
        """Run one attempt (or refuse it); return the sends to await before acking."""
        sub = self._registry.get(delivery.endpoint_id)
        if sub is None:
            return await self._finish(delivery, "endpoint_missing")
        if sub.tenant_id != delivery.tenant_id:
            return await self._finish(delivery, "tenant_mismatch")
        if sub.disabled:
            return await self._finish(delivery, "endpoint_disabled")
        if sub.rate_limit_per_s:
            # Inside the endpoint's own lane: delays this endpoint only, keeps its order.
            await self._buckets.acquire(sub.id, sub.rate_limit_per_s)
        url, body, headers = self._prepare(sub, delivery)
        self._metrics.in_flight.inc()
        try:
            result = await self._http.post(
                url, body, headers, sub.timeout_s or self._settings.http_timeout
            )
        finally:
            self._metrics.in_flight.dec()
        return await self._handle(sub, delivery, result)

    def _prepare(self, sub: Subscription, delivery: Delivery) -> tuple[str, bytes, dict[str, str]]:
        body = delivery.event.webhook_body()
        now = time.time()
        timestamp = int(now)
        headers = dict(sub.headers)
        headers.update(
            {
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                "webhook-id": delivery.delivery_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(
                    sub.signing_keys(now), delivery.delivery_id, timestamp, body
                ),
            }
        )
        return sub.url, body, headers

    async def _handle(
        self, sub: Subscription, delivery: Delivery, result: HttpResult
    ) -> list[asyncio.Future]:
        now = iso_now()
        delivery.attempts += 1
        delivery.first_attempt_at = delivery.first_attempt_at or now
        delivery.last_attempt_at = now
        delivery.last_status_code = result.status
        delivery.last_error = result.error or (
            None if result.status is None else f"HTTP {result.status}"
        )
        self._metrics.attempt_duration.observe(result.duration_s)

        outcome = classify(result, sub.retry_status_codes)
        schedule = sub.retry_schedule or self._settings.retry_schedule
        max_attempts = sub.max_attempts or len(schedule) + 1
        sends: list[asyncio.Future] = []
        if outcome is Outcome.SUCCESS:
            label = "succeeded"
            self._metrics.deliveries.labels("succeeded").inc()
            self._observe_end_to_end(delivery)
        elif outcome is Outcome.RETRY and delivery.attempts < max_attempts:
            label = "retrying"
            # A max_attempts beyond the schedule repeats its last step.
            step = schedule[min(delivery.attempts, len(schedule)) - 1]
            sends.append(await self._schedule_retry(delivery, step, result))
        else:
            label = "failed"
            reason = "fatal_status" if outcome is Outcome.FATAL else "exhausted"
            if result.status is None and outcome is Outcome.FATAL:
                reason = (
                    "forbidden_address" if result.error == "forbidden_address" else "invalid_target"
                )
            sends.extend(await self._finish(delivery, reason))
        sends.append(await self._log_attempt(delivery, result, label, now))
        disable = self._health.record(
            sub.id,
            sub.updated_at,
            succeeded=outcome is Outcome.SUCCESS,
            status=result.status,
            dead_lettered=label == "failed",
            now=time.time(),
        )
        if disable is not None:
            sends.extend(await self._disable(sub, disable))
        return sends

    async def _disable(self, sub: Subscription, reason: str) -> list[asyncio.Future]:
        """Disable the endpoint in the subscription table and tell ``webhooks.endpoint_status``."""
        failures, first_failure = self._health.snapshot(sub.id)
        self._health.forget(sub.id)
        log.warning("endpoint %s disabled: %s (%d consecutive failures)", sub.id, reason, failures)
        now = iso_now()
        disabled = replace(sub, disabled=True, updated_at=now)
        # Effective at once for the deliveries already queued behind this one; the record
        # below brings every worker's table (this one's included) to the same state.
        self._registry.index.put(disabled)
        status = EndpointStatusRecord(
            endpoint_id=sub.id,
            tenant_id=sub.tenant_id,
            status="disabled",
            reason=reason,
            consecutive_failures=failures,
            first_failure_at=None if first_failure is None else to_iso(first_failure),
            at=now,
        )
        key = sub.id.encode()
        return [
            await self._producer.send(SUBSCRIPTIONS, self._registry.stored_form(disabled), key=key),
            await self._producer.send(ENDPOINT_STATUS, status.encode(), key=key),
        ]

    async def _schedule_retry(
        self, delivery: Delivery, step: float, result: HttpResult
    ) -> asyncio.Future:
        delay = retry_delay(
            step,
            retry_after=result.retry_after,
            retry_after_max=self._settings.retry_after_max,
            jitter=self._settings.retry_jitter,
        )
        delivery.due_at_ms = int((time.time() + delay) * 1000)
        delivery.origin = "retry"
        topic = retry_topic(choose_retry_delay_topic(delay, self._topic_delays))
        self._metrics.deliveries.labels("retried").inc()
        return await self._producer.send(
            topic, delivery.encode(), key=delivery.endpoint_id.encode()
        )

    async def _finish(self, delivery: Delivery, reason: str) -> list[asyncio.Future]:
        self._metrics.deliveries.labels("dead_lettered").inc()
        log.info(
            "delivery %s to %s dead-lettered: %s",
            delivery.delivery_id,
            delivery.endpoint_id,
            reason,
        )
        return [await dead_letter(self._producer, delivery, reason)]

    async def _log_attempt(
        self, delivery: Delivery, result: HttpResult, outcome: str, at: str
    ) -> asyncio.Future:
        record = AttemptRecord(
            delivery_id=delivery.delivery_id,
            endpoint_id=delivery.endpoint_id,
            tenant_id=delivery.tenant_id,
            event_id=delivery.event.id,
            event_type=delivery.event.type,
            attempt=delivery.attempts,
            outcome=outcome,
            status_code=result.status,
            error=result.error,
            duration_ms=round(result.duration_s * 1000, 3),
            response_body=result.body.decode("utf-8", "replace"),
            attempted_at=at,
        )
        return await self._producer.send(
            ATTEMPTS,
            record.encode(),
            key=delivery.endpoint_id.encode(),
            headers=record_headers(delivery.delivery_id, outcome),
        )

    def _observe_end_to_end(self, delivery: Delivery) -> None:
        try:
            occurred = datetime.fromisoformat(delivery.event.occurred_at).timestamp()
        except ValueError:
            return
        self._metrics.end_to_end.observe(max(0.0, time.time() - occurred))


class DeliveryPath:
    """Feeds Faust events into per-endpoint lanes and acks them in offset order."""

    def __init__(
        self,
        settings: Settings,
        dispatcher: Dispatcher,
        registry: SubscriptionRegistry,
        producer: AIOKafkaProducer,
        metrics: Metrics,
        crash: Any,
    ) -> None:
        self._settings = settings
        self._dispatcher = dispatcher
        self._registry = registry
        self._producer = producer
        self._metrics = metrics
        self._crash = crash
        self._acker = OrderedAcker()
        self._sending: set[asyncio.Future] = set()
        self._accepting = True
        self.lanes = Lanes(settings.max_pending_deliveries, on_error=crash)

    async def submit(self, event: Any) -> None:
        """Queue one Faust event (a raw delivery record); returns once queued."""
        if not self._accepting:
            return  # shutting down: left unacked, so the next owner of the partition gets it
        entry = self._acker.track(event)
        key = event.key or b""
        sub = self._registry.get(key.decode("utf-8", "replace"))
        max_in_flight = sub.max_in_flight if sub is not None else 1

        async def job() -> None:
            sends = await self._run(event.value, event.message)
            if not sends:
                self._acker.done(entry)
                return
            gathered = asyncio.gather(*sends)
            self._sending.add(gathered)
            gathered.add_done_callback(lambda fut: self._sent(fut, entry))

        await self.lanes.submit(key, max_in_flight, job)
        self._metrics.pending.set(self.lanes.pending)

    async def _run(self, raw: bytes, message: Any) -> list[asyncio.Future]:
        try:
            delivery = Delivery.decode(raw)
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            log.warning(
                "undecodable record on %s at offset %s: %s", DELIVERIES, message.offset, exc
            )
            return [await reject(self._producer, message, f"invalid_delivery_record: {exc}")]
        return await self._dispatcher.process(delivery)

    async def quiesce(self, timeout: float, *, final: bool = False) -> None:
        """Finish what was taken (bounded by ``timeout``) so its acks precede the next commit.

        Called by Faust before it commits at shutdown (``final``: take nothing new after)
        and when partitions are revoked. What cannot finish in time is dropped unacked;
        Kafka redelivers it.
        """
        if final:
            self._accepting = False
        deadline = time.monotonic() + timeout
        finished = await self.lanes.drain(timeout)
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=max(0.1, deadline - time.monotonic()))
        if not finished or self._sending:
            self._acker.clear()
        self._metrics.pending.set(self.lanes.pending)

    def _sent(self, fut: asyncio.Future, entry: list[Any]) -> None:
        self._sending.discard(fut)
        if fut.cancelled():
            return  # shutting down mid-send: left unacked, redelivered
        exc = fut.exception()
        if exc is not None:
            # Never ack what is not durable: stop the worker; its successor re-reads the offset.
            log.critical("could not hand a delivery result to Kafka: %r", exc)
            self._crash(exc)
            return
        self._acker.done(entry)


def register_agent(app: faust.App, path_of: Any) -> None:
    """Declare the delivery agent. ``path_of()`` returns the started :class:`DeliveryPath`."""
    topic = app.topic(DELIVERIES, key_serializer="raw", value_serializer="raw")

    @app.agent(topic, name="webhook_stream.deliver")
    async def deliver(stream: faust.StreamT) -> None:
        path: DeliveryPath = await path_of()
        async for event in stream.noack().events():
            await path.submit(event)
