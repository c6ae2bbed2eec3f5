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
from collections.abc import Callable
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
from webhook_stream.core.topics import ATTEMPTS, DEADLETTER, ENDPOINT_HEALTH, retry_topic
from webhook_stream.core.tracing import OFF, AttemptSpan, Tracer, log_ids
from webhook_stream.core.version import __version__
from webhook_stream.delivery.budgets import TenantSlots, host_key
from webhook_stream.delivery.credentials import ReceiverCredentials, signature
from webhook_stream.delivery.health import NO_WRITE, EndpointHealth
from webhook_stream.delivery.operational import OperationalFacts
from webhook_stream.delivery.policy import (
    Action,
    Outcome,
    Schedule,
    choose_retry_delay_topic,
    classify,
    decide,
    retry_delay,
)
from webhook_stream.delivery.ratelimit import TokenBuckets
from webhook_stream.failures.deadletter import dead_letter
from webhook_stream.http.client import HttpResult
from webhook_stream.http.egress import Egress
from webhook_stream.subscriptions.model import Subscription
from webhook_stream.subscriptions.registry import SubscriptionRegistry
from webhook_stream.subscriptions.writes import WriteClient, WriteRequest

__all__ = ["AttemptHooks", "Dispatcher"]

log = logging.getLogger(__name__)

USER_AGENT = f"webhook-stream/{__version__}"


class AttemptHooks(Protocol):
    """What parking needs to know of attempts: a strict head leaving, a delivery finished."""

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
        http: Egress,
        producer: AIOKafkaProducer,
        batcher: RecordBatcher,
        metrics: Metrics,
        writes: WriteClient,
        tracer: Tracer = OFF,
        hooks: AttemptHooks | None = None,
    ) -> None:
        self._settings = settings
        self._tracer = tracer
        self._registry = registry
        self._credentials = ReceiverCredentials(http)
        self._producer = producer
        self._batcher = batcher
        self._metrics = metrics
        self._in_flight = 0  # read by the gauge when scraped: no locked update per attempt
        metrics.in_flight.set_function(lambda: self._in_flight)
        self._topic_delays = tuple(sorted(set(settings.retry_schedule)))
        self._buckets = TokenBuckets()
        self._tenant_slots = TenantSlots(settings.max_in_flight_per_tenant)
        # A tenant holds at most half of the connections to one host, so endpoints aimed
        # at another tenant's receiver host (hanging there) leave it the other half.
        self._host_slots = TenantSlots(max(1, settings.http_pool_per_host // 2))
        self._hosts: dict[str, str] = {}
        #: Endpoint id -> set when its subscription changes (deleted, disabled, new rate):
        #: a lane waiting for it (rate limit, tenant slot) looks again at once.
        self._changes: dict[str, asyncio.Event] = {}
        #: Endpoint id -> lane tasks with an attempt in flight: cancelled when it is deleted
        #: or disabled (a hanging receiver holds nothing after that), then in _abandoned.
        self._posting: dict[str, set[asyncio.Task[object]]] = {}
        self._abandoned: set[asyncio.Task[object]] = set()
        registry.listeners.append(self._changed)
        self._writes = writes
        self.health = EndpointHealth(settings)
        self._operational = OperationalFacts(producer, settings.operational_failing_after)
        #: Endpoint id -> the version a disable was requested for: refused from now on
        #: (this worker), until the owner's decision moves the version.
        self._disabling: dict[str, int] = {}
        #: Parking (the delivery consumer's); None runs without it.
        self.hooks = hooks

    async def process(
        self, delivery: Delivery, before_send: Callable[[], None] | None = None
    ) -> list[asyncio.Future]:
        """Run one attempt (or refuse it); return the sends to await before acking.

        ``before_send`` is called right before the request leaves (after every wait): it
        raises (:class:`~webhook_stream.core.errors.OwnershipLost`) to call it off.
        """
        if not self.health.synced:
            await self.health.wait_synced()  # after an assignment: streaks read back first
        tenant = delivery.tenant_id
        while True:
            sub = self._registry.get(delivery.endpoint_id)
            if sub is None or (
                delivery.incarnation is not None and delivery.incarnation != sub.incarnation
            ):
                # An id deleted and created again (maybe by another tenant) is another
                # endpoint: the earlier one's deliveries never reach it. (A record without
                # an incarnation, written before there were any, goes to the endpoint as it is.)
                return await self._finish(delivery, "endpoint_missing")
            if sub.tenant_id != tenant:
                return await self._finish(delivery, "tenant_mismatch")
            if sub.disabled or self._disabling.get(sub.id, -1) == sub.version:
                return await self._finish(delivery, "endpoint_disabled")
            rate = sub.rate_limit_per_s
            if rate:
                # Inside the endpoint's own lane: delays this endpoint only, keeps its order.
                wait = self._buckets.reserve(sub.id, rate)
                if wait > 0 and await self._woken(sub.id, wait):
                    self._buckets.refund(sub.id, rate)
                    continue  # changed while waiting (deleted, disabled, new rate)
            # One tenant's hanging receivers never take every connection of the worker.
            if tenant is None:
                break
            if await self._slot(sub.id, self._tenant_slots, tenant):
                host = self._host_key(tenant, sub.url)
                if await self._slot(sub.id, self._host_slots, host):
                    break
                self._tenant_slots.release(tenant)
            if rate:
                self._buckets.refund(sub.id, rate)
        task = asyncio.current_task()
        assert task is not None
        posting = self._posting.setdefault(sub.id, set())
        posting.add(task)
        span: AttemptSpan | None = None
        try:
            if before_send is not None:
                before_send()  # the lease, checked after every wait above
            span = self._tracer.attempt(
                sub.url,
                delivery.delivery_id,
                sub.id,
                delivery.attempt_number + 1,
                delivery.traceparent,
                delivery.tracestate,
            )
            url, body, headers = self._prepare(sub, delivery, span)
            self._in_flight += 1
            try:
                # Checked again by the client right before the bytes leave: a stall while
                # this attempt waited for a connection must not send it after the resume.
                timeout = sub.timeout_s or self._settings.http_timeout
                result = await self._credentials.post(sub, url, body, headers, timeout, before_send)
            except asyncio.CancelledError:
                if span is not None:
                    span.finish(None, "not_sent", None, delivery.attempt_number + 1)
                if task not in self._abandoned:
                    raise
                self._abandoned.discard(task)
                task.uncancel()
                gone = self._registry.get(sub.id) is None
                return await self._finish(
                    delivery, "endpoint_missing" if gone else "endpoint_disabled"
                )
            except BaseException:
                if span is not None:
                    span.finish(None, "not_sent", None, delivery.attempt_number + 1)
                raise
            finally:
                self._in_flight -= 1
        finally:
            posting.discard(task)
            if not posting:
                self._posting.pop(sub.id, None)
            if tenant is not None:
                self._host_slots.release(self._host_key(tenant, sub.url))
                self._tenant_slots.release(tenant)
        if before_send is not None and classify(result) is not Outcome.SUCCESS:
            before_send()  # lapsed while it was out (a stall): a failure decides nothing here
        return await self._handle(sub, delivery, result, span)

    def _changed(self, endpoint_id: str) -> None:
        event = self._changes.pop(endpoint_id, None)
        if event is not None:
            event.set()
        posting = self._posting.get(endpoint_id)
        if posting:
            sub = self._registry.get(endpoint_id)
            if sub is None or sub.disabled:
                for task in posting - self._abandoned:
                    self._abandoned.add(task)
                    task.cancel()

    async def _woken(self, endpoint_id: str, seconds: float) -> bool:
        """Wait ``seconds``; True when the endpoint's subscription changed meanwhile."""
        event = self._changes.get(endpoint_id)
        if event is None:
            event = self._changes[endpoint_id] = asyncio.Event()
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def _host_key(self, tenant: str, url: str) -> str:
        return host_key(self._hosts, tenant, url)

    async def _slot(self, endpoint_id: str, slots: TenantSlots, tenant: str) -> bool:
        """Take one of ``tenant``'s ``slots``; False (none taken) if the endpoint changed."""

        def changed() -> asyncio.Event:
            event = self._changes.get(endpoint_id)
            if event is None:
                event = self._changes[endpoint_id] = asyncio.Event()
            return event

        return await slots.take(tenant, changed)

    def _prepare(
        self, sub: Subscription, delivery: Delivery, span: AttemptSpan | None = None
    ) -> tuple[str, bytes, dict[str, str]]:
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
                "webhook-signature": signature(sub, delivery.delivery_id, timestamp, body, now),
            }
        )
        # Tracing on: the attempt span's context; off: the event's, as it came.
        traceparent, tracestate = (
            (delivery.traceparent, delivery.tracestate)
            if span is None
            else (span.traceparent, span.tracestate)
        )
        if traceparent is not None:
            headers["traceparent"] = traceparent
            if tracestate is not None:
                headers["tracestate"] = tracestate
        return sub.url, body, headers

    async def _handle(
        self,
        sub: Subscription,
        delivery: Delivery,
        result: HttpResult,
        span: AttemptSpan | None = None,
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

        decision = decide(
            result,
            delivery.attempts,
            Schedule.of(
                sub.retry_schedule or self._settings.retry_schedule,
                sub.max_attempts,
                sub.retry_status_codes,
            ),
        )
        label = decision.action.value
        sends: list[asyncio.Future] = []
        if decision.action is Action.SUCCEEDED:
            self._metrics.succeeded.inc()
            self._observe_end_to_end(delivery)
            await self._released(delivery, sends)
        elif decision.action is Action.RETRYING:
            assert decision.step is not None
            if sub.strict and self.hooks is not None:
                # Everything behind it waits, durably, before it leaves.
                await self.hooks.before_retry(delivery)
            sends.append(await self._schedule_retry(delivery, decision.step, result, span))
        else:
            assert decision.reason is not None
            sends.extend(await self._finish(delivery, decision.reason, span))
        if span is not None:
            span.finish(result.status, label, result.error, delivery.attempt_number)
        sends.append(await self._log_attempt(delivery, result, label, now))
        sends.extend(await self._operational.after_attempt(delivery, decision, now))
        # A proxy that is down says nothing about the receiver: it never disables an endpoint.
        if not decision.blames_receiver:
            return sends
        disable, change = self.health.record(
            sub.id,
            sub.version,
            succeeded=decision.action is Action.SUCCEEDED,
            status=result.status,
            dead_lettered=decision.action is Action.FAILED,
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
        self, delivery: Delivery, step: float, result: HttpResult, span: AttemptSpan | None
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
        if self._tracer.enabled:
            self._moved(delivery, topic, "retry", span)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "delivery %s to %s retrying in %.1fs via %s (%s)",
                delivery.delivery_id,
                delivery.endpoint_id,
                delay,
                topic,
                log_ids(delivery.traceparent if span is None else span.traceparent),
            )
        return await self._producer.send(
            topic, delivery.encode(), key=delivery.endpoint_id.encode()
        )

    async def _finish(
        self, delivery: Delivery, reason: str, span: AttemptSpan | None = None
    ) -> list[asyncio.Future]:
        self._metrics.dead_lettered.inc()
        if self._tracer.enabled:
            self._moved(delivery, DEADLETTER, reason, span)
        log.info(
            "delivery %s to %s dead-lettered: %s (%s)",
            delivery.delivery_id,
            delivery.endpoint_id,
            reason,
            log_ids(delivery.traceparent if span is None else span.traceparent),
        )
        sends = [await dead_letter(self._producer, delivery, reason)]
        await self._released(delivery, sends)
        return sends

    def _moved(self, delivery: Delivery, topic: str, reason: str, span: AttemptSpan | None) -> None:
        """The move's span: a child of the attempt that caused it, else of the delivery."""
        parent = (delivery.traceparent, delivery.tracestate)
        if span is not None:
            parent = (span.traceparent, span.tracestate)
        self._tracer.moved(topic, delivery.delivery_id, reason, *parent)

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
            incarnation=delivery.incarnation,
        )
        return self._batcher.send(
            ATTEMPTS,
            record.encode(),
            key=delivery.endpoint_id.encode(),
            headers=record_headers(delivery.delivery_id, outcome, incarnation=delivery.incarnation),
        )

    def _observe_end_to_end(self, delivery: Delivery) -> None:
        try:
            occurred = datetime.fromisoformat(delivery.event.occurred_at).timestamp()
        except ValueError:
            return
        self._metrics.end_to_end.observe(max(0.0, time.time() - occurred))
