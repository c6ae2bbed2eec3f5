"""Subscription writes that hold across workers: one decider per endpoint id.

Kafka has no compare-and-set. So every write the worker makes to ``webhooks.subscriptions``
(API create, patch, delete, rotate; the automatic disable) is a *request* on
``webhooks.subscription_requests``, keyed by endpoint id. The consumer group
``<app_id>-subscription-writes`` gives each partition of it exactly one owner, which decides
its requests one at a time: it first reads ``webhooks.subscriptions`` to its end (a write by
the previous owner, or a record produced directly, counts), checks the request against the
current version (exists? ``If-Match``?), writes the new record with the next version, and
announces the outcome on ``webhooks.subscription_results``, where the asking worker waits.

Only decided writes reach the compacted topic, so a worker replaying it from the start
(after compaction too) ends in the same state as one that watched it live. The failure
modes (a partition moving while its old owner is mid-request) are in README, "Operating it".
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, replace
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord

from webhook_stream.core import kafka
from webhook_stream.core.errors import InvalidSubscription, WriteRefused
from webhook_stream.core.records import EndpointStatusRecord, iso_now
from webhook_stream.core.settings import Settings
from webhook_stream.core.topics import (
    ENDPOINT_STATUS,
    SUBSCRIPTION_REQUESTS,
    SUBSCRIPTION_RESULTS,
    SUBSCRIPTIONS,
)
from webhook_stream.subscriptions.model import Subscription
from webhook_stream.subscriptions.registry import H_REQUEST, SubscriptionRegistry
from webhook_stream.subscriptions.validation import parse_subscription

__all__ = ["OPS", "SubscriptionWriter", "WriteClient", "WriteRequest", "WriteResult"]

log = logging.getLogger(__name__)

OPS = ("create", "patch", "delete", "rotate", "disable")

#: How long the owner waits for its table to reach the topic's end before it refuses.
_CATCH_UP_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """One write to decide. ``body``: create, the stored form; patch, the changes;
    rotate, ``{"grace_s"}``; disable, ``{"reason", "consecutive_failures",
    "first_failure_at"}``."""

    endpoint_id: str
    op: str
    if_version: int | None = None
    body: dict[str, Any] | None = None
    request_id: str = ""

    def __post_init__(self) -> None:
        if not self.request_id:
            object.__setattr__(self, "request_id", "req_" + secrets.token_hex(12))

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "request_id": self.request_id,
                "endpoint_id": self.endpoint_id,
                "op": self.op,
                "if_version": self.if_version,
                "body": self.body,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> WriteRequest:
        d = orjson.loads(raw)
        if d.get("op") not in OPS or not isinstance(d.get("endpoint_id"), str):
            raise ValueError("not a subscription write request")
        return cls(d["endpoint_id"], d["op"], d.get("if_version"), d.get("body"), d["request_id"])


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The owner's decision, with the HTTP status it maps to (200, 201, 400, 404, 409, 412,
    503) and, for a write, where the new record landed (read your writes)."""

    request_id: str
    status: int
    message: str = ""
    field: str | None = None
    version: int | None = None
    partition: int | None = None
    offset: int | None = None

    @property
    def ok(self) -> bool:
        return self.status < 300

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "request_id": self.request_id,
                "status": self.status,
                "message": self.message,
                "field": self.field,
                "version": self.version,
                "partition": self.partition,
                "offset": self.offset,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> WriteResult:
        d = orjson.loads(raw)
        return cls(
            d["request_id"],
            d["status"],
            d.get("message", ""),
            d.get("field"),
            d.get("version"),
            d.get("partition"),
            d.get("offset"),
        )


def _stale(current: Subscription, if_version: int | None) -> None:
    if if_version is not None and current.version != if_version:
        raise WriteRefused(
            412,
            f"subscription {current.id!r} is at version {current.version}, not {if_version}",
            "If-Match",
        )


class SubscriptionWriter:
    """The owner side: decides the requests of the partitions this worker was given."""

    def __init__(
        self, settings: Settings, registry: SubscriptionRegistry, producer: AIOKafkaProducer
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._producer = producer
        self._running = True

    def stop(self) -> None:
        self._running = False

    async def run(self) -> None:
        await self._registry.ready.wait()
        consumer = kafka.group_consumer(self._settings, "subscription-writes")
        ends = kafka.tail_consumer(self._settings)
        consumer.subscribe([SUBSCRIPTION_REQUESTS])
        await ends.start()
        await consumer.start()
        try:
            await ends.topics()
            parts = ends.partitions_for_topic(SUBSCRIPTIONS) or set()
            tps = [TopicPartition(SUBSCRIPTIONS, p) for p in sorted(parts)]
            while self._running:
                batch = await consumer.getmany(timeout_ms=500, max_records=100)
                for records in batch.values():
                    for record in records:
                        await self._handle(ends, tps, record)
                if batch:
                    try:
                        await consumer.commit()
                    except (CommitFailedError, IllegalStateError) as exc:
                        # The next owner decides these again; idempotent (last_request).
                        log.warning("subscription-writes commit failed: %s", exc)
        finally:
            await consumer.stop()
            await ends.stop()

    async def _handle(self, ends: Any, tps: list[TopicPartition], record: ConsumerRecord) -> None:
        try:
            request = WriteRequest.decode(record.value)
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            log.warning("undecodable subscription write request at offset %s", record.offset)
            return
        try:
            end = {tp.partition: off for tp, off in (await ends.end_offsets(tps)).items()}
            if not await self._registry.caught_up(end, _CATCH_UP_TIMEOUT):
                raise WriteRefused(503, "the subscription table is behind; retry")
            result = await self._decide(request)
        except WriteRefused as exc:
            result = WriteResult(request.request_id, exc.status, exc.message, exc.field)
        except KafkaError as exc:
            log.warning("subscription write %s failed: %r", request.request_id, exc)
            result = WriteResult(request.request_id, 503, "could not write to Kafka; retry")
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

    async def _decide(self, req: WriteRequest) -> WriteResult:
        key = req.endpoint_id
        current = self._registry.get(key)
        if self._registry.last_request(key) == req.request_id:
            # Decided before a rebalance, not committed: answer the same again.
            status = 201 if req.op == "create" else 200
            version = None if current is None else current.version
            return WriteResult(req.request_id, status, version=version)
        now = iso_now()
        version = self._registry.next_version(key)
        status = 200
        new: Subscription | None
        if req.op == "create":
            if current is not None:
                raise WriteRefused(409, f"subscription {key!r} already exists", "id")
            try:
                sub = self._registry.parse(orjson.dumps(req.body or {}), key)
            except InvalidSubscription as exc:
                raise WriteRefused(400, exc.message, exc.field) from None
            new, status = replace(sub, version=version, created_at=now, updated_at=now), 201
        elif current is None:
            raise WriteRefused(404, f"no subscription {key!r}")
        elif req.op == "patch":
            _stale(current, req.if_version)
            merged = {**current.to_dict(include_secrets=True), **(req.body or {})}
            try:
                sub = parse_subscription(
                    merged,
                    allow_insecure=self._settings.allow_insecure_targets,
                    endpoint_id=key,
                )
            except InvalidSubscription as exc:
                raise WriteRefused(400, exc.message, exc.field) from None
            new = replace(sub, version=version, updated_at=now)
        elif req.op == "rotate":
            _stale(current, req.if_version)
            grace = float((req.body or {}).get("grace_s", self._settings.secret_rotation_grace))
            rotated = current.rotate_secret(now=time.time(), grace_s=grace)
            new = replace(rotated, version=version, updated_at=now)
        elif req.op == "disable":
            # Compare-and-set on the version the failures were counted against: a user's
            # change since then (a fixed URL, a re-enable) wins; nothing is undone.
            _stale(current, req.if_version)
            if current.disabled:
                return WriteResult(req.request_id, 200, version=current.version)
            new = replace(current, disabled=True, version=version, updated_at=now)
        else:  # delete
            _stale(current, req.if_version)
            new = None
        value = None if new is None else self._registry.stored_form(new)
        meta = await self._producer.send_and_wait(
            SUBSCRIPTIONS,
            value,
            key=key.encode(),
            headers=[(H_REQUEST, req.request_id.encode())],
        )
        # The next request for this id must see this write.
        await self._registry.wait_applied(meta.partition, meta.offset, _CATCH_UP_TIMEOUT)
        if req.op == "disable" and new is not None:
            await self._announce_disabled(new, req.body or {}, now)
        return WriteResult(
            req.request_id,
            status,
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
        self._pending: dict[str, asyncio.Future[WriteResult]] = {}
        self.ready = asyncio.Event()
        self._running = True

    def stop(self) -> None:
        self._running = False

    async def send(self, request: WriteRequest) -> asyncio.Future[Any]:
        """Hand ``request`` to its owner without waiting for the decision (auto-disable)."""
        return await self._producer.send(
            SUBSCRIPTION_REQUESTS, request.encode(), key=request.endpoint_id.encode()
        )

    async def submit(
        self, request: WriteRequest, timeout: float
    ) -> tuple[WriteResult | None, bool]:
        """``(result, visible)``: the owner's decision (None if none came within
        ``timeout``) and whether this worker's table has applied the write since."""
        deadline = time.monotonic() + timeout
        await asyncio.wait_for(self.ready.wait(), timeout)
        future: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self._pending[request.request_id] = future
        try:
            await (await self.send(request))
            result = await asyncio.wait_for(future, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return None, False
        finally:
            self._pending.pop(request.request_id, None)
        if not result.ok or result.offset is None or result.partition is None:
            return result, True
        visible = await self._registry.wait_applied(
            result.partition, result.offset, max(0.1, deadline - time.monotonic())
        )
        return result, visible

    async def run(self) -> None:
        consumer = kafka.tail_consumer(self._settings)
        await consumer.start()
        try:
            await consumer.topics()
            parts = consumer.partitions_for_topic(SUBSCRIPTION_RESULTS) or set()
            tps = [TopicPartition(SUBSCRIPTION_RESULTS, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            for tp in tps:
                await consumer.position(tp)  # fix the start before the first request
            self.ready.set()
            while self._running:
                batch = await consumer.getmany(timeout_ms=500, max_records=1000)
                for records in batch.values():
                    for record in records:
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
