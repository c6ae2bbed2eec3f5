"""Issue 28's attack at the production budgets: ten endpoints at the slowest rate limit
accepted and 5,000 deliveries for them; another tenant's events arrive within 5 s, and
deleting the ten releases everything they held at once.

On main the same attack (at 1e-9/s, now refused) held 4,525 of the worker's 5,000 pending
deliveries and another tenant's event had not arrived after 60 s.
"""

from __future__ import annotations

import asyncio
import time

from tests.isolation.conftest import Iso
from tests.support import eventually
from webhook_stream.subscriptions.validation import MIN_RATE_LIMIT_PER_S

ENDPOINTS = 10
EVENTS = 500  # x 10 endpoints = 5,000 deliveries


async def test_slowest_rate_limits_hold_nothing_others_need_and_a_delete_releases_them(
    iso: Iso,
) -> None:
    ids = [f"atk_rate_{i}" for i in range(ENDPOINTS)]
    for i, endpoint_id in enumerate(ids):
        await iso.create(
            id=endpoint_id,
            url=iso.attacker.url(f"/rate/{i}"),
            event_types=["atk.rate"],
            tenant_id="atk_rate",
            rate_limit_per_s=MIN_RATE_LIMIT_PER_S,
        )
    dead_before = await iso.metric("webhook_deliveries_total", '{outcome="dead_lettered"}')
    await iso.flood("atk_rate", "atk.rate", EVENTS)

    # The attack is in place: every endpoint made its one call (burst 1) and parks the rest.
    await eventually(
        lambda: (
            len({r.path for r in iso.attacker.requests if r.path.startswith("/rate/")}) == ENDPOINTS
        ),
        timeout=30,
    )

    async def all_taken() -> bool:
        parked = await iso.metric("webhook_parked_deliveries")
        pending = await iso.metric("webhook_pending_deliveries")
        return parked + pending >= ENDPOINTS * EVENTS - ENDPOINTS - 50

    await eventually(all_taken, timeout=60, interval=0.3)
    pending = await iso.metric("webhook_pending_deliveries")
    # Each lane holds what its rate starts in 10 s (one); parked copies read back wait
    # under MAX_PARKED_HELD (1,000), not in the shared budget (5,000; 4,525 on main).
    assert pending <= ENDPOINTS + 1000, pending
    assert (await iso.health())["throttled_tenants"] >= 1

    lat = await iso.victim_latencies(5)
    print(f"under attack: pending {pending:.0f}, victim latencies {[round(x, 3) for x in lat]}")
    assert max(lat) < 5.0, lat

    # Deleted: the rate-limit sleep is woken, the lanes and everything parked end as
    # endpoint_missing dead letters now, not in 100 s per delivery.
    t0 = time.monotonic()
    for endpoint_id in ids:
        await iso.delete(endpoint_id)

    async def released() -> bool:
        dead = await iso.metric("webhook_deliveries_total", '{outcome="dead_lettered"}')
        parked = await iso.metric("webhook_parked_deliveries")
        pending = await iso.metric("webhook_pending_deliveries")
        return dead - dead_before >= ENDPOINTS * EVENTS - ENDPOINTS and parked == 0 and pending == 0

    await eventually(released, timeout=30, interval=0.3)
    released_in = time.monotonic() - t0
    assert released_in < 30, released_in
    print(f"released in {released_in:.1f}s")

    async def unthrottled() -> bool:
        return (await iso.health())["throttled_tenants"] == 0

    await eventually(unthrottled, timeout=15, interval=0.3)
    lat = await iso.victim_latencies(3)
    assert max(lat) < 5.0, lat
    assert len([r for r in iso.attacker.requests if r.path.startswith("/rate/")]) == ENDPOINTS


async def test_disabling_wakes_the_waiting_lanes_at_once(iso: Iso) -> None:
    ids = [f"atk_dis_{i}" for i in range(3)]
    for i, endpoint_id in enumerate(ids):
        await iso.create(
            id=endpoint_id,
            url=iso.attacker.url(f"/dis/{i}"),
            event_types=["atk.dis"],
            tenant_id="atk_dis",
            rate_limit_per_s=MIN_RATE_LIMIT_PER_S,
        )
    await iso.flood("atk_dis", "atk.dis", 300)
    await eventually(
        lambda: len({r.path for r in iso.attacker.requests if r.path.startswith("/dis/")}) == 3,
        timeout=30,
    )
    dead_before = await iso.metric("webhook_deliveries_total", '{outcome="dead_lettered"}')
    # Each lane now sleeps 100 s for its next token; a disable must not wait for it.
    async with iso.worker.api() as client:
        for endpoint_id in ids:
            r = await client.patch(f"/subscriptions/{endpoint_id}", json={"disabled": True})
            assert r.status_code in (200, 202), r.text

    async def released() -> bool:
        dead = await iso.metric("webhook_deliveries_total", '{outcome="dead_lettered"}')
        pending = await iso.metric("webhook_pending_deliveries")
        return dead - dead_before >= 3 * 300 - 3 and pending == 0

    await eventually(released, timeout=20, interval=0.3)
    assert len([r for r in iso.attacker.requests if r.path.startswith("/dis/")]) == 3


async def test_deleting_ends_an_attempt_hanging_on_its_receiver(iso: Iso) -> None:
    release = asyncio.Event()

    async def hang(_: object) -> int:
        await release.wait()
        return 200

    iso.attacker.script["/hang"] = hang
    try:
        await iso.create(
            id="atk_hang",
            url=iso.attacker.url("/hang"),
            event_types=["atk.hang"],
            tenant_id="atk_hang",
            timeout_s=60,
            max_in_flight=5,
        )
        await iso.flood("atk_hang", "atk.hang", 20)
        await eventually(lambda: len(iso.attacker.at("/hang")) >= 5, timeout=30)
        assert await iso.metric("webhook_in_flight") >= 5
        t0 = time.monotonic()
        await iso.delete("atk_hang")

        async def ended() -> bool:
            return (
                await iso.metric("webhook_in_flight") == 0
                and await iso.metric("webhook_pending_deliveries") == 0
            )

        await eventually(ended, timeout=10, interval=0.2)
        # Not the 60 s of its timeout_s.
        assert time.monotonic() - t0 < 10
        assert len(iso.attacker.at("/hang")) == 5
    finally:
        release.set()
