"""The parked read-back budget per tenant (MAX_PARKED_HELD_PER_TENANT), at the production
budgets: one tenant's rate-limited endpoints park thousands of copies, and another
tenant's endpoint that parks (a burst over MAX_PENDING_PER_ENDPOINT) still gets its
parked copies delivered within seconds, in its order.

On the base (a global read-back budget) the attacker's copies took ~490 of the 500 usable
and the victim's parked copies waited behind them (not delivered within 60 s).
"""

from __future__ import annotations

from tests.isolation.conftest import Iso
from tests.support import eventually
from webhook_stream.subscriptions.validation import MIN_RATE_LIMIT_PER_S

ENDPOINTS = 10
EVENTS = 500  # x 10 endpoints = 5,000 deliveries
BURST = 800  # the victim's lane holds 500 (MAX_PENDING_PER_ENDPOINT); the rest parks
WITHIN = 10.0


async def test_another_tenants_parked_copies_are_delivered_in_seconds_and_in_order(
    iso: Iso,
) -> None:
    ids = [f"atk_park_{i}" for i in range(ENDPOINTS)]
    for i, endpoint_id in enumerate(ids):
        await iso.create(
            id=endpoint_id,
            url=iso.attacker.url(f"/park/{i}"),
            event_types=["atk.park"],
            tenant_id="atk_park",
            rate_limit_per_s=MIN_RATE_LIMIT_PER_S,
        )
    await iso.flood("atk_park", "atk.park", EVENTS)

    async def all_taken() -> bool:
        parked = await iso.metric("webhook_parked_deliveries")
        pending = await iso.metric("webhook_pending_deliveries")
        return parked + pending >= ENDPOINTS * EVENTS - ENDPOINTS - 50

    await eventually(all_taken, timeout=60, interval=0.3)
    deferred = await iso.metric("webhook_parked_deferred")
    pending = await iso.metric("webhook_pending_deliveries")
    print(f"attack in place: pending {pending:.0f}, parked copies deferred {deferred:.0f}")
    # Each of the ten holds its share (one: what 0.01/s starts in 10 s), in its lane.
    assert pending <= 2 * ENDPOINTS, pending

    # The victim: its receiver holds the first call until the burst is taken, so its lane
    # fills (500) and the rest of the burst is parked behind the attacker's copies.
    took = await iso.parked_burst("vic_burst", "vb", BURST)
    assert took < WITHIN, took
    # The attacker's copies are still waiting, not dropped: each endpoint made its one call.
    assert len({r.path for r in iso.attacker.requests if r.path.startswith("/park/")}) <= ENDPOINTS
    for endpoint_id in ids:
        await iso.delete(endpoint_id)

    async def released() -> bool:
        return (
            await iso.metric("webhook_parked_deliveries") == 0
            and await iso.metric("webhook_pending_deliveries") == 0
        )

    await eventually(released, timeout=60, interval=0.3)
