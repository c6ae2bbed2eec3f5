"""Unit tests of the concurrency core: per-key lanes and in-order acks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from webhook_stream.http_client import HttpResult, parse_retry_after
from webhook_stream.lanes import Lanes, OrderedAcker
from webhook_stream.policy import Outcome, choose_retry_delay_topic, classify, retry_delay

from .support import eventually


@dataclass
class FakeMessage:
    tp: str
    offset: int


@dataclass
class FakeEvent:
    message: FakeMessage
    acked: list = field(default_factory=list)

    def ack(self) -> None:
        self.acked.append(self.message.offset)


def never(exc: BaseException) -> None:
    raise AssertionError(exc)


async def test_one_key_runs_in_order_one_at_a_time_other_keys_in_parallel() -> None:
    lanes = Lanes(100, on_error=never)
    running: dict[str, int] = {"a": 0, "b": 0}
    peak = {"a": 0, "b": 0}
    done: list[tuple[str, int]] = []

    def job(key: str, i: int):
        async def run() -> None:
            running[key] += 1
            peak[key] = max(peak[key], running[key])
            await asyncio.sleep(0.005 if key == "a" else 0)
            running[key] -= 1
            done.append((key, i))

        return run

    for i in range(10):
        await lanes.submit("a", 1, job("a", i))
        await lanes.submit("b", 1, job("b", i))
    assert await lanes.drain(5)
    assert [i for k, i in done if k == "a"] == list(range(10))
    assert peak == {"a": 1, "b": 1}
    # b never waited for the slow a: all of b finished before most of a.
    assert done.index(("b", 9)) < done.index(("a", 5))
    assert lanes.pending == 0


async def test_max_in_flight_and_global_bound() -> None:
    lanes = Lanes(3, on_error=never)
    gate = asyncio.Event()
    started = []

    def job(i: int):
        async def run() -> None:
            started.append(i)
            await gate.wait()

        return run

    for i in range(3):
        await lanes.submit("k", 2, job(i))
    await eventually(lambda: len(started) == 2)  # max_in_flight 2
    blocked = asyncio.create_task(lanes.submit("other", 1, job(99)))
    await asyncio.sleep(0.01)
    assert not blocked.done()  # 3 held: the 4th waits (back-pressure)
    gate.set()
    await blocked
    assert await lanes.drain(5)
    assert sorted(started) == [0, 1, 2, 99]


async def test_drain_abandons_what_does_not_finish() -> None:
    lanes = Lanes(10, on_error=never)
    hang = asyncio.Event()

    async def stuck() -> None:
        await hang.wait()

    await lanes.submit("k", 1, stuck)
    await lanes.submit("k", 1, stuck)
    assert not await lanes.drain(0.05)
    assert lanes.pending == 0


def test_acker_releases_acks_in_offset_order_per_partition() -> None:
    acker = OrderedAcker()
    events = [FakeEvent(FakeMessage("p0", o)) for o in range(4)] + [FakeEvent(FakeMessage("p1", 0))]
    entries = [acker.track(e) for e in events]
    acker.done(entries[2])
    acker.done(entries[4])  # another partition is independent
    assert [e.acked for e in events] == [[], [], [], [], [0]]
    acker.done(entries[0])
    assert events[0].acked == [0] and events[2].acked == []
    acker.done(entries[1])
    assert [e.acked for e in events[:3]] == [[0], [1], [2]]
    assert len(acker) == 1


def result(status: int | None, error: str | None = None) -> HttpResult:
    return HttpResult(status, b"", error, None, 0.01)


def test_classification_table() -> None:
    for status in (200, 201, 204, 299):
        assert classify(result(status)) is Outcome.SUCCESS
    for status in (408, 429, 500, 502, 503, 504, 599):
        assert classify(result(status)) is Outcome.RETRY
    for status in (300, 301, 302, 304, 307, 400, 401, 403, 404, 409, 410, 422):
        assert classify(result(status)) is Outcome.FATAL
    assert classify(result(409), extra_retry_codes={409}) is Outcome.RETRY
    for error in ("timeout", "connect", "dns", "tls", "connection_reset", "transport"):
        assert classify(result(None, error)) is Outcome.RETRY
    for error in ("invalid_url", "forbidden_address", "insecure_url"):
        assert classify(result(None, error)) is Outcome.FATAL


def test_retry_delay_jitter_and_retry_after() -> None:
    assert retry_delay(10, rand=0) == 10
    assert retry_delay(10, rand=1, jitter=0.1) == 11
    assert retry_delay(10, retry_after=60, rand=0) == 60
    assert retry_delay(10, retry_after=5, rand=0) == 10  # Retry-After only ever lengthens
    assert retry_delay(10, retry_after=10_000, retry_after_max=3600, rand=0) == 3600
    assert choose_retry_delay_topic(45, [5, 30, 120]) == 30
    assert choose_retry_delay_topic(2, [5, 30, 120]) == 5
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412460) == 20
    assert parse_retry_after("soon") is None
