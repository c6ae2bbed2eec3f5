"""One tenant's retry storm holds at most its share of a retry partition's buffer.

The retry scheduler buffers at most ``RETRY_BUFFER_PER_PARTITION`` (1,000) records per
retry-topic partition and pauses a full one. On main, 1,200 retries of one tenant due in
40 s filled every partition of ``webhooks.retry.1s`` and another tenant's retry waited
behind them for 40 s. Now a tenant holds at most ``RETRY_BUFFER_PER_TENANT`` (250) of
them; the rest is deferred: left in the log (nothing written), read past, and read again
when due. The first version of this moved the rest instead, and wrote each deferred record
again every 2 s while it waited (81,900 writes for these 4,800 records).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
from aiokafka import AIOKafkaProducer
from hypothesis import given
from hypothesis import strategies as st

from tests.isolation.conftest import Iso
from tests.support import Received, eventually, retry_record
from webhook_stream.failures.retry import HORIZON_S
from webhook_stream.failures.retry_share import STUBS_PER_BUFFER, Intake, intake, must_move

RETRY_TOPIC = "webhooks.retry.1s"  # the first retry topic of the test schedule (1s, 2s)
STORM = 1200  # per partition: over the production buffer of 1,000
DUE_IN_S = 40.0  # inside the horizon (60 s): on main such records held their partition
SHARE = 250  # RETRY_BUFFER_PER_TENANT at its default


def test_a_tenant_at_its_share_has_its_not_due_records_deferred() -> None:
    now = 1_000_000.0
    later = int(now) + 40_000
    assert intake("a", 249, 250, later, now) is Intake.HOLD
    assert intake("a", 250, 250, later, now) is Intake.DEFER
    # due: forwarded at once, holds nothing
    assert intake("a", 250, 250, int(now), now) is Intake.HOLD
    # the operator's endpoints (no tenant): bounded by the partition's buffer only
    assert intake(None, 10_000, 250, later, now) is Intake.HOLD


@given(
    tenant=st.one_of(st.none(), st.sampled_from(["a", "b"])),
    held=st.integers(0, 2000),
    share=st.integers(1, 500),
    due_in=st.integers(-10_000, 86_400_000),
)
def test_only_a_tenant_over_its_share_with_a_record_not_due_is_deferred(
    tenant: str | None, held: int, share: int, due_in: int
) -> None:
    now = 1_700_000_000_000.0
    verdict = intake(tenant, held, share, int(now) + due_in, now)
    if tenant is None or held < share or due_in <= 0:
        assert verdict is Intake.HOLD
    else:
        assert verdict is Intake.DEFER


def _move(**over: float) -> bool:
    args: dict[str, float] = {
        "handled_behind": 0,
        "tracked": 1200,
        "buffer": 1000,
        "remaining_ms": 40_000,
        "waited_ms": 30_000,
        "stale_ms": 2_000,
        "horizon_ms": HORIZON_S * 1000,
    }
    args.update(over)
    return must_move(**args)  # type: ignore[arg-type]


def test_a_deferred_record_is_written_again_only_when_something_needs_its_commit() -> None:
    # a storm alone in its partition (nothing handled behind it): never written again
    assert not _move()
    assert not _move(handled_behind=5)  # a few others' records behind: the commit waits
    assert _move(handled_behind=500)  # half a buffer of others behind: a restart's repeats
    assert _move(tracked=STUBS_PER_BUFFER * 1000)  # the partition's offsets at their bound
    # a long wait: hops before the topic's retention, as any record beyond the horizon
    assert _move(remaining_ms=3_600_000, waited_ms=2_001)
    assert not _move(remaining_ms=3_600_000, waited_ms=1_999)


@given(
    handled_behind=st.integers(0, 100_000),
    tracked=st.integers(1, 100_000),
    buffer=st.integers(2, 5_000),
    remaining_ms=st.integers(-10_000, 86_400_000),
    waited_ms=st.integers(0, 86_400_000),
    stale_ms=st.integers(2_000, 172_800_000),
)
def test_a_deferred_record_with_nothing_handled_behind_is_never_written(
    handled_behind: int,
    tracked: int,
    buffer: int,
    remaining_ms: int,
    waited_ms: int,
    stale_ms: int,
) -> None:
    moved = must_move(
        handled_behind=handled_behind,
        tracked=tracked,
        buffer=buffer,
        remaining_ms=remaining_ms,
        waited_ms=waited_ms,
        stale_ms=stale_ms,
        horizon_ms=HORIZON_S * 1000,
    )
    needed = (
        handled_behind >= buffer // 2
        or tracked >= STUBS_PER_BUFFER * buffer
        or (remaining_ms > HORIZON_S * 1000 and waited_ms > stale_ms)
    )
    assert moved == needed


async def _storm(
    producer: AIOKafkaProducer,
    endpoint: str,
    tenant: str,
    per_partition: int,
    due_ms: Callable[[int], int],
) -> int:
    """``per_partition`` retries of ``endpoint`` into each retry partition, the ``n``-th
    due at ``due_ms(n)``; how many in all."""
    partitions = sorted(await producer.partitions_for(RETRY_TOPIC))
    sends = []
    for p in partitions:
        for n in range(per_partition):
            record = retry_record(
                endpoint, p * per_partition + n, due_ms(n), tenant=tenant, type_="atk.retry"
            )
            value = orjson.dumps(record)
            sends.append(
                await producer.send(RETRY_TOPIC, value, key=endpoint.encode(), partition=p)
            )
    for fut in sends:
        await fut
    return len(partitions) * per_partition


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
    storm = await _storm(producer, "atk_retry_ep", "atk_retry", STORM, lambda _: due_ms)

    # The scheduler has read the storm: it deferred what was over the tenant's share.
    async def deferred() -> bool:
        got = await iso.metric("webhook_retry_deferred", f'{{topic="{RETRY_TOPIC}"}}')
        return got >= len(partitions) * (STORM - SHARE)

    await eventually(deferred, timeout=30, interval=0.3)

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
    # Nothing was written again for them: the victim's few retries behind the deferred
    # records did not need their commit (the first version: 81,900 writes).
    moved = 0.0
    for topic in ("webhooks.retry.1s", "webhooks.retry.2s"):
        moved += await iso.metric("webhook_retry_moved_total", f'{{topic="{topic}"}}')
    print(f"storm records written again while waiting {DUE_IN_S:.0f} s: {moved:.0f}")
    assert moved == 0, moved
    await iso.delete("atk_retry_ep")
    await iso.delete("vic_retry")


async def _moved_total(iso: Iso) -> float:
    moved = 0.0
    for topic in ("webhooks.retry.1s", "webhooks.retry.2s"):
        moved += await iso.metric("webhook_retry_moved_total", f'{{topic="{topic}"}}')
    return moved


async def test_others_crowding_behind_a_deferred_storm_get_its_front_moved_once(
    iso: Iso,
) -> None:
    """Half a buffer of others' retries handled behind deferred records at the commit's
    front: those are written again once (to the next retry topic, where nobody is behind
    them), not in a loop, and the others' retries are not held up meanwhile."""
    producer = iso.kafka.producer
    assert producer is not None
    await iso.create(
        id="atk_press_ep",
        url=iso.attacker.url("/press"),
        event_types=["never.press"],
        tenant_id="atk_press",
    )
    await iso.create(
        id="vic_press_ep",
        url=iso.victim.url("/press"),
        event_types=["never.press"],
        tenant_id="vic_press",
    )
    before = await _moved_total(iso)
    partitions = sorted(await producer.partitions_for(RETRY_TOPIC))
    # The share held is due in 10 s, the deferred rest in 40 s: once the held records are
    # forwarded, the deferred ones are the front that holds up the commit.
    soon_ms = int((time.time() + 10) * 1000)
    due_ms = int((time.time() + DUE_IN_S) * 1000)
    storm = await _storm(
        producer, "atk_press_ep", "atk_press", STORM, lambda n: soon_ms if n < SHARE else due_ms
    )

    async def deferred() -> bool:
        got = await iso.metric("webhook_retry_deferred", f'{{topic="{RETRY_TOPIC}"}}')
        return got >= len(partitions) * (STORM - SHARE)

    await eventually(deferred, timeout=30, interval=0.3)
    # 600 retries of another tenant per partition, due now, behind the deferred records.
    crowd = 600
    sent_at = time.time()
    await _storm(producer, "vic_press_ep", "vic_press", crowd, lambda _: 0)
    await iso.victim.wait_count("/press", len(partitions) * crowd, timeout=30)
    took = max(r.at for r in iso.victim.at("/press")) - sent_at
    print(f"{len(partitions) * crowd} retries behind a deferred storm, all in {took:.2f} s")
    assert took < 10.0, took

    def storm_arrived() -> bool:
        return len({r.json["data"]["n"] for r in iso.attacker.at("/press")}) >= storm

    await eventually(storm_arrived, timeout=DUE_IN_S + 90, interval=0.5)
    early = [
        r
        for r in iso.attacker.at("/press")
        if r.at * 1000 < (soon_ms if r.json["data"]["n"] % STORM < SHARE else due_ms)
    ]
    assert not early, len(early)
    moved = await _moved_total(iso) - before
    print(f"storm records written again with others crowding behind them: {moved:.0f}")
    # at most once each (the deferred front of each partition), never cycled
    assert moved <= storm - len(partitions) * SHARE, moved
    await iso.delete("atk_press_ep")
    await iso.delete("vic_press_ep")


async def test_deferred_records_survive_a_kill_minus_9(iso: Iso) -> None:
    """Deferred records are only in the log: a worker killed while they wait leaves them
    uncommitted, and the restarted worker reads, defers and forwards them when due."""
    producer = iso.kafka.producer
    assert producer is not None
    await iso.create(
        id="atk_kill_ep",
        url=iso.attacker.url("/kill"),
        event_types=["never.kill"],
        tenant_id="atk_kill",
    )
    partitions = sorted(await producer.partitions_for(RETRY_TOPIC))
    due_ms = int((time.time() + DUE_IN_S) * 1000)
    storm = await _storm(producer, "atk_kill_ep", "atk_kill", STORM, lambda _: due_ms)

    async def deferred() -> bool:
        got = await iso.metric("webhook_retry_deferred", f'{{topic="{RETRY_TOPIC}"}}')
        return got >= len(partitions) * (STORM - SHARE)

    await eventually(deferred, timeout=30, interval=0.3)
    iso.worker.kill()
    iso.worker.start()
    await iso.worker.wait_ready()
    assert time.time() * 1000 < due_ms  # killed and back while they wait

    def storm_arrived() -> bool:
        return len({r.json["data"]["n"] for r in iso.attacker.at("/kill")}) >= storm

    await eventually(storm_arrived, timeout=DUE_IN_S + 90, interval=0.5)
    got = iso.attacker.at("/kill")
    early = [r for r in got if r.at * 1000 < due_ms]
    assert not early, len(early)
    print(f"deferred storm after a kill -9: {storm} delivered, {len(got) - storm} twice")
    await iso.delete("atk_kill_ep")
