"""One tenant's retry storm holds at most its share of a retry partition's buffer.

The retry scheduler buffers at most ``RETRY_BUFFER_PER_PARTITION`` (1,000) records per
retry-topic partition and pauses a full one. On main, 1,200 retries of one tenant due in
40 s (inside the 60 s horizon, so never moved) filled every partition of
``webhooks.retry.1s`` and another tenant's retry waited behind them for 40 s. Now a tenant
holds at most ``RETRY_BUFFER_PER_TENANT`` (250) of them; the rest is moved (written again,
due time kept) and the partition goes on.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from tests.isolation.conftest import Iso
from tests.support import Received, eventually
from webhook_stream.failures.retry import CYCLE_S, Intake, intake

RETRY_TOPIC = "webhooks.retry.1s"  # the first retry topic of the test schedule (1s, 2s)
STORM = 1200  # per partition: over the production buffer of 1,000
DUE_IN_S = 40.0  # inside the horizon (60 s): on main such records held their partition


def test_a_tenant_at_its_share_has_its_not_due_records_moved() -> None:
    now = 1_000_000.0
    later = int(now) + 40_000
    assert intake("a", 249, 250, later, now, None) is Intake.HOLD
    assert intake("a", 250, 250, later, now, None) is Intake.MOVE
    # due: forwarded at once, holds nothing
    assert intake("a", 250, 250, int(now), now, None) is Intake.HOLD
    # the operator's endpoints (no tenant): bounded by the partition's buffer only
    assert intake(None, 10_000, 250, later, now, None) is Intake.HOLD
    # moved a moment ago and over its share again: the partition waits for its cycle
    just = int(now - CYCLE_S * 1000 / 2)
    assert intake("a", 250, 250, later, now, just) is Intake.COOL
    assert intake("a", 10, 250, later, now, just) is Intake.HOLD
    assert intake("a", 250, 250, later, now, int(now - CYCLE_S * 1000)) is Intake.MOVE


@given(
    tenant=st.one_of(st.none(), st.sampled_from(["a", "b"])),
    held=st.integers(0, 2000),
    share=st.integers(1, 500),
    due_in=st.integers(-10_000, 86_400_000),
    moved_ago=st.one_of(st.none(), st.integers(-5_000, 10_000)),
)
def test_only_a_tenant_over_its_share_with_a_record_not_due_is_moved_or_waits(
    tenant: str | None, held: int, share: int, due_in: int, moved_ago: int | None
) -> None:
    now = 1_700_000_000_000.0
    moved_ms = None if moved_ago is None else int(now) - moved_ago
    verdict = intake(tenant, held, share, int(now) + due_in, now, moved_ms)
    if tenant is None or held < share or due_in <= 0:
        assert verdict is Intake.HOLD
    elif moved_ago is not None and moved_ago < CYCLE_S * 1000:
        assert verdict is Intake.COOL  # never written again within CYCLE_S of its move
    else:
        assert verdict is Intake.MOVE


def _retry_record(endpoint: str, tenant: str, n: int, due_ms: int) -> dict[str, Any]:
    return {
        "delivery_id": f"msg_{endpoint}_{n}",
        "endpoint_id": endpoint,
        "tenant_id": tenant,
        "event": {
            "id": f"{endpoint}-{n}",
            "type": "atk.retry",
            "occurred_at": "2026-11-26T00:00:00.000Z",
            "tenant_id": tenant,
            "data": orjson.dumps({"n": n}).decode(),
            "source": {"topic": "events.iso", "partition": 0, "offset": n},
        },
        "created_at": "2026-11-26T00:00:00.000Z",
        "attempts": 1,
        "first_attempt_at": None,
        "last_attempt_at": None,
        "last_status_code": 500,
        "last_error": "HTTP 500",
        "due_at_ms": due_ms,
        "origin": "retry",
    }


async def test_a_retry_storm_does_not_hold_another_tenants_retries(iso: Iso) -> None:
    producer = iso.kafka.producer
    assert producer is not None
    await iso.create(
        id="atk_retry_ep",
        url=iso.attacker.url("/retry"),
        event_types=["never.retry"],
        tenant_id="atk_retry",
    )
    # The victim's endpoint fails each event once: its deliveries go through retry.1s.
    failed: set[int] = set()

    def once(got: Received) -> int:
        i = got.json["data"]["i"]
        if i in failed:
            return 200
        failed.add(i)
        return 500

    iso.victim.script["/vicr"] = once
    await iso.create(
        id="vic_retry", url=iso.victim.url("/vicr"), event_types=["vicr.*"], tenant_id="vic"
    )

    partitions = sorted(await producer.partitions_for(RETRY_TOPIC))
    due_ms = int((time.time() + DUE_IN_S) * 1000)
    sends = []
    for p in partitions:
        for n in range(STORM):
            record = _retry_record("atk_retry_ep", "atk_retry", p * STORM + n, due_ms)
            sends.append(
                await producer.send(
                    RETRY_TOPIC, orjson.dumps(record), key=b"atk_retry_ep", partition=p
                )
            )
    for fut in sends:
        await fut
    storm = len(partitions) * STORM

    # The scheduler has read the storm: it moved what was over the tenant's share.
    async def moved() -> bool:
        got = await iso.metric("webhook_retry_moved_total", f'{{topic="{RETRY_TOPIC}"}}')
        return got >= len(partitions) * (STORM - 500)

    await eventually(moved, timeout=30, interval=0.3)

    sent_at: dict[int, float] = {}
    for i in range(5):
        doc = {"type": "vicr.ping", "tenant_id": "vic", "data": {"i": i}}
        sent_at[i] = time.time()
        await producer.send_and_wait("events.iso", orjson.dumps(doc), key=f"vr{i}".encode())

    def arrived() -> dict[int, float]:
        """Per event, when its second (successful) attempt came; {} until all did."""
        times: dict[int, list[float]] = {}
        for r in iso.victim.at("/vicr"):
            times.setdefault(r.json["data"]["i"], []).append(r.at)
        done = {i: max(times[i]) for i in sent_at if len(times.get(i, ())) >= 2}
        return done if len(done) == len(sent_at) else {}

    got = await eventually(arrived, timeout=DUE_IN_S + 20)
    lat = [got[i] - sent_at[i] for i in sorted(sent_at)]
    print(f"victim retries under a retry storm of {storm}: {[round(x, 2) for x in lat]}")
    # one failed attempt, a 1 s retry, the second attempt: not the storm's 40 s
    assert max(lat) < 6.0, lat

    # The storm's records are not lost and none is early: each arrives once due.
    def storm_arrived() -> bool:
        ids = {r.json["data"]["n"] for r in iso.attacker.at("/retry")}
        return len(ids) >= storm

    await eventually(storm_arrived, timeout=DUE_IN_S + 90, interval=0.5)
    early = [r for r in iso.attacker.at("/retry") if r.at * 1000 < due_ms]
    assert not early, len(early)
    # Cycling is throttled: each record over its share is written again at most once per
    # CYCLE_S (unthrottled, the broker's speed: hundreds of thousands in 40 s).
    cycled = await iso.metric("webhook_retry_moved_total", '{topic="webhooks.retry.2s"}')
    print(f"moved within webhooks.retry.2s while waiting {DUE_IN_S:.0f} s: {cycled:.0f}")
    assert cycled <= storm * (DUE_IN_S / CYCLE_S + 5), cycled
    await iso.delete("atk_retry_ep")
    await iso.delete("vic_retry")
