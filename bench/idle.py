"""Rows 7i and 7q: what idle workers cost, and the first event after a quiet spell.

``python -m bench --idle-only`` runs just these (about two minutes with the default 60 s of
quiet): one worker with ``--idle-subs`` subscriptions (default 20) and nothing to do; the
CPU of the worker (with its status view process) and of the broker over ``--idle-seconds``
(default 20), from ``/proc``. Then the quiet spell goes on to ``--quiet-seconds`` and one
event is produced: seconds from its produce to its receipt (row 7q; the fetch waits have
lengthened by then). Then two more workers of the same app id join and the three are
measured idle the same way.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import orjson

from . import load
from .procs import cpu_seconds, process_cpu_seconds
from .report import Row

if TYPE_CHECKING:
    from .procs import Worker
    from .run import Bench

__all__ = ["phase_idle"]


async def _idle(bench: Bench, workers: list[Worker], seconds: float) -> tuple[float, float]:
    """Cores burnt by ``workers`` (with their status processes) and by the broker."""
    assert bench.broker is not None and bench.broker.pid is not None
    pid = bench.broker.pid
    w0, b0 = sum(cpu_seconds(w.pid) for w in workers), process_cpu_seconds(pid)
    await asyncio.sleep(seconds)
    w1, b1 = sum(cpu_seconds(w.pid) for w in workers), process_cpu_seconds(pid)
    return (w1 - w0) / seconds, (b1 - b0) / seconds


async def _first_after_quiet(bench: Bench, worker: Worker, tag: str) -> float:
    """Seconds from producing one event to its receipt (``sent_at`` to receipt)."""
    from .run import EVENTS_TOPIC

    doc = load.event_doc(f"evt_quiet_{tag}", "bench.latq.e0", 0)
    prefix = "latq"
    seen = (await bench.receiver_stats()).get(prefix, {"unique": 0})["unique"]
    await bench.producer.send_and_wait(EVENTS_TOPIC, orjson.dumps(doc), key=b"quiet")
    await bench.wait_receipts(prefix, seen + 1, worker, 30)
    lats = (await bench.receiver_stats(lat=prefix))["latencies"]
    return float(lats[-1])


async def phase_idle(bench: Bench, first: Worker) -> None:
    """Rows 7i (idle cost of one and three workers) and 7q (first event after quiet)."""
    a = bench.args
    n, seconds = a.idle_subs, a.idle_seconds
    specs = [(f"ep_latq_{i}", f"/latq/{i}", f"bench.latq.e{i}") for i in range(n)]
    await bench.create_subscriptions(first, specs)
    await bench.wait_healthy(first, n, 60)
    # One delivery first: every consumer joined, the status view has read its partitions.
    warm = await _first_after_quiet(bench, first, "warm")
    loaded = (await bench.health(first))[1].get("subscriptions", n)  # more in a full run
    bench.say(
        f"7i idle: one worker, {loaded} subscriptions, {seconds:g} s (first delivery {warm:.2f}s)"
    )
    t0 = time.monotonic()
    await asyncio.sleep(5)  # the warm-up delivery's commits and status writes settle
    one = await _idle(bench, [first], seconds)
    bench.say(f"  1 worker idle: worker {one[0]:.3f} cores, broker {one[1]:.3f} cores")
    left = a.quiet_seconds - (time.monotonic() - t0)
    if left > 0:
        bench.say(f"7q quiet for {left:.0f} s more, then one event")
        await asyncio.sleep(left)
    quiet = await _first_after_quiet(bench, first, "after")
    bench.say(f"  first event after {a.quiet_seconds:g} s of quiet: {quiet:.3f} s")
    more = [bench.start_worker(), bench.start_worker()]
    for w in more:
        await bench.wait_healthy(w, n, a.phase_timeout)
    cluster = [first, *more]
    await _first_after_quiet(bench, first, "warm3")
    await asyncio.sleep(10)  # the group rebalances and status stores read their share
    three = await _idle(bench, cluster, seconds)
    bench.say(f"  3 workers idle: workers {three[0]:.3f} cores, broker {three[1]:.3f} cores")
    for w in more:
        w.stop(timeout=45)
    raw: dict[str, Any] = {
        "subscriptions": loaded,
        "seconds": seconds,
        "one_worker_cores": one[0],
        "one_broker_cores": one[1],
        "three_workers_cores": three[0],
        "three_broker_cores": three[1],
        "first_after_quiet_s": quiet,
        "quiet_seconds": a.quiet_seconds,
    }
    bench.raw["idle"] = raw
    bench.rows.append(
        Row(
            "7i",
            f"idle cost, {loaded:,} subscriptions, {seconds:g} s: 1 worker / 3 workers",
            f"{one[0]:.3f} / {three[0]:.3f} cores",
            "",
            f"broker serving them {one[1]:.3f} / {three[1]:.3f} cores "
            "(goal 1 worker <= 0.02, its broker <= 0.04)",
        )
    )
    bench.rows.append(
        Row(
            "7q",
            f"first event after {a.quiet_seconds:g} s of quiet",
            f"{quiet * 1000:.0f} ms",
            "",
            "produce to receipt, one worker (goal <= 500 ms)",
        )
    )
