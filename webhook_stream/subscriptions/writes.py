"""Subscription writes that hold across workers: one decider per endpoint id.

Kafka has no compare-and-set. So every write the worker makes to ``webhooks.subscriptions``
(API create, patch, delete, rotate; the automatic disable) is a *request* on
``webhooks.subscription_requests``, keyed by endpoint id. The consumer group
``<app_id>-subscription-writes`` gives each partition of it exactly one owner, which decides
its requests one at a time: it first reads ``webhooks.subscriptions`` to its end (a write by
the previous owner, or a record produced directly, counts), checks the request against the
current version (exists? ``If-Match``?), writes the new record with the next version, and
announces the outcome on ``webhooks.subscription_results``, where the asking worker waits.

The owner also does what needs the current record: a PATCH's merge, with its masked
header values resolved against the current ones (a mask sent back keeps the value, any
other ``****...`` is refused), the tenant check of a tenant token's write, and the
compare-and-set of an automatic disable. Secrets never travel in clear
(:mod:`.write_requests`).

Only decided writes reach the compacted topic, so a worker replaying it from the start
(after compaction too) ends in the same state as one that watched it live. The failure
modes (a partition moving while its old owner is mid-request) are in README, "Operating it".

An owner decides only while its group membership's lease holds
(:mod:`~webhook_stream.core.lease`), checked again right before the record is written: an
owner that stalled and lost the partition meanwhile must not decide a request its
successor has decided (perhaps before later ones, which its stale decision would undo).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from webhook_stream.core import fetch, fetch_waits, kafka
from webhook_stream.core.errors import InvalidSubscription, OwnershipLost, WriteRefused
from webhook_stream.core.lease import Lease
from webhook_stream.core.metrics import Metrics
from webhook_stream.core.operational import send_operational
from webhook_stream.core.records import EndpointStatusRecord, iso_now
from webhook_stream.core.sealing import SecretKeyError
from webhook_stream.core.settings import Settings
from webhook_stream.core.topics import (
    ENDPOINT_STATUS,
    SUBSCRIPTION_REQUESTS,
    SUBSCRIPTION_RESULTS,
    SUBSCRIPTIONS,
)
from webhook_stream.subscriptions.model import Subscription, new_incarnation
from webhook_stream.subscriptions.operational import endpoint_fact
from webhook_stream.subscriptions.registry import H_REQUEST, SubscriptionRegistry
from webhook_stream.subscriptions.write_decisions import Answer, Known, decide_write
from webhook_stream.subscriptions.write_requests import (
    WriteRequest,
    WriteResult,
    open_body,
    request_box,
)

__all__ = ["SubscriptionWriter", "WriteClient", "WriteRequest", "WriteResult"]

log = logging.getLogger(__name__)

_LOOKS_SEALED = "a value looks sealed ('enc:v1:...'); send it in clear"

#: How long the owner waits for its table to reach the topic's end before it refuses.
_CATCH_UP_TIMEOUT = 10.0


class SubscriptionWriter:
    """The owner side: decides the requests of the partitions this worker was given."""

    def __init__(
        self,
        settings: Settings,
        registry: SubscriptionRegistry,
        producer: AIOKafkaProducer,
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._producer = producer
        self._metrics = metrics
        self._box = request_box(settings)
        self._running = True
        self._consumer: Any = None
        self.lease = Lease(f"{settings.app_id}-subscription-writes", settings.session_timeout)

    def stop(self) -> None:
        self._running = False
        fetch_waits.wake(self._consumer)

    async def run(self) -> None:
        await self._registry.ready.wait()
        self._consumer = consumer = kafka.group_consumer(
            self._settings, "subscription-writes", background=True
        )
        ends = kafka.tail_consumer(self._settings)
        consumer.subscribe([SUBSCRIPTION_REQUESTS])
        await ends.start()
        began = self.lease.clock()
        await consumer.start()
        self.lease.attach(consumer, began)
        try:
            tps = await fetch.partitions_of(ends, SUBSCRIPTIONS)
            while self._running:
                batch = await fetch.getmany(
                    consumer, timeout_ms=500, max_records=100, idle_ms=fetch_waits.IDLE_POLL_MS
                )
                for tp, records in batch.items():
                    for record in records:
                        if isinstance(record, fetch.Undecodable):
                            pass  # logged and skipped by fetch.getmany
                        elif not await self._handle(ends, tps, record):
                            # Lapsed: read it again once confirmed, if still ours.
                            if tp in consumer.assignment():
                                consumer.seek(tp, record.offset)
                            await self.lease.wait_change(0.5)
                            break
                        # One at a time: a successor decides again at most the request
                        # in hand, which the request id on its record makes idempotent.
                        done = {tp: OffsetAndMetadata(record.offset + 1, "")}
                        try:
                            await consumer.commit(done)
                        except (CommitFailedError, IllegalStateError) as exc:
                            log.warning("subscription-writes commit failed: %s", exc)
        finally:
            await consumer.stop()
            await ends.stop()

    async def _handle(self, ends: Any, tps: list[TopicPartition], record: ConsumerRecord) -> bool:
        """Decide ``record``; False: not decided, the lease lapsed (nothing written)."""
        if not self.lease.valid():
            return False
        try:
            request = WriteRequest.decode(record.value)
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            log.warning("undecodable subscription write request at offset %s", record.offset)
            return True
        try:
            end = {tp.partition: off for tp, off in (await ends.end_offsets(tps)).items()}
            if not await self._registry.caught_up(end, _CATCH_UP_TIMEOUT):
                raise WriteRefused(503, "the subscription table is behind; retry")
            result = await self._decide(request, open_body(request.body, self._box))
        except WriteRefused as exc:
            result = WriteResult(request.request_id, exc.status, exc.message, exc.field)
        except InvalidSubscription as exc:
            result = WriteResult(request.request_id, 400, exc.message, exc.field)
        except KafkaError as exc:
            log.warning("subscription write %s failed: %r", request.request_id, exc)
            result = WriteResult(request.request_id, 503, "could not write to Kafka; retry")
        except OwnershipLost:
            log.warning(
                "%s: membership lapsed (a stall?) while deciding the write request at "
                "%s[%d]@%d: not written; decided again only if the partition is still ours",
                self.lease.name,
                record.topic,
                record.partition,
                record.offset,
            )
            if self._metrics is not None:
                self._metrics.ownership_dropped.labels("subscription_writes").inc()
            return False
        if not result.ok:
            log.info(
                "subscription %s %s refused (%d): %s",
                request.op,
                request.endpoint_id,
                result.status,
                result.message,
            )
        await self._producer.send_and_wait(
            SUBSCRIPTION_RESULTS, result.encode(), key=request.request_id.encode()
        )
        return True

    async def _decide(self, req: WriteRequest, body: dict[str, Any] | None) -> WriteResult:
        """Carry out :func:`~.write_decisions.decide_write`: write the record, wait until
        the table has it, announce a disable."""
        key = req.endpoint_id
        known = Known(
            current=self._registry.get(key),
            last_request=self._registry.last_request(key),
            next_version=self._registry.next_version(key),
            now=iso_now(),
            now_s=time.time(),
            incarnation=new_incarnation(),
            allow_insecure=self._settings.allow_insecure_targets,
            rotation_grace=self._settings.secret_rotation_grace,
        )
        decision = decide_write(req, body, known)
        if isinstance(decision, Answer):
            return WriteResult(req.request_id, decision.status, version=decision.version)
        new = decision.new
        try:
            value = None if new is None else self._registry.stored_form(new)
        except (SecretKeyError, ValueError):
            raise WriteRefused(400, _LOOKS_SEALED) from None
        if not self.lease.valid():  # decided on what may be stale: a successor decides
            raise OwnershipLost(self.lease.name)
        # The fact, acknowledged before the write (and so before the commit): a successor
        # deciding this request again reaches the same version and the same event id.
        fact = endpoint_fact(req.op, known.current, new, known.next_version, body, known.now)
        if fact is not None:
            await (await send_operational(self._producer, fact))
        meta = await self._producer.send_and_wait(
            SUBSCRIPTIONS,
            value,
            key=key.encode(),
            headers=[(H_REQUEST, req.request_id.encode())],
        )
        # The next request for this id must see this write.
        await self._registry.wait_applied(meta.partition, meta.offset, _CATCH_UP_TIMEOUT)
        if req.op == "disable" and new is not None:
            await self._announce_disabled(new, body or {}, known.now)
        return WriteResult(
            req.request_id,
            decision.status,
            version=None if new is None else new.version,
            partition=meta.partition,
            offset=meta.offset,
        )

    async def _announce_disabled(self, sub: Subscription, body: dict[str, Any], at: str) -> None:
        """Tell ``webhooks.endpoint_status``: only a disable that took effect is announced."""
        record = EndpointStatusRecord(
            endpoint_id=sub.id,
            tenant_id=sub.tenant_id,
            status="disabled",
            reason=str(body.get("reason", "unknown")),
            consecutive_failures=int(body.get("consecutive_failures", 0)),
            first_failure_at=body.get("first_failure_at"),
            at=at,
        )
        await self._producer.send_and_wait(ENDPOINT_STATUS, record.encode(), key=sub.id.encode())


class WriteClient:
    """The asking side: send a request, wait for its result and for the record to apply."""

    def __init__(
        self, settings: Settings, registry: SubscriptionRegistry, producer: AIOKafkaProducer
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._producer = producer
        self._box = request_box(settings)
        self._pending: dict[str, asyncio.Future[WriteResult]] = {}
        self.ready = asyncio.Event()
        self._running = True
        self._consumer: Any = None

    def stop(self) -> None:
        self._running = False
        fetch_waits.wake(self._consumer)

    async def send(self, request: WriteRequest) -> asyncio.Future[Any]:
        """Hand ``request`` to its owner without waiting for the decision (auto-disable)."""
        return await self._producer.send(
            SUBSCRIPTION_REQUESTS, request.encode(self._box), key=request.endpoint_id.encode()
        )

    async def submit(
        self, request: WriteRequest, timeout: float
    ) -> tuple[WriteResult | None, bool]:
        """``(result, visible)``: the owner's decision (None if none came within
        ``timeout``) and whether this worker's table has applied the write since. Raises
        :class:`WriteRefused` (503) when the request could not be handed to Kafka."""
        deadline = time.monotonic() + timeout
        future: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self._pending[request.request_id] = future
        try:
            await asyncio.wait_for(self.ready.wait(), timeout)
            await (await self.send(request))
            result = await asyncio.wait_for(future, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return None, False
        except KafkaError as exc:
            log.warning("subscription write %s not sent: %r", request.request_id, exc)
            raise WriteRefused(503, "could not hand the write to Kafka; retry") from None
        finally:
            self._pending.pop(request.request_id, None)
        if not result.ok or result.offset is None or result.partition is None:
            return result, True
        visible = await self._registry.wait_applied(
            result.partition, result.offset, max(0.1, deadline - time.monotonic())
        )
        return result, visible

    async def run(self) -> None:
        self._consumer = consumer = kafka.tail_consumer(self._settings, background=True)
        await consumer.start()
        try:
            tps = await fetch.open_topic(consumer, SUBSCRIPTION_RESULTS, at="end")
            for tp in tps:
                await consumer.position(tp)  # fix the start before the first request
            self.ready.set()
            while self._running:
                batch = await fetch.getmany(
                    consumer, timeout_ms=500, max_records=1000, idle_ms=fetch_waits.IDLE_POLL_MS
                )
                for records in batch.values():
                    for record in records:
                        if not isinstance(record, fetch.Undecodable):  # logged, skipped
                            self._resolve(record)
        finally:
            await consumer.stop()

    def _resolve(self, record: ConsumerRecord) -> None:
        rid = (record.key or b"").decode("utf-8", "replace")
        future = self._pending.get(rid)
        if future is None or future.done():
            return
        try:
            future.set_result(WriteResult.decode(record.value))
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            log.warning("undecodable subscription write result for %s", rid)
