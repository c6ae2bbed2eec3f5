"""The pure budget logic (delivery/budgets.py) and the per-tenant counts it relies on.

Property-based: whatever arrives and finishes, one endpoint holds at most its share, one
tenant at most its budget (at most half of the worker's), and the counts go back to zero.
"""

from __future__ import annotations

import asyncio
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from webhook_stream.core.settings import Settings
from webhook_stream.delivery.budgets import (
    RATE_HOLD_S,
    Admit,
    Budgets,
    TenantSlots,
    admit,
    endpoint_share,
)
from webhook_stream.delivery.lanes import Lanes

DEFAULT = Budgets.from_settings(Settings())


def test_defaults_leave_most_of_the_worker_to_other_tenants() -> None:
    assert DEFAULT == Budgets(
        total=5000, per_endpoint=500, per_tenant=1000, in_flight_per_tenant=100
    )
    # The worker's lanes stop taking one batch early (consumer.py): 4,500 are usable.
    assert DEFAULT.total - 500 - DEFAULT.per_tenant >= 3000


@given(
    total=st.integers(1, 100_000),
    endpoint=st.integers(1, 100_000),
    tenant=st.integers(1, 100_000),
)
def test_settings_never_give_one_tenant_more_than_half(
    total: int, endpoint: int, tenant: int
) -> None:
    b = Budgets.from_settings(
        Settings(
            max_pending_deliveries=total,
            max_pending_per_endpoint=endpoint,
            max_pending_per_tenant=tenant,
        )
    )
    assert 1 <= b.per_endpoint <= b.per_tenant
    assert b.per_tenant <= max(1, total // 2)
    assert b.per_endpoint <= max(1, total // 4)


@given(
    rate=st.floats(0.01, 100_000),
    width=st.integers(1, 100),
)
def test_a_rate_limited_lane_holds_what_its_rate_starts_in_ten_seconds(
    rate: float, width: int
) -> None:
    share = endpoint_share(DEFAULT, width, rate)
    assert share <= DEFAULT.per_endpoint
    assert share <= max(width, math.ceil(rate * RATE_HOLD_S))
    assert share >= min(DEFAULT.per_endpoint, width)
    assert endpoint_share(DEFAULT, width, None) == DEFAULT.per_endpoint


def test_the_slowest_rate_holds_one_delivery() -> None:
    assert endpoint_share(DEFAULT, 1, 0.01) == 1
    assert endpoint_share(DEFAULT, 1, 1000) == DEFAULT.per_endpoint


# One step of the simulated worker: (tenant 0-3 or None, endpoint 0-5 of it, rate or None,
# arrive or finish).
_steps = st.lists(
    st.tuples(
        st.sampled_from(["t0", "t1", "t2", None]),
        st.integers(0, 5),
        st.sampled_from([None, 0.01, 1.0, 50.0]),
        st.booleans(),
    ),
    max_size=400,
)


@settings(max_examples=200, deadline=None)
@given(steps=_steps, total=st.integers(8, 200))
def test_no_sequence_lets_a_tenant_or_endpoint_exceed_its_budget(
    steps: list[tuple[str | None, int, float | None, bool]], total: int
) -> None:
    b = Budgets(total, max(1, total // 4), max(1, total // 2), 10)
    held: dict[tuple[str | None, int], int] = {}
    rates: dict[tuple[str | None, int], float | None] = {}
    parked = 0
    for tenant, endpoint, rate, arrive in steps:
        key = (tenant, endpoint)
        rate = rates.setdefault(key, rate)  # an endpoint has one rate (a PATCH: see below)
        if not arrive:
            if held.get(key):
                held[key] -= 1
            continue
        share = endpoint_share(b, 1, rate)
        tenant_held = sum(n for (t, _), n in held.items() if t == tenant)
        verdict = admit(b, share, held.get(key, 0), tenant, tenant_held)
        if verdict is Admit.LANE:
            # Admitted only below the share in effect (a lowered rate parks the next one).
            assert held.get(key, 0) < share
            held[key] = held.get(key, 0) + 1
        else:
            parked += 1
        assert held.get(key, 0) <= share
        if tenant is not None:
            assert sum(n for (t, _), n in held.items() if t == tenant) <= b.per_tenant
    # Whatever one tenant does, a tenant holding nothing is let in.
    for tenant in ("t0", "t1", "t2"):
        assert admit(b, 1, 0, "fresh", 0) is Admit.LANE
        held_by = sum(n for (t, _), n in held.items() if t == tenant)
        assert held_by <= total // 2


@settings(max_examples=60, deadline=None)
@given(
    items=st.lists(
        st.tuples(st.integers(0, 4), st.sampled_from(["a", "b", None]), st.booleans()),
        max_size=80,
    ),
    take=st.integers(0, 4),
)
def test_lanes_count_each_group_and_release_it_on_every_path(
    items: list[tuple[int, str | None, bool]], take: int
) -> None:
    async def run() -> None:
        gate = asyncio.Event()

        async def handle(_: object) -> None:
            await gate.wait()

        lanes: Lanes[object] = Lanes(handle, 10_000, _never)
        groups: dict[int, str | None] = {}
        for key, group, counted in items:
            group = groups.setdefault(key, group)  # an endpoint has one tenant
            lanes.submit(str(key).encode(), 1, object(), counted=counted, group=group)
        expect = {g: sum(1 for k, _, c in items if c and groups[k] == g) for g in ("a", "b")}
        assert {g: lanes.group_size(g) for g in ("a", "b")} == expect
        assert lanes.group_size(None) == 0
        lanes.take_queued(str(take).encode())  # strict head leaving: the rest is parked
        assert lanes.group_size("a") <= expect["a"] and lanes.group_size("b") <= expect["b"]
        await asyncio.sleep(0)
        await lanes.drain(0.01)  # hanging handlers are abandoned, queued items dropped
        assert lanes.group_size("a") == lanes.group_size("b") == lanes.pending == 0

    asyncio.run(run())


def _never(exc: BaseException) -> None:
    raise AssertionError(exc)


@settings(max_examples=50, deadline=None)
@given(
    limit=st.integers(1, 5),
    plan=st.lists(st.tuples(st.sampled_from(["x", "y"]), st.booleans()), max_size=30),
)
def test_tenant_slots_bound_holders_and_forget_idle_tenants(
    limit: int, plan: list[tuple[str, bool]]
) -> None:
    async def run() -> None:
        slots = TenantSlots(limit)
        holding: dict[str, int] = {"x": 0, "y": 0}
        peak = {"x": 0, "y": 0}
        release = asyncio.Event()

        async def use(tenant: str, cancel: bool) -> None:
            await slots.acquire(tenant)
            holding[tenant] += 1
            peak[tenant] = max(peak[tenant], holding[tenant])
            try:
                await release.wait()
            finally:
                holding[tenant] -= 1
                slots.release(tenant)

        tasks = [asyncio.create_task(use(t, c)) for t, c in plan]
        await asyncio.sleep(0)
        for task, (_, cancel) in zip(tasks, plan, strict=True):
            if cancel:
                task.cancel()  # holders and waiters alike
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert max(peak.values(), default=0) <= limit
        assert slots.busy("x") == slots.busy("y") == 0
        assert not slots._slots  # nothing kept for idle tenants

    asyncio.run(run())
