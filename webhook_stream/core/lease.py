"""Group membership as a lease: a stalled process notices before it acts.

A consumer-group member learns that it lost its partitions only when the coordinator
tells it, and a process that stalled (a long GC pause, a frozen VM or container, CPU
throttling, ``SIGSTOP``) hears nothing while it stands still: when it resumes, every
task that was about to act goes on acting, on partitions another member has owned for a
while. Nothing in the client stops it (issue 29: a quarter of a run delivered twice).

So ownership is a lease. Each confirmation of the membership by the coordinator (a
successful heartbeat, a completed join) extends it to the time that confirmation's
request was *sent* plus the session timeout, less a margin: the coordinator cannot have
given the partitions away before that, since it counts the session from when it got the
request. Whatever acts on owned partitions asks :meth:`Lease.valid` at the point of
action, so after a stall the first thing that runs finds the lease expired, whatever
the stall was; it waits for a new confirmation (:meth:`Lease.wait_change`), and what it
held for partitions the re-join took away is dropped. The check reads a clock, not a
flag a watchdog would set: the watchdog is frozen by the same stall.

:class:`StallWatch` only reports: a loop tick that comes much later than due means the
process stood still (WARNING log naming the gap, ``webhook_stalls_total``).

The clock is ``CLOCK_BOOTTIME`` where there is one (Linux): unlike ``CLOCK_MONOTONIC``
it also counts a suspended machine (laptop lid, a VM's suspend), during which the
coordinator's clock ran on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from webhook_stream.core.errors import OwnershipLost

__all__ = [
    "Lease",
    "StallWatch",
    "describe",
    "expiry",
    "lease_margin",
    "now",
    "report_dropped",
    "stall_gap",
]

log = logging.getLogger(__name__)

_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None)


def now() -> float:
    """Seconds on a clock that runs through stalls and suspends."""
    if _BOOTTIME is not None:
        return time.clock_gettime(_BOOTTIME)
    return time.monotonic()


# -- decisions (pure) ----------------------------------------------------------------------


def lease_margin(session_timeout: float) -> float:
    """Safety margin below the session timeout: request latency and scheduling slack."""
    return min(2.0, session_timeout * 0.2)


def expiry(sent_at: float, session_timeout: float) -> float:
    """Until when a confirmation whose request left at ``sent_at`` lets a member act."""
    return sent_at + session_timeout - lease_margin(session_timeout)


def stall_gap(last_tick: float, at: float, interval: float) -> float:
    """How long a loop ticking every ``interval`` stood still between two ticks."""
    return max(0.0, at - last_tick - interval)


# -- the lease (state + the aiokafka hook) -------------------------------------------------


class Lease:
    """One consumer group membership's right to act on its partitions."""

    __slots__ = ("_clock", "_session_timeout", "_wake", "generation", "name", "valid_until")

    def __init__(self, name: str, session_timeout: float, clock: Callable[[], float] = now) -> None:
        self.name = name
        self._session_timeout = session_timeout
        self._clock = clock
        #: Acting is allowed while ``clock() < valid_until``; nothing confirmed yet.
        self.valid_until = 0.0
        #: The generation the last confirmation was for (-1: none).
        self.generation = -1
        self._wake: asyncio.Event | None = None

    def valid(self) -> bool:
        return self._clock() < self.valid_until

    def check(self) -> None:
        """Raise :class:`OwnershipLost` unless valid: right before an action."""
        if self._clock() >= self.valid_until:
            raise OwnershipLost(self.name)

    def confirm(self, sent_at: float, generation: int) -> None:
        """The coordinator confirmed the membership for a request sent at ``sent_at``."""
        until = expiry(sent_at, self._session_timeout)
        if generation != self.generation:
            self.generation, self.valid_until = generation, until
        elif until > self.valid_until:
            self.valid_until = until
        self.changed()

    def expire(self) -> None:
        """The membership is in doubt (generation reset, coordinator lost): stop acting."""
        self.valid_until = 0.0

    def changed(self) -> None:
        """Wake whatever waits in :meth:`wait_change` (a confirmation, or a revocation)."""
        wake, self._wake = self._wake, None
        if wake is not None:
            wake.set()

    async def wait_change(self, timeout: float) -> None:
        """Until the next :meth:`changed` (or ``timeout``): then check again."""
        if self._wake is None:
            self._wake = asyncio.Event()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass

    def clock(self) -> float:
        return self._clock()

    async def hold(self, owned: Callable[[], bool], poll: float = 1.0) -> bool:
        """Wait while the lease is expired; False once ``owned()`` says the work is lost.

        ``owned`` is asked again at every change (a confirmation, a revocation).
        """
        while not self.valid():
            if not owned():
                return False
            await self.wait_change(poll)
        return True

    def attach(self, consumer: Any, began: float) -> None:
        """Follow ``consumer``'s group coordinator (aiokafka 0.14), from its ``start()``.

        ``start()`` returns after the first join, so that one confirms as of ``began``
        (taken before ``start()``).

        aiokafka has no listener for heartbeats or joins, so the coordinator's own methods
        are wrapped on the instance. A heartbeat answered without error confirms as of its
        send time, unless it asked for a re-join (``RebalanceInProgress`` also answers
        "ok"): that confirmation waits for the join. A completed join confirms as of the
        time it began; a reset generation or a dead coordinator expires the lease.

        aiokafka stops heartbeating for a join and starts again only once the assignment
        callbacks are done, an interval later; a slow join (Tansu: 5 s) leaves less of
        the session than that. So a join is followed by a heartbeat at once, and one each
        interval until aiokafka's are back (one extra heartbeat per join, as a rule).
        """
        coordinator = consumer._coordinator
        heartbeat = coordinator._do_heartbeat
        rejoin = coordinator._do_rejoin_group
        join_complete = coordinator._on_join_complete
        reset = coordinator.reset_generation
        dead = coordinator.coordinator_dead
        lease = self
        began_join = [began]
        interval = coordinator._heartbeat_interval_ms / 1000
        beats: set[asyncio.Task[None]] = set()

        async def do_heartbeat() -> bool:
            sent_at, generation = lease._clock(), coordinator.generation
            ok = bool(await heartbeat())
            if (
                ok
                and coordinator.generation == generation
                and not coordinator._rejoin_needed_fut.done()
            ):
                lease.confirm(sent_at, generation)
            return ok

        async def beat_after_join(generation: int) -> None:
            for _ in range(max(1, round(lease._session_timeout / interval))):
                try:
                    await do_heartbeat()
                except Exception as exc:  # noqa: BLE001 - aiokafka's own heartbeats report it
                    log.debug("heartbeat after a join of %s failed: %r", lease.name, exc)
                    return
                await asyncio.sleep(interval)
                if coordinator.generation != generation or coordinator._heartbeat_task:
                    return  # another join, or aiokafka's heartbeats are back

        def beat_now(generation: int) -> None:
            task = asyncio.ensure_future(beat_after_join(generation))
            beats.add(task)
            task.add_done_callback(beats.discard)

        async def do_rejoin_group(subscription: Any) -> bool:
            began_join[0] = lease._clock()
            return bool(await rejoin(subscription))

        async def on_join_complete(generation: int, *args: Any) -> None:
            # Before the assignment callback: it may act on what it was given.
            lease.confirm(began_join[0], generation)
            beat_now(generation)
            await join_complete(generation, *args)

        def reset_generation() -> None:
            lease.expire()
            reset()

        def coordinator_dead() -> None:
            lease.expire()
            dead()

        self.confirm(began, coordinator.generation)
        beat_now(coordinator.generation)  # start() returned after the first join: the same
        coordinator._do_heartbeat = do_heartbeat
        coordinator._do_rejoin_group = do_rejoin_group
        coordinator._on_join_complete = on_join_complete
        coordinator.reset_generation = reset_generation
        coordinator.coordinator_dead = coordinator_dead


class StallWatch:
    """Ticks every ``interval``; a tick much later than due is a stall, reported once."""

    def __init__(
        self,
        interval: float,
        threshold: float,
        on_stall: Callable[[float], None],
        clock: Callable[[], float] = now,
    ) -> None:
        self._interval = interval
        self._threshold = threshold
        self._on_stall = on_stall
        self._clock = clock
        self._stopped = asyncio.Event()

    def stop(self) -> None:
        self._stopped.set()

    async def run(self) -> None:
        last = self._clock()
        while not self._stopped.is_set():
            try:
                await asyncio.wait_for(self._stopped.wait(), self._interval)
            except TimeoutError:
                pass
            at = self._clock()
            gap = stall_gap(last, at, self._interval)
            if gap >= self._threshold:
                self._on_stall(gap)
            last = at


def report_dropped(lease: Lease, dropped: int, what: str, partitions: Iterable[Any]) -> None:
    """The WARNING of a revocation that came after the lease lapsed."""
    log.warning(
        "%s: membership lapsed (a stall?); %d %s of the revoked partitions %s dropped, not "
        "done: their next owner does them",
        lease.name,
        dropped,
        what,
        describe(partitions),
    )


def describe(partitions: Iterable[Any]) -> str:
    """``topic[p,...]`` per topic, for a log line."""
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return " ".join(f"{t}{sorted(ps)}" for t, ps in sorted(by_topic.items())) or "none"
