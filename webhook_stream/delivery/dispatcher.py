"""Delivery: one attempt of one delivery, start to finish.

Three steps, in the manner of Svix's worker: *prepare* (find the endpoint, sign the
body), *send* (one HTTP attempt), *handle the result* (attempt log, then success, a retry
topic, or the dead-letter topic). :meth:`Dispatcher.process` returns the broker sends
the result produced; :mod:`webhook_stream.delivery.consumer` commits a delivery's offset
only after they are acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Protocol

from aiokafka import AIOKafkaProducer

from webhook_stream.core.kafka import RecordBatcher
from webhook_stream.core.metrics import Metrics
from webhook_stream.core.records import (
    AttemptRecord,
    Delivery,
    iso_now,
    record_headers,
    to_iso,
)
from webhook_stream.core.settings import Settings
from webhook_stream.core.topics import ATTEMPTS, ENDPOINT_HEALTH, retry_topic
from webhook_stream.core.version import __version__
from webhook_stream.delivery.health import NO_WRITE, EndpointHealth
from webhook_stream.delivery.policy import Outcome, choose_retry_delay_topic, classify, retry_delay
from webhook_stream.delivery.ratelimit import TokenBuckets
from webhook_stream.delivery.signing import sign
from webhook_stream.failures.deadletter import dead_letter
from webhook_stream.http.client import HttpClient, HttpResult
from webhook_stream.http.proxied import HttpxClient
from webhook_stream.subscriptions.model import Subscription
from webhook_stream.subscriptions.registry import SubscriptionRegistry
from webhook_stream.subscriptions.writes import WriteClient, WriteRequest

__all__ = ["Dispatcher", "FlowHooks"]

log = logging.getLogger(__name__)

USER_AGENT = f"webhook-stream/{__version__}"


class FlowHooks(Protocol):
    """What flow control needs to know of a strict endpoint's attempts."""

    async def before_retry(self, delivery: Delivery) -> None:
        """A strict endpoint's delivery is about to leave for a retry topic (awaited first)."""

    async def finished(self, delivery: Delivery) -> asyncio.Future | None:
        """A delivery succeeded or was dead-lettered; a send to await before its commit."""


class Dispatcher:
    """Prepare, send and handle the result of one delivery attempt."""

    def __init__(
        self,
        settings: Settings,
        registry: SubscriptionRegistry,
        http: HttpClient | HttpxClient,
        producer: AIOKafkaProducer,
        batcher: RecordBatcher,
        metrics: Metrics,
        writes: WriteClient,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._http = http
        self._producer = producer
        self._batcher = batcher
        self._metrics = metrics
        self._topic_delays = tuple(sorted(set(settings.retry_schedule)))
        self._buckets = TokenBuckets()
        self._writes = writes
        self.health = EndpointHealth(settings)
        #: Endpoint id -> the version a disable was requested for: refused from now on
        #: (this worker), until the owner's decision moves the version.
        self._disabling: dict[str, int] = {}
        #: Flow control (set by the delivery consumer); None runs without it.
        self.hooks: FlowHooks | None = None

    async def process(self, delivery: Delivery) -> list[asyncio.Future]:
        """Run one attempt (or refuse it); return the sends to await before acking."""
        if not self.health.synced:
            await self.health.wait_synced()  # after an assignment: streaks read back first
        sub = self._registry.get(delivery.endpoint_id)
        if sub is None:
            return await self._finish(delivery, "endpoint_missing")
        if sub.tenant_id != delivery.tenant_id:
            return await self._finish(delivery, "tenant_mismatch")
        if sub.disabled or self._disabling.get(sub.id, -1) == sub.version:
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
            self._metrics.succeeded.inc()
            self._observe_end_to_end(delivery)
            await self._released(delivery, sends)
        elif outcome is Outcome.RETRY and delivery.attempts < max_attempts:
            label = "retrying"
            # A max_attempts beyond the schedule repeats its last step.
            step = schedule[min(delivery.attempts, len(schedule)) - 1]
            if sub.strict and self.hooks is not None:
                # Everything behind it waits, durably, before it leaves.
                await self.hooks.before_retry(delivery)
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
        # A proxy that is down says nothing about the receiver: it never disables an endpoint.
        if (result.error or "").startswith("proxy_"):
            return sends
        disable, change = self.health.record(
            sub.id,
            sub.version,
            succeeded=outcome is Outcome.SUCCESS,
            status=result.status,
            dead_lettered=label == "failed",
            now=time.time(),
        )
        if change is None:
            sends.append(await self._producer.send(ENDPOINT_HEALTH, None, key=sub.id.encode()))
        elif change is not NO_WRITE:
            sends.append(self._batcher.send(ENDPOINT_HEALTH, change, key=sub.id.encode()))
        if disable is not None and self._disabling.get(sub.id) != sub.version:
            sends.extend(await self._disable(sub, disable))
        return sends

    async def _disable(self, sub: Subscription, reason: str) -> list[asyncio.Future]:
        """Ask the endpoint's owner to disable it: a compare-and-set on the version the
        failures were counted against; the owner announces it on ``webhooks.endpoint_status``."""
        state = self.health.snapshot(sub.id)
        failures = 0 if state is None else state.consecutive_failures
        first_failure = None if state is None else state.first_failure
        log.warning(
            "endpoint %s to be disabled: %s (%d consecutive failures)", sub.id, reason, failures
        )
        # Effective at once here for the deliveries queued behind this one; the owner's
        # write brings every worker's table to the same state -- unless the user changed
        # the endpoint meanwhile: then their version wins and this request is refused.
        self._disabling = {k: v for k, v in self._disabling.items() if k in self._registry.index}
        self._disabling[sub.id] = sub.version
        body = {
            "reason": reason,
            "consecutive_failures": failures,
            "first_failure_at": None if first_failure is None else to_iso(first_failure),
        }
        return [await self._writes.send(WriteRequest(sub.id, "disable", sub.version, body))]

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
        self._metrics.retried.inc()
        return await self._producer.send(
            topic, delivery.encode(), key=delivery.endpoint_id.encode()
        )

    async def _finish(self, delivery: Delivery, reason: str) -> list[asyncio.Future]:
        self._metrics.dead_lettered.inc()
        log.info(
            "delivery %s to %s dead-lettered: %s",
            delivery.delivery_id,
            delivery.endpoint_id,
            reason,
        )
        sends = [await dead_letter(self._producer, delivery, reason)]
        await self._released(delivery, sends)
        return sends

    async def _released(self, delivery: Delivery, sends: list[asyncio.Future]) -> None:
        if self.hooks is not None:
            release = await self.hooks.finished(delivery)
            if release is not None:
                sends.append(release)

    async def _log_attempt(
        self, delivery: Delivery, result: HttpResult, outcome: str, at: str
    ) -> asyncio.Future:
        record = AttemptRecord(
            delivery_id=delivery.delivery_id,
            endpoint_id=delivery.endpoint_id,
            tenant_id=delivery.tenant_id,
            event_id=delivery.event.id,
            event_type=delivery.event.type,
            attempt=delivery.attempt_number,
            outcome=outcome,
            status_code=result.status,
            error=result.error,
            duration_ms=round(result.duration_s * 1000, 3),
            response_body=result.body.decode("utf-8", "replace"),
            attempted_at=at,
        )
        return self._batcher.send(
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
