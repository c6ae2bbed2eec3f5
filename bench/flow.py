"""Rows 8a and 8b: endpoint flow control (strict ordering; isolation from a hanging endpoint).

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
from .report import Row

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
    p99 = lats[min(len(lats) - 1, int(len(lats) * 0.99))] * 1000
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
