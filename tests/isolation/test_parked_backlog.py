"""A parked backlog larger than the read-back window (``10 x MAX_PARKED_HELD`` copies read
past the earliest deferred one), at the production defaults: one endpoint at the slowest
rate limit accepted parks more than the window in one ``webhooks.parked`` partition, and
another tenant's endpoint parks in the same partition.

On main the partition waited at the full window for the slow endpoint (one copy per 100 s),
so the other tenant's parked copies behind it did not arrive (not within 60 s). Now the
slow endpoint's deferred copies that pin the window are dead-lettered (``parked_backlog``)
and the other tenant's copies arrive in seconds; nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson

from tests.isolation.conftest import Iso
from tests.support import eventually
from webhook_stream.core.settings import Settings
from webhook_stream.core.topics import DEADLETTER, PARKED
from webhook_stream.delivery.readback import PARKED_BACKLOG, Shares
from webhook_stream.status.owners import partition_of
from webhook_stream.subscriptions.validation import MIN_RATE_LIMIT_PER_S

PARTITIONS = 4  # tests.support.Worker's WEBHOOK_STREAM_PARTITIONS
WINDOW = Shares.from_settings(Settings()).window  # 10,000 at the defaults
SLOW = WINDOW + 1_000  # deliveries of the slow endpoint: more than the window parks
BURST = 800  # the victim's lane holds 500 (MAX_PENDING_PER_ENDPOINT); the rest parks
WITHIN = 10.0
SLOW_ID = "slow_backlog"


def _same_partition(endpoint_id: str) -> str:
    """An id of the victim's endpoint whose deliveries share ``endpoint_id``'s partition."""
    want = partition_of(endpoint_id, PARTITIONS)
    return next(
        f"vic_backlog_{n}"
        for n in range(100)
        if partition_of(f"vic_backlog_{n}", PARTITIONS) == want
    )


def _data_i(dl: dict[str, Any]) -> int:
    data = dl["event"]["data"]
    return int((orjson.loads(data) if isinstance(data, str) else data)["i"])


async def test_a_slow_endpoints_backlog_over_the_window_does_not_hold_another_tenant(
    iso: Iso,
) -> None:
    await iso.create(
        id=SLOW_ID,
        url=iso.attacker.url("/slow"),
        event_types=["slow.backlog"],
        tenant_id="slow_t",
        rate_limit_per_s=MIN_RATE_LIMIT_PER_S,
    )
    await iso.flood("slow_t", "slow.backlog", SLOW)

    async def all_taken() -> bool:
        parked = await iso.metric("webhook_parked_deliveries")
        pending = await iso.metric("webhook_pending_deliveries")
        dead = await iso.metric("webhook_deliveries_total", '{outcome="dead_lettered"}')
        return parked + pending + dead >= SLOW - 50

    await eventually(all_taken, timeout=120, interval=0.5)

    # The victim, another tenant, parks in the same partition of webhooks.parked: its
    # receiver holds the first call until the burst is taken, so its lane fills (500).
    victim_id = _same_partition(SLOW_ID)
    took = await iso.parked_burst(victim_id, "vbk", BURST)
    assert took < WITHIN, took

    # Both parked in one partition, the slow one more than the window there.
    parked = await iso.kafka.read_all(PARKED)
    slow_parts = {r.partition for r in parked if r.key == SLOW_ID.encode()}
    victim_parts = {r.partition for r in parked if r.key == victim_id.encode()}
    assert slow_parts == victim_parts and len(slow_parts) == 1, (slow_parts, victim_parts)
    assert sum(1 for r in parked if r.key == SLOW_ID.encode()) > WINDOW

    # The slow endpoint's overflow is dead-lettered, the reason says why; nothing is lost:
    # delivered + dead-lettered + still parked or held = sent.
    async def accounted() -> tuple[int, int, float] | None:
        dead = [
            orjson.loads(r.value)
            for r in await iso.kafka.read_all(DEADLETTER)
            if r.key == SLOW_ID.encode()
        ]
        dead_i = {_data_i(d) for d in dead}
        delivered_i = {r.json["data"]["i"] for r in iso.attacker.at("/slow")}
        waiting = await iso.metric("webhook_parked_deliveries") + await iso.metric(
            "webhook_pending_deliveries"
        )
        ok = (
            dead
            and all(d["reason"] == PARKED_BACKLOG for d in dead)
            and not dead_i & delivered_i
            and len(dead_i) + len(delivered_i) + waiting == SLOW
        )
        return (len(dead_i), len(delivered_i), waiting) if ok else None

    found = await eventually(accounted, timeout=60, interval=0.5)
    print(f"slow endpoint: {SLOW} sent = dead-lettered/delivered/waiting {found}")
    dead_n, _, _ = found
    assert dead_n >= WINDOW - 100, found  # the window's worth at least
    dead_metric = await iso.metric("webhook_deliveries_total", '{outcome="dead_lettered"}')
    assert dead_metric >= dead_n, dead_metric
    for endpoint_id in (SLOW_ID, victim_id):
        await iso.delete(endpoint_id)


async def test_a_burst_larger_than_the_window_that_drains_is_not_dead_lettered(iso: Iso) -> None:
    # The guard: a healthy endpoint whose parked burst is larger than the window is freed
    # by its own deliveries, never dead-lettered. Its receiver is slow (within the attempt
    # timeout: no retries) until half a window is parked, so the endpoint parks, then
    # fast; while it has copies parked, all its deliveries park behind them.
    endpoint_id = "fast_backlog"
    gate = asyncio.Event()

    async def slow_then_fast(_: object) -> int:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gate.wait(), 5)
        return 200

    iso.victim.script["/fast"] = slow_then_fast
    await iso.create(
        id=endpoint_id, url=iso.victim.url("/fast"), event_types=["fast.*"], tenant_id="fast_t"
    )
    flood = asyncio.ensure_future(iso.flood("fast_t", "fast.burst", SLOW))

    async def half_parked() -> bool:
        return await iso.metric("webhook_parked_deliveries") >= WINDOW // 2

    await eventually(half_parked, timeout=120, interval=0.2)
    t0 = time.monotonic()
    gate.set()
    iso.victim.script["/fast"] = 200
    await flood
    most_deferred = 0.0

    async def all_arrived() -> bool:
        nonlocal most_deferred
        most_deferred = max(most_deferred, await iso.metric("webhook_parked_deferred"))
        return len({r.json["data"]["i"] for r in iso.victim.at("/fast")}) >= SLOW

    try:
        await eventually(all_arrived, timeout=300, interval=0.2)
    finally:
        got = len({r.json["data"]["i"] for r in iso.victim.at("/fast")})
        print(
            f"fast burst of {SLOW}: {got} arrived in {time.monotonic() - t0:.1f}s"
            f" (at most {most_deferred:.0f} parked copies deferred at once)"
        )
    records = await iso.kafka.read_all(PARKED)
    assert sum(1 for r in records if r.key == endpoint_id.encode()) > WINDOW
    dead = [r for r in await iso.kafka.read_all(DEADLETTER) if r.key == endpoint_id.encode()]
    assert dead == []
    await iso.delete(endpoint_id)
