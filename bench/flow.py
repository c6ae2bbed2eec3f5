"""Rows 8a, 8b and 4t: endpoint flow control (strict ordering; isolation from a hanging
endpoint; isolation from another tenant's worst settings, printed beside row 4).

8a: ``--flow-events`` events to one ``ordering: strict`` endpoint and as many to one
best-effort endpoint with ``max_in_flight: 1`` (the same one request at a time), produced
together; each one's deliveries/s. Strict ordering adds the head-of-line bookkeeping, so the
ratio strict / best-effort shows what that costs.

8b: ``--hang-events`` events for an endpoint whose receiver never answers (``/hang``: the
worker's own per-attempt timeout ends each attempt), then paced events to a healthy endpoint
while that backlog sits in the worker; the healthy endpoint's p50 / p99 / max latency, to
compare with row 4. Run last: the hanging endpoint's retries outlive the phase.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from . import load
from .hops import outcomes
from .report import Row, p99_of

TOPIC = "events.bench"


async def _create(bench: Any, worker: Any, body: dict[str, Any]) -> None:
    auth = {"Authorization": f"Bearer {bench.token}"}
    async with bench.http.post(worker.url + "/subscriptions", json=body, headers=auth) as resp:
        if resp.status not in (201, 202):
            raise RuntimeError(
                f"POST /subscriptions {body['id']}: {resp.status} {await resp.text()}"
            )


async def phase_strict(bench: Any, worker: Any) -> None:
    n = bench.args.flow_events
    bench.say(f"8a strict ordering: {n:,} events to a strict endpoint and {n:,} to max_in_flight 1")
    for name, extra in (("strict", {"ordering": "strict"}), ("seq", {"max_in_flight": 1})):
        body = {
            "id": f"ep_{name}_0",
            "url": bench.rurl(f"/{name}/0"),
            "event_types": [f"bench.{name}"],
        }
        await _create(bench, worker, {**body, **extra})
    await bench.wait_healthy(worker, 0, 30)
    t0 = time.time()

    def records() -> Any:
        for i in range(n):
            for name in ("strict", "seq"):
                doc = load.event_doc(f"evt_{name}_{i}", f"bench.{name}", i)
                yield f"{name}{i}".encode(), orjson.dumps(doc)

    await load.produce(bench.producer, TOPIC, records())
    rates: dict[str, float] = {}
    incomplete = []
    for name in ("strict", "seq"):
        st, timed_out = await bench.wait_receipts(name, n, worker, bench.args.phase_timeout)
        rates[name] = st["unique"] / max(1e-9, (st["last"] or time.time()) - t0)
        if timed_out:
            incomplete.append(f"{name} {st['unique']:,}/{n:,}")
    bench.raw["flow_strict"] = {"events": n, **rates}
    rel = rates["strict"] / rates["seq"] if rates["seq"] else float("nan")
    bench.say(f"  strict {rates['strict']:,.0f}/s, max_in_flight 1 {rates['seq']:,.0f}/s")
    notes = (
        f"{n:,} events each, produced together; {rel:.2f}x of a best-effort endpoint "
        f"with max_in_flight 1 ({rates['seq']:,.0f}/s)"
    )
    if incomplete:
        notes += "; INCOMPLETE " + ", ".join(incomplete)
    bench.rows.append(
        Row(
            "8a",
            "one strict endpoint's throughput",
            f"{rates['strict']:,.0f} deliveries/s",
            "",
            notes,
        )
    )


async def phase_isolation(bench: Any, worker: Any) -> None:
    a = bench.args
    hang, count = a.hang_events, int(a.latency_rate * a.latency_seconds)
    bench.say(
        f"8b isolation: {hang:,} events for a hanging endpoint, "
        f"then {count:,} paced to a healthy one"
    )
    await _create(
        bench,
        worker,
        {"id": "ep_hang_0", "url": bench.rurl("/hang/0"), "event_types": ["bench.hang"]},
    )
    await _create(
        bench,
        worker,
        {"id": "ep_latiso_0", "url": bench.rurl("/latiso/0"), "event_types": ["bench.latiso"]},
    )
    await bench.wait_healthy(worker, 0, 30)
    docs = (
        (f"h{i}".encode(), orjson.dumps(load.event_doc(f"evt_hang_{i}", "bench.hang", i)))
        for i in range(hang)
    )
    await load.produce(bench.producer, TOPIC, docs)
    producer = AIOKafkaProducer(bootstrap_servers=bench.bootstrap, linger_ms=0)
    await producer.start()
    try:
        t0, futures = time.monotonic(), []
        for i in range(count):
            delay = t0 + i / a.latency_rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            doc = load.event_doc(f"evt_latiso_{i}", "bench.latiso", i)
            futures.append(await producer.send(TOPIC, orjson.dumps(doc), key=f"l{i}".encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    st, timed_out = await bench.wait_receipts("latiso", count, worker, 60)
    lats = sorted((await bench.receiver_stats(lat="latiso"))["latencies"])
    hung = (await bench.receiver_stats()).get("hang", {}).get("count", 0)
    if not lats:
        bench.rows.append(
            Row(
                "8b",
                "healthy endpoint's latency while another hangs",
                "no data",
                "",
                "nothing received",
            )
        )
        return
    p50 = statistics.median(lats) * 1000
    p99 = p99_of(lats) * 1000
    mx = lats[-1] * 1000
    bench.raw["flow_isolation"] = {
        "hang_events": hang,
        "sent": count,
        "received": st["unique"],
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": mx,
        "hanging_requests": hung,
    }
    bench.say(
        f"  healthy beside a hanging endpoint: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {mx:.1f} ms"
    )
    notes = (
        f"{hang:,} events queued for an endpoint that never answers "
        f"({hung:,} requests reached it); {a.latency_rate:g} ev/s to the healthy one, "
        f"{st['unique']:,}/{count:,} received; compare row 4"
    )
    if timed_out:
        notes += "; INCOMPLETE"
    bench.rows.append(
        Row(
            "8b",
            "healthy endpoint's latency p50 / p99 / max while another hangs",
            f"{p50:.0f} / {p99:.0f} / {mx:.0f} ms",
            "",
            notes,
        )
    )


async def phase_tenant_isolation(bench: Any, worker: Any) -> None:
    """Row 4t: a healthy tenant's latency while another runs the worst settings it can.

    The attacker tenant has ten endpoints: five at the slowest rate limit accepted
    (0.01/s) and five on a receiver that never answers with ``timeout_s`` 60 and
    ``max_in_flight`` 100; ``--hang-events / 2`` events fan out to all ten. Then the victim
    tenant gets ``--latency-rate`` events/s for ``--latency-seconds``, as row 4 measures.
    """
    a = bench.args
    flood, count = max(1, a.hang_events // 2), int(a.latency_rate * a.latency_seconds)
    bench.say(
        f"4t tenant isolation: {flood * 10:,} deliveries for another tenant's worst "
        f"settings, then {count:,} paced to a healthy tenant"
    )
    for i in range(10):
        worst: dict[str, Any] = (
            {"rate_limit_per_s": 0.01, "url": bench.rurl(f"/atkr/{i}")}
            if i < 5
            else {"timeout_s": 60, "max_in_flight": 100, "url": bench.rurl(f"/hang/t{i}")}
        )
        body = {"id": f"ep_atk_{i}", "event_types": ["bench.atk"], "tenant_id": "bench-atk"}
        await _create(bench, worker, {**body, **worst})
    await _create(
        bench,
        worker,
        {
            "id": "ep_lattn_0",
            "url": bench.rurl("/lattn/0"),
            "event_types": ["bench.vic"],
            "tenant_id": "bench-vic",
        },
    )
    await bench.wait_healthy(worker, 0, 30)

    def attack() -> Any:
        for i in range(flood):
            doc = {**load.event_doc(f"evt_atk_{i}", "bench.atk", i), "tenant_id": "bench-atk"}
            yield f"a{i}".encode(), orjson.dumps(doc)

    await load.produce(bench.producer, TOPIC, attack())
    producer = AIOKafkaProducer(bootstrap_servers=bench.bootstrap, linger_ms=0)
    await producer.start()
    try:
        t0, futures = time.monotonic(), []
        for i in range(count):
            delay = t0 + i / a.latency_rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing of the load, not a sync
            doc = {**load.event_doc(f"evt_lattn_{i}", "bench.vic", i), "tenant_id": "bench-vic"}
            futures.append(await producer.send(TOPIC, orjson.dumps(doc), key=f"t{i}".encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    st, timed_out = await bench.wait_receipts("lattn", count, worker, 60)
    lats = sorted((await bench.receiver_stats(lat="lattn"))["latencies"])
    row4 = bench.raw.get("latency", {})
    at = next((i + 1 for i, r in enumerate(bench.rows) if r.key == "4"), len(bench.rows))
    if not lats:
        bench.rows.insert(
            at, Row("4t", "healthy tenant's latency beside the worst", "no data", "", "")
        )
        return
    p50 = statistics.median(lats) * 1000
    p99 = p99_of(lats) * 1000
    mx = lats[-1] * 1000
    bench.raw["tenant_isolation"] = {
        "attacker_deliveries": flood * 10,
        "sent": count,
        "received": st["unique"],
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": mx,
    }
    bench.say(f"  healthy tenant: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {mx:.1f} ms")
    notes = (
        f"another tenant: 10 endpoints (5 at rate_limit_per_s 0.01, 5 hanging with "
        f"timeout_s 60, max_in_flight 100), {flood * 10:,} deliveries queued; "
        f"{st['unique']:,}/{count:,} received; row 4 p99 {row4.get('p99_ms', float('nan')):.0f} ms"
    )
    if timed_out:
        log = await outcomes(bench.bootstrap, "ep_lattn_0")
        bench.say(f"  healthy tenant's delivery log: {log}")
        notes += f"; INCOMPLETE ({log})"
    bench.rows.insert(
        at,
        Row(
            "4t",
            "healthy tenant's latency p50 / p99 / max beside another's worst settings",
            f"{p50:.0f} / {p99:.0f} / {mx:.0f} ms",
            "",
            notes,
        ),
    )
