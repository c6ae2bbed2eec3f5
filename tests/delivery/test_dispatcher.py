"""The dispatcher with a fake egress: what one attempt sends to Kafka and to the receiver.

No broker and no HTTP server: the egress is a fake :class:`~webhook_stream.http.egress.Egress`
and the producer and batcher record what they are given. (End to end, with real parts:
tests/delivery/test_ordering.py, tests/failures/test_failures.py.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from webhook_stream.core.errors import OwnershipLost
from webhook_stream.core.metrics import Metrics
from webhook_stream.core.records import Delivery, Event, SourceRef
from webhook_stream.core.settings import Settings
from webhook_stream.core.topics import ATTEMPTS, DEADLETTER, ENDPOINT_HEALTH, retry_topic
from webhook_stream.delivery.dispatcher import Dispatcher
from webhook_stream.delivery.signing import verify
from webhook_stream.http.client import HttpResult
from webhook_stream.http.errors import TransportError
from webhook_stream.http.identity import TlsIdentity
from webhook_stream.subscriptions.model import Subscription, generate_secret
from webhook_stream.subscriptions.registry import SubscriptionRegistry

SECRET = generate_secret()


class FakeEgress:
    """Answers each POST with the next scripted result, and keeps what was posted."""

    def __init__(self, *results: HttpResult) -> None:
        self.results = list(results)
        self.posted: list[tuple[str, bytes, dict[str, str], float]] = []

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def post(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        timeout: float,
        before_write: Callable[[], None] | None = None,
        *,
        tls: TlsIdentity | None = None,
        body_max: int | None = None,
    ) -> HttpResult:
        if before_write is not None:
            before_write()
        self.posted.append((url, body, headers, timeout))
        return self.results.pop(0)


class Sent:
    """A producer and a batcher in one: every record kept, every send acknowledged."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None]] = []

    def _ack(self, topic: str, value: bytes | None, key: bytes | None) -> asyncio.Future[Any]:
        self.records.append((topic, value, key))
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, **_: Any
    ) -> asyncio.Future[Any]:
        return self._ack(topic, value, key)

    def batch_send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, **_: Any
    ) -> asyncio.Future[Any]:
        return self._ack(topic, value, key)

    def topics(self) -> list[str]:
        return [topic for topic, _, _ in self.records]


class Batcher:
    def __init__(self, sent: Sent) -> None:
        self.send = sent.batch_send


class Writes:
    def __init__(self) -> None:
        self.requests: list[Any] = []

    async def send(self, request: Any) -> asyncio.Future[Any]:
        self.requests.append(request)
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def dispatcher(egress: FakeEgress, sent: Sent, writes: Writes | None = None) -> Dispatcher:
    settings = Settings.from_env({"WEBHOOK_STREAM_RETRY_SCHEDULE": "5s,30s"})
    registry = SubscriptionRegistry(settings)
    registry.index.put(
        Subscription(
            id="ep_1",
            url="https://receiver.example/hook",
            event_types=("order.*",),
            secret=SECRET,
            tenant_id="acme",
            version=3,
        )
    )
    made = Dispatcher(
        settings,
        registry,
        egress,
        sent,  # type: ignore[arg-type]
        Batcher(sent),  # type: ignore[arg-type]
        Metrics(),
        writes or Writes(),  # type: ignore[arg-type]
    )
    made.health._synced.set()  # no partitions assigned in a unit test: nothing to read back
    return made


def delivery(attempts: int = 0) -> Delivery:
    event = Event(
        "evt_1", "order.created", "2026-01-01T00:00:00Z", '{"n": 1}', SourceRef("events.x", 0, 7)
    )
    return Delivery("msg_1", "ep_1", "acme", event, "2026-01-01T00:00:00Z", attempts=attempts)


def ok(status: int) -> HttpResult:
    return HttpResult(status, b"", None, None, 0.01)


def failed(error: TransportError) -> HttpResult:
    return HttpResult(None, b"", error, None, 0.01)


async def test_a_success_posts_a_signed_body_and_logs_one_attempt() -> None:
    egress, sent = FakeEgress(ok(200)), Sent()
    sends = await dispatcher(egress, sent).process(delivery())
    ((url, body, headers, _),) = egress.posted
    assert url == "https://receiver.example/hook"
    verify(SECRET, headers, body)  # raises if the signature does not hold
    assert sent.topics() == [ATTEMPTS] and len(sends) == 1
    attempt = orjson.loads(sent.records[0][1] or b"")
    assert attempt["outcome"] == "succeeded" and attempt["status_code"] == 200


async def test_a_retriable_failure_goes_to_the_retry_topic_of_its_step() -> None:
    egress, sent = FakeEgress(failed(TransportError.TIMEOUT)), Sent()
    await dispatcher(egress, sent).process(delivery())
    assert sent.topics() == [retry_topic(5.0), ATTEMPTS, ENDPOINT_HEALTH]
    retried = Delivery.decode(sent.records[0][1] or b"")
    assert retried.attempts == 1 and retried.last_error == "timeout"
    assert orjson.loads(sent.records[1][1] or b"")["outcome"] == "retrying"


async def test_a_failure_answered_after_the_lease_lapsed_decides_nothing() -> None:
    """A stall while the request was out (issue 29): its timeout, seen on resuming, must
    not schedule a retry or block a strict endpoint on partitions another worker owns by
    now; the attempt is called off, its next owner makes it. A success is still recorded."""
    for result, recorded in ((failed(TransportError.TIMEOUT), None), (ok(200), [ATTEMPTS])):
        egress, sent = FakeEgress(result), Sent()

        def lease(egress: FakeEgress = egress) -> None:
            if egress.posted:  # valid until the request went out; lapsed by its answer
                raise OwnershipLost("webhook-stream-deliver")

        if recorded is None:
            with pytest.raises(OwnershipLost):
                await dispatcher(egress, sent).process(delivery(), lease)
            assert sent.records == []  # no retry, no attempt record, no health streak
        else:
            await dispatcher(egress, sent).process(delivery(), lease)
            assert sent.topics() == recorded


async def test_the_last_attempt_and_a_fatal_status_dead_letter_with_their_reason() -> None:
    for result, attempts, reason in (
        (ok(503), 2, "exhausted"),
        (ok(404), 0, "fatal_status"),
        (failed(TransportError.FORBIDDEN_ADDRESS), 0, "forbidden_address"),
        (failed(TransportError.INVALID_URL), 0, "invalid_target"),
    ):
        sent = Sent()
        await dispatcher(FakeEgress(result), sent).process(delivery(attempts))
        assert sent.topics()[:2] == [DEADLETTER, ATTEMPTS], reason
        assert orjson.loads(sent.records[0][1] or b"")["reason"] == reason


async def test_an_egress_proxy_failure_does_not_count_against_the_receiver() -> None:
    sent = Sent()
    await dispatcher(FakeEgress(failed(TransportError.PROXY_CONNECT)), sent).process(delivery())
    assert sent.topics() == [retry_topic(5.0), ATTEMPTS]  # no endpoint_health record


async def test_410_gone_asks_the_owner_to_disable_the_endpoint() -> None:
    sent, writes = Sent(), Writes()
    await dispatcher(FakeEgress(ok(410)), sent, writes).process(delivery())
    (request,) = writes.requests
    assert (request.endpoint_id, request.op, request.if_version) == ("ep_1", "disable", 3)
    assert request.body["reason"] == "gone"


async def test_an_unknown_endpoint_is_dead_lettered_without_an_attempt() -> None:
    egress, sent = FakeEgress(), Sent()
    gone = delivery()
    gone.endpoint_id = "ep_unknown"
    await dispatcher(egress, sent).process(gone)
    assert egress.posted == [] and sent.topics() == [DEADLETTER]
    assert orjson.loads(sent.records[0][1] or b"")["reason"] == "endpoint_missing"
