"""Rows 3a and 4 alone (``--case-a-only``): the ceiling, case A on a fresh worker, row 4's
latency right after it, the ceiling again.

For working on the delivery loop's cost: about a minute instead of a full run. The ratio is
to the higher of the two ceilings, as in a full run. Row 3a's notes give the CPU per
delivery of each worker process and of the whole box (broker, receiver, this process's
load): with the delivery loop off its core's limit, throughput follows the box's.
``--profile`` records each of the worker's processes with py-spy while case A runs
(``bench/out/case-a.<role>.pyspy``, collapsed stacks: ``worker``, ``fan-out``,
``status-view``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from typing import Any

from .procs import cpu_by_role, pids_by_role
from .report import Row, rate


async def stop_profilers(profilers: list[subprocess.Popen[bytes]]) -> None:
    """Stop each py-spy (SIGINT: it writes its file) and wait for it."""
    for profiler in profilers:
        profiler.send_signal(2)
    for profiler in profilers:
        await asyncio.to_thread(profiler.wait, 30)
    profilers.clear()


def start_profilers(bench: Any, pid: int, tag: str) -> list[subprocess.Popen[bytes]]:
    """py-spy on each process of the worker ``pid``: ``bench/out/<tag>.<role>.pyspy``."""
    here = os.path.dirname(sys.executable)
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=here)
    if spy is None:
        raise SystemExit("--profile needs py-spy on PATH (pip install py-spy)")
    profilers = []
    for role, child in pids_by_role(pid).items():
        out = bench.out / f"{tag}.{role.replace(' ', '-')}.pyspy"
        profilers.append(
            subprocess.Popen(
                [spy, "record", "-p", str(child), "-f", "raw", "-o", str(out), "-r", "200"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    return profilers


async def phase_case_a(bench: Any) -> None:
    a = bench.args
    c, n = a.concurrency, a.events
    await bench.phase_ceiling()
    bench.say("3a: starting a worker")
    worker = bench.start_worker()
    profilers: list[subprocess.Popen[bytes]] = []
    try:
        await bench.wait_healthy(worker, 0, 180)
        specs = [(f"ep_a_{i}", f"/a/{i}", f"bench.a.e{i}") for i in range(c)]
        specs.append(("ep_warm_0", "/warm/0", "bench.warm"))
        specs += [
            (f"ep_lat_{i}", f"/lat/{i}", f"bench.lat.e{i}") for i in range(a.latency_endpoints)
        ]
        await bench.create_subscriptions(worker, specs)
        await bench.wait_healthy(worker, len(specs), 60)
        await bench.phase_warmup(worker)
        if a.profile:
            profilers += start_profilers(bench, worker.pid, "case-a")
        cpu0, others0 = cpu_by_role(worker.pid), bench.others_cpu()
        res = await bench.case(worker, "a", n, lambda i: f"bench.a.e{i % c}", n)
        spent = {role: s - cpu0[role] for role, s in cpu_by_role(worker.pid).items()}
        others = [b - a for a, b in zip(others0, bench.others_cpu(), strict=True)]
        cpu_s, main_s = sum(spent.values()), spent["worker"]
        await stop_profilers(profilers)
        await bench.phase_latency(worker)  # row 4 right after the load, as in a full run
    finally:
        await stop_profilers(profilers)
        await asyncio.to_thread(worker.stop, 60)
    await bench.phase_ceiling("after case A")
    per_k = cpu_s / max(1, res["delivered"]) * 1000
    seconds = {**spent, **dict(zip(("broker", "receiver", "load"), others, strict=True))}
    per_k_of = {k: v / max(1, res["delivered"]) * 1000 for k, v in seconds.items()}
    parts = ", ".join(f"{role} {per_k_of[role]:.3f}" for role in spent)
    box = sum(per_k_of.values())
    bench.rows.append(
        Row(
            "3a",
            "webhook-stream A: 1 endpoint per event",
            rate(res["rate"], "deliveries/s"),
            "",
            f"{res['delivered']:,} of {res['expected']:,}; worker CPU {per_k:.3f} s per 1,000 "
            f"({parts}); worker process busy {main_s / max(1e-9, res['seconds']):.2f} cores; "
            f"whole box {box:.3f} s per 1,000 (broker {per_k_of['broker']:.3f}, receiver "
            f"{per_k_of['receiver']:.3f}, load {per_k_of['load']:.3f})",
            per_s=res["rate"],
        )
    )
    bench.raw["case_a"] = {
        **res,
        "cpu_s": cpu_s,
        "main_s": main_s,
        "cpu_by_role": spent,
        "box_cpu_per_1000": per_k_of,
    }
