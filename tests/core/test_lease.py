"""The membership lease (core.lease): pure rules, the clock check, the coordinator hook."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from tests.support import eventually
from webhook_stream.core.errors import OwnershipLost
from webhook_stream.core.lease import (
    Lease,
    StallWatch,
    describe,
    expiry,
    lease_margin,
    stall_gap,
)


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_a_confirmation_lasts_the_session_timeout_less_a_margin_from_its_send_time() -> None:
    assert lease_margin(10.0) == 2.0
    assert lease_margin(5.0) == 1.0
    assert expiry(100.0, 10.0) == 108.0


def test_a_stall_is_the_time_a_tick_came_late() -> None:
    assert stall_gap(10.0, 10.5, 0.5) == 0.0
    assert stall_gap(10.0, 10.4, 0.5) == 0.0
    assert stall_gap(10.0, 40.5, 0.5) == 30.0


def test_the_lease_expires_by_the_clock_without_anything_running() -> None:
    """What a stalled process finds on resuming: no watchdog had to run first."""
    clock = Clock()
    lease = Lease("g", 10.0, clock=clock)
    assert not lease.valid()  # nothing confirmed yet
    lease.confirm(clock.t, generation=1)
    assert lease.valid()
    clock.t += 7.9
    assert lease.valid()
    clock.t += 0.2  # 8.1 s after the heartbeat was sent: the coordinator may evict soon
    assert not lease.valid()
    with pytest.raises(OwnershipLost):
        lease.check()  # what a lane calls right before its request leaves


def test_an_older_confirmation_never_shortens_the_lease_but_a_new_generation_resets_it() -> None:
    clock = Clock()
    lease = Lease("g", 10.0, clock=clock)
    lease.confirm(clock.t, generation=1)
    lease.confirm(clock.t - 5, generation=1)  # a slow answer to an earlier heartbeat
    assert lease.valid_until == clock.t + 8
    lease.confirm(clock.t - 1, generation=2)
    assert (lease.generation, lease.valid_until) == (2, clock.t + 7)
    lease.expire()
    assert not lease.valid()


async def test_hold_waits_for_a_confirmation_or_gives_up_when_the_work_is_lost() -> None:
    clock = Clock()
    lease = Lease("g", 10.0, clock=clock)
    owned = {"p0"}
    waiting = asyncio.ensure_future(lease.hold(lambda: "p0" in owned, poll=30))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    lease.confirm(clock.t, generation=1)
    assert await asyncio.wait_for(waiting, 1) is True

    lease.expire()
    waiting = asyncio.ensure_future(lease.hold(lambda: "p0" in owned, poll=30))
    await asyncio.sleep(0.01)
    owned.clear()
    lease.changed()  # the revocation wakes it
    assert await asyncio.wait_for(waiting, 1) is False


class FakeCoordinator:
    """The aiokafka GroupCoordinator methods the lease wraps, and what they answer."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.generation = 3
        self.answer = True
        self.took = 0.0
        self.rejoin_asked = False
        self._rejoin_needed_fut = SimpleNamespace(done=lambda: self.rejoin_asked)
        self.resets = 0
        self._heartbeat_interval_ms = 20  # (aiokafka's default: 3,000)
        self._heartbeat_task: object = None  # aiokafka's, stopped for a join
        self.beats = 0

    async def _do_heartbeat(self) -> bool:
        self.beats += 1
        self.clock.t += self.took  # the answer comes this much later
        return self.answer

    async def _do_rejoin_group(self, subscription: Any) -> bool:
        self.clock.t += 5
        await self._on_join_complete(self.generation + 1, "member", "range", b"")
        return True

    async def _on_join_complete(self, generation: int, *args: Any) -> None:
        self.generation = generation

    def reset_generation(self) -> None:
        self.resets += 1

    def coordinator_dead(self) -> None:
        pass


async def test_attach_follows_heartbeats_joins_and_resets() -> None:
    clock = Clock()
    coordinator = FakeCoordinator(clock)
    coordinator._heartbeat_task = "aiokafka's"  # no extra heartbeats in this test
    lease = Lease("g", 10.0, clock=clock)
    lease.attach(SimpleNamespace(_coordinator=coordinator), began=clock.t - 1)
    assert lease.valid_until == clock.t + 7  # the first join, as of before start()

    # A heartbeat answered 30 s after it was sent (the process stalled in between)
    # confirms as of its send time: already expired.
    sent = clock.t
    coordinator.took = 30
    assert await coordinator._do_heartbeat() is True
    assert lease.valid_until == sent + 8 and not lease.valid()

    # "Rebalancing" answers ok but asks for a re-join: no confirmation before the join.
    coordinator.took = 0
    coordinator.rejoin_asked = True
    await coordinator._do_heartbeat()
    assert not lease.valid()
    began = clock.t
    await coordinator._do_rejoin_group(None)
    assert lease.generation == 4 and lease.valid_until == began + 8 and lease.valid()

    coordinator.rejoin_asked = False
    clock.t += 1
    await coordinator._do_heartbeat()
    assert lease.valid_until == clock.t + 8

    coordinator.reset_generation()  # unknown member / illegal generation
    assert coordinator.resets == 1 and not lease.valid()
    coordinator.answer = False
    await coordinator._do_heartbeat()
    assert not lease.valid()


async def test_a_join_is_followed_by_a_heartbeat_until_aiokafkas_are_back() -> None:
    """A 5 s join confirms only 3 s past its end (10 s session, 2 s margin), and aiokafka's
    first heartbeat comes an interval (3 s) after its assignment callbacks: a heartbeat at
    once confirms the lease to 8 s past the join's end. Ours go on, one an interval,
    until aiokafka's are back."""
    clock = Clock()
    coordinator = FakeCoordinator(clock)
    lease = Lease("g", 10.0, clock=clock)
    lease.attach(SimpleNamespace(_coordinator=coordinator), began=clock.t)
    await asyncio.sleep(0)  # the heartbeat after start()'s join
    assert coordinator.beats == 1
    began = clock.t
    await coordinator._do_rejoin_group(None)  # takes 5 s
    assert lease.valid_until == began + 8
    await asyncio.sleep(0)
    assert coordinator.beats == 2 and lease.valid_until == clock.t + 8 == began + 13
    await eventually(lambda: coordinator.beats >= 4, timeout=2)  # callbacks still running
    coordinator._heartbeat_task = "aiokafka's"  # back: no more of ours
    await asyncio.sleep(0.1)  # five intervals
    beats = coordinator.beats
    await asyncio.sleep(0.1)
    assert coordinator.beats == beats


async def test_the_stall_watch_reports_a_late_tick_once() -> None:
    clock = Clock()
    gaps: list[float] = []
    watch = StallWatch(0.01, 2.0, gaps.append, clock=clock)
    task = asyncio.ensure_future(watch.run())
    await asyncio.sleep(0.03)
    clock.t += 30  # the loop stood still this long
    await asyncio.sleep(0.05)
    watch.stop()
    await asyncio.wait_for(task, 1)
    assert len(gaps) == 1 and 29.9 < gaps[0] <= 30.0


def test_partitions_are_named_per_topic_in_the_warning() -> None:
    tps = [TopicPartition("webhooks.parked", 5), TopicPartition("webhooks.deliveries", 5)]
    tps.append(TopicPartition("webhooks.deliveries", 4))
    assert describe(tps) == "webhooks.deliveries[4, 5] webhooks.parked[5]"
    assert describe([]) == "none"
