"""The parked read-back shares (delivery/readback.py): pure decisions and, as a property,
a simulated reader of one ``webhooks.parked`` partition (any interleaving of reads,
finishes, seeks back and idle time): every copy is held or dead-lettered exactly once,
each endpoint's copies taken in the log's order, no tenant or endpoint over its share,
and the commit never passes a copy that is not finished.
"""

from __future__ import annotations

from collections import deque

from aiokafka import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook_stream.core.settings import ConfigError, Settings
from webhook_stream.core.topics import DELIVERIES, PARKED
from webhook_stream.delivery.lanes import OffsetTracker, Tracked
from webhook_stream.delivery.readback import (
    DRAIN_S,
    PATIENCE_S,
    RESEEK_S,
    EndpointShare,
    ReadBack,
    Shares,
    Verdict,
    due,
    overflows,
    readback,
)

HOLD, DEFER = Verdict.HOLD, Verdict.DEFER


def test_defaults_give_one_tenant_a_tenth_of_the_read_back_budget() -> None:
    assert Shares.from_settings(Settings()) == Shares(per_tenant=100, window=10_000, spare=250)
    # Never more than a quarter, whatever the setting.
    assert Shares.from_settings(Settings(max_parked_held_per_tenant=10**6)).per_tenant == 250
    assert Shares.from_settings(Settings(max_parked_held=3)).per_tenant == 1


def test_the_setting_is_validated() -> None:
    try:
        Settings(max_parked_held_per_tenant=0).validate()
    except ConfigError as exc:
        assert "MAX_PARKED_HELD_PER_TENANT" in str(exc)
    else:
        raise AssertionError("accepted 0")


def test_readback_table() -> None:
    s = EndpointShare(endpoint=2, tenant="t", per_tenant=5)
    assert readback(s, 0, 0, head=False, behind=False) is HOLD
    assert readback(s, 1, 4, head=False, behind=False) is HOLD
    assert readback(s, 2, 0, head=False, behind=False) is DEFER  # endpoint at its share
    assert readback(s, 0, 5, head=False, behind=False) is DEFER  # tenant at its share
    # An earlier copy of the endpoint was deferred: this one must not overtake it.
    assert readback(s, 0, 0, head=False, behind=True) is DEFER
    # A strict head is always held (the endpoint's lane waits for it).
    assert readback(s, 9, 9, head=True, behind=True) is HOLD
    # Without a tenant (the operator's endpoints): per endpoint only.
    assert readback(EndpointShare(2, None, 5), 1, 99, head=False, behind=False) is HOLD
    # Spare room (few held in all): up to its own share beyond the tenant's, never behind.
    spare = EndpointShare(endpoint=2, tenant="t", per_tenant=5, own=8, spare=10)
    assert readback(spare, 7, 9, head=False, behind=False, total_held=9) is HOLD
    assert readback(spare, 8, 0, head=False, behind=False, total_held=9) is DEFER
    assert readback(spare, 2, 5, head=False, behind=False, total_held=10) is DEFER
    assert readback(spare, 0, 0, head=False, behind=True, total_held=0) is DEFER


def test_due_once_half_of_each_share_is_free() -> None:
    s = EndpointShare(endpoint=10, tenant="t", per_tenant=100)
    assert due(s, 5, 50)
    assert not due(s, 6, 0)
    assert not due(s, 0, 51)
    assert due(EndpointShare(1, "t", 100), 0, 0)
    assert not due(EndpointShare(1, "t", 100), 1, 0)
    assert due(EndpointShare(1, None, 100), 0, 10**6)
    # From the spare room: half of its own share and half of the spare room free.
    assert due(EndpointShare(1, "t", 2, own=10, spare=20), 5, 9, total_held=10)
    assert not due(EndpointShare(1, "t", 2, own=10, spare=20), 5, 9, total_held=11)
    assert due(EndpointShare(100, "t", 100, own=500, spare=250), 250, 250, total_held=125)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# The log: each copy's endpoint (0-5); endpoints 0-2 are tenant "a", 3-4 "b", 5 none.
_TENANT = {0: "a", 1: "a", 2: "a", 3: "b", 4: "b", 5: None}
_SHARE = {0: 1, 1: 2, 2: 3, 3: 1, 4: 3, 5: 2}
PER_TENANT = 3


SPARE = 5


def _share(endpoint_id: str) -> EndpointShare:
    e = int(endpoint_id)
    return EndpointShare(_SHARE[e], _TENANT[e], PER_TENANT, _SHARE[e] + 2, SPARE)


@settings(max_examples=1000, deadline=None)
@given(
    log=st.lists(st.integers(0, 5), min_size=1, max_size=60),
    steps=st.lists(
        st.tuples(st.sampled_from(["read"] * 3 + ["finish", "sweep", "idle"]), st.integers(0, 5))
    ),
    window=st.integers(1, 80),
    start=st.integers(0, 3),
)
def test_any_interleaving_holds_each_copy_once_in_order_within_the_shares(
    log: list[int], steps: list[tuple[str, int]], window: int, start: int
) -> None:
    _simulate(log, steps, window, start)


@settings(max_examples=1000, deadline=None)
@given(
    log=st.lists(st.integers(0, 5), min_size=10, max_size=60),
    steps=st.lists(
        st.tuples(st.sampled_from(["read"] * 3 + ["finish", "sweep", "idle"]), st.integers(0, 5)),
        min_size=20,
        max_size=150,
    ),
    window=st.integers(1, 12),
    start=st.integers(0, 3),
)
def test_the_same_with_small_windows_and_overflowing_backlogs(
    log: list[int], steps: list[tuple[str, int]], window: int, start: int
) -> None:
    # Small windows fill: backlogs that pin them are dead-lettered, all else holds.
    _simulate(log, steps, window, start)


def test_a_seek_back_for_one_endpoint_keeps_an_earlier_one_behind() -> None:
    # 2 (share 3) is deferred at 3; 3 (share 1) at 5, and 2 again at 6 (behind its 3). Then
    # 3 has room, 2 has some but is not due: the seek back to 5 must not hold 2's 6
    # before its 3.
    steps = [("read", 0)] * 7 + [("finish", 2), ("finish", 3), ("sweep", 0)] + [("read", 0)] * 2
    _simulate([2, 2, 2, 2, 3, 3, 2], steps, 100, 0)


def _simulate(log: list[int], steps: list[tuple[str, int]], window: int, start: int) -> None:
    tp = TopicPartition(PARKED, 0)
    clock = _Clock()
    rb = ReadBack(Shares(PER_TENANT, window), clock)
    tracker = OffsetTracker()
    rb.assigned(0, start)
    end = start + len(log)
    pos = start
    lanes: dict[int, deque[Tracked]] = {e: deque() for e in _TENANT}
    delivered: dict[int, list[int]] = {e: [] for e in _TENANT}
    dead: dict[int, list[int]] = {e: [] for e in _TENANT}
    #: Per endpoint, its copies as they were taken (held or dead-lettered).
    taken: dict[int, list[int]] = {e: [] for e in _TENANT}
    committed = start

    def read() -> None:
        nonlocal pos, committed
        part = rb._parts[0]
        waits = bool(part.deferred) and part.next - min(part.deferred) >= window
        assert (0 in rb.waiting()) == waits  # the cached lowest deferred offset is right
        if pos >= end or waits:
            return
        offset = pos
        pos += 1
        if not rb.fresh(tp, offset):
            return
        deferred = rb.entry(tp, offset)
        entry = deferred or tracker.track(tp, offset)
        e = log[offset - start]
        if rb.dead_letters(0, offset, str(e)):
            assert deferred is not None  # only a deferred copy read again
            dead[e].append(offset)
            taken[e].append(offset)
            entry.attempted = True
            tracker.done(entry)
            committed = tracker.committable().get(tp, committed)
            return
        total = rb.held_total
        held = rb.take(entry, str(e), _share(str(e)), head=False)
        if held:
            lanes[e].append(entry)
            taken[e].append(offset)
        # Within the shares (beyond them only from the spare room), whatever was read.
        held_e, held_t = rb.held(str(e), _TENANT[e])
        assert held_e <= _SHARE[e] + 2
        assert not held or (held_e <= _SHARE[e] and held_t <= PER_TENANT) or total < SPARE

    def finish(e: int) -> None:
        nonlocal committed
        if not lanes[e]:
            return
        entry = lanes[e].popleft()
        delivered[e].append(entry.offset)
        entry.attempted = True
        tracker.done(entry)
        rb.finished(entry)
        committed = tracker.committable().get(tp, committed)
        # The commit never passes a copy not delivered.
        done = {o for d in delivered.values() for o in d} | {o for d in dead.values() for o in d}
        assert all(o in done for o in range(start, committed))

    def sweep(pause: float = RESEEK_S) -> None:
        nonlocal pos
        clock.now += pause
        for p, offset in rb.seeks(_share).items():
            assert p == 0 and offset != pos
            pos = offset

    for action, e in steps:
        if action == "read":
            read()
        elif action == "finish":
            finish(e)
        elif action == "sweep":
            sweep()
        else:
            # Time passes (the loop sweeps meanwhile): long enough for a backlog to overflow.
            sweep()
            sweep(DRAIN_S / 2)
    # Then run to the end: every copy is delivered.
    for _ in range(20 * len(log) + 20):
        read()
        for e in _TENANT:
            finish(e)
        sweep()
    for e in _TENANT:
        want = [start + i for i, x in enumerate(log) if x == e]
        assert sorted(delivered[e] + dead[e]) == want, (e, delivered[e], dead[e], want)
        # Order: each endpoint's copies are taken in the log's order, so every copy
        # delivered after a dead letter is newer than it.
        assert taken[e] == sorted(taken[e]) and delivered[e] == sorted(delivered[e])
    assert committed == end
    assert rb.deferred_total() == 0
    assert rb.held("0", "a") == (0, 0) and rb.held("3", "b") == (0, 0)


def test_overflows_table() -> None:
    # Not before the patience, whatever the backlog.
    assert not overflows(10_000, 0, PATIENCE_S - 0.01)
    # Nothing finished while pinning it: a backlog the next finish would not drain in time.
    assert overflows(10_000, 0, PATIENCE_S)
    assert overflows(16, 0, PATIENCE_S)  # 2 s per copy at best: 32 s
    assert not overflows(15, 0, PATIENCE_S)  # 30 s: judged again later
    assert overflows(1, 0, DRAIN_S + 0.01)  # one copy stuck for longer than DRAIN_S
    # At the rate it finished copies, its deferred copies take longer than DRAIN_S.
    assert overflows(10_000, 99, PATIENCE_S)  # 50/s: 200 s
    assert not overflows(1_000, 99, PATIENCE_S)  # 50/s: 20 s
    assert not overflows(int(DRAIN_S * 50), 99, PATIENCE_S)  # just within
    assert overflows(int(DRAIN_S * 50) + 1, 99, PATIENCE_S)
    assert not overflows(0, 0, 100.0)  # nothing deferred: nothing to dead-letter


SLOW_N = 20  # slow's copies: 0 held, 19 deferred (19 x 2 s > 30 s: overflows at once)


def _pinned(window: int) -> tuple[ReadBack, _Clock, list[Tracked]]:
    """Offsets 0..window+1: "slow" (share 1) then "fast" from SLOW_N on (share 1): each
    holds its first copy, every other copy is deferred, and slow's offset 1 pins the
    window."""
    clock = _Clock()
    rb = ReadBack(Shares(100, window), clock)
    tracker = OffsetTracker()
    tp = TopicPartition(PARKED, 0)
    rb.assigned(0, 0)
    held = []
    for offset in range(window + 2):
        assert rb.fresh(tp, offset)
        entry = tracker.track(tp, offset)
        endpoint_id = "slow" if offset < SLOW_N else "fast"
        if rb.take(entry, endpoint_id, EndpointShare(1, endpoint_id, 100), head=False):
            held.append(entry)
    assert [e.offset for e in held] == [0, SLOW_N]
    assert rb.waiting() == {0}
    return rb, clock, held


def _share1(endpoint_id: str) -> EndpointShare:
    return EndpointShare(1, endpoint_id, 100)


def test_a_backlog_pinning_a_full_window_is_dead_lettered_after_the_patience() -> None:
    window = 40
    rb, clock, _ = _pinned(window)
    assert rb.seeks(_share1) == {}  # pinned from now
    clock.now += PATIENCE_S - 0.01
    assert rb.seeks(_share1) == {} and rb.waiting() == {0}
    clock.now += 0.01
    # Back to slow's first deferred copy: its 19 deferred copies are dead-lettered as read
    # again; fast's are decided again (still deferred: it holds its share).
    assert rb.seeks(_share1) == {0: 1}
    assert rb.overflowed == [(0, "slow", SLOW_N - 1)]
    assert rb.waiting() == set()
    tp = TopicPartition(PARKED, 0)
    for offset in range(1, window + 2):
        if not rb.fresh(tp, offset):
            assert offset == SLOW_N  # held already
            continue
        entry = rb.entry(tp, offset)
        assert entry is not None
        endpoint_id = "slow" if offset < SLOW_N else "fast"
        assert rb.dead_letters(0, offset, endpoint_id) == (endpoint_id == "slow")
        if endpoint_id == "fast":
            assert not rb.take(entry, endpoint_id, _share1(endpoint_id), head=False)
    # The window is free again (fast's first deferred copy is the earliest now).
    assert rb.seeks(_share1) == {} and rb.waiting() == set()
    assert rb.deferred_total() == window + 1 - SLOW_N
    assert not rb.dead_letters(0, window + 3, "slow")  # a later copy: decided as usual


def test_an_endpoint_that_drains_is_not_dead_lettered() -> None:
    rb, clock, held = _pinned(40)
    assert rb.seeks(_share1) == {}
    rb.finished(held[0])  # slow finished one copy while pinning: 19 left at 1 per 2 s
    clock.now += PATIENCE_S
    assert rb.seeks(_share1) == {0: 1}  # due: read again, not dead-lettered
    assert rb.overflowed == [] and not rb.dead_letters(0, 2, "slow")


def test_other_topics_are_always_fresh_and_have_no_entry() -> None:
    rb = ReadBack(Shares(1, 10))
    rb.assigned(0, 0)
    assert rb.fresh(TopicPartition(DELIVERIES, 0), 0)
    assert rb.fresh(TopicPartition(DELIVERIES, 0), 0)
    assert rb.entry(TopicPartition(DELIVERIES, 0), 0) is None
    # A partition not assigned (revoked meanwhile): as before shares.
    assert rb.fresh(TopicPartition(PARKED, 7), 3)
    rb.revoked(None)
    assert rb.fresh(TopicPartition(PARKED, 0), 0)


def test_a_revoke_stops_counting_the_partitions_held_copies() -> None:
    # A drain that times out drops queued copies unfinished: their shares must come back.
    rb = ReadBack(Shares(2, 100))
    rb.assigned(0, 0)
    rb.assigned(1, 0)
    share = EndpointShare(1, "t", 2)
    a, b = Tracked(TopicPartition(PARKED, 0), 0), Tracked(TopicPartition(PARKED, 1), 0)
    assert rb.take(a, "x", share, head=False) and rb.take(b, "y", share, head=False)
    assert rb.held_total == 2
    rb.revoked({0})
    assert rb.held("x", "t") == (0, 1) and rb.held_total == 1
    rb.finished(a)  # finishing late (cancelled during the drain) counts nothing twice
    assert rb.held("y", "t") == (1, 1)
    rb.revoked(None)
    assert rb.held_total == 0 and rb.held("y", "t") == (0, 0)
