"""One benchmark run: every phase in order against one embedded broker and one receiver.

Phases: (1) HTTP ceiling, (2) hand-written baseline, (3) webhook-stream case A and case B,
(4) paced latency, (5) worker CPU and peak RSS over A+B, (6) 100k subscriptions: load time,
memory, routing cost before/after, and a fresh worker's start-up with them, (8) endpoint
flow control (bench/flow.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from webhook_stream.broker import EmbeddedBroker, free_port
from webhook_stream.core.topics import SUBSCRIPTIONS
from webhook_stream.subscriptions.model import generate_secret

from . import load, records
from .casea import phase_case_a, start_profilers, stop_profilers
from .compression import broker_rows, compression_rows
from .decode import decode_rows
from .egress import phase_proxied
from .filters import filter_rows
from .flow import phase_isolation, phase_strict, phase_tenant_isolation
from .globs import glob_row
from .hops import hop_latencies, hop_percentiles, hop_summary
from .idle import phase_idle
from .procs import Receiver, Worker, cpu_by_role, cpu_seconds, memory_kb, process_cpu_seconds
from .receivers import phase_receivers
from .report import Row, markdown_table, p99_of, rate, ratio, text_table
from .tracing import phase_tracing

EVENTS_TOPIC = "events.bench"
BASELINE_TOPIC = "bench.baseline"  # not events.*: the worker must not consume it
TOKEN = "bench"
LOG_PATTERN = re.compile(r"\b(WARNING|ERROR|CRITICAL|Traceback)\b|\[W\]|\[E\]|\[C\]")


class Stalled(RuntimeError):
    pass


class Bench:
    def __init__(self, args: argparse.Namespace, out: Path, worker_log: IO[bytes]) -> None:
        self.args = args
        self.out = out
        self.worker_log = worker_log
        self.started = time.monotonic()
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.raw: dict[str, Any] = {}
        self.workers: list[Worker] = []
        self.workdir = Path(tempfile.mkdtemp(prefix="webhook-bench-"))
        self.broker: EmbeddedBroker | None = None
        self.receiver: Receiver | None = None
        self.bootstrap = ""
        self.token = TOKEN
        self.bootstrap_url = ""
        #: Every ceiling measured in this run; the highest is the reference.
        self.ceilings: list[float] = []
        self.ceiling_cpu_per_k = float("nan")
        self.ceiling_client_ms = float("nan")
        self.ceiling_receiver_ms = float("nan")
        self._http: aiohttp.ClientSession | None = None
        self._producer: AIOKafkaProducer | None = None

    # ------------------------------------------------------------------ plumbing

    def say(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {msg}", flush=True)

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None
        return self._http

    @property
    def producer(self) -> AIOKafkaProducer:
        assert self._producer is not None
        return self._producer

    def rurl(self, path: str) -> str:
        assert self.receiver is not None
        return self.receiver.url(path)

    async def receiver_stats(self, lat: str | None = None) -> dict[str, Any]:
        url = self.rurl("/_stats") + (f"?lat={lat}" if lat else "")
        async with self.http.get(url) as resp:
            return orjson.loads(await resp.read())

    async def wait_receipts(
        self, prefix: str, expected: int, worker: Worker | None, timeout: float
    ) -> tuple[dict[str, Any], bool]:
        """Poll the receiver until ``expected`` distinct deliveries arrived under ``prefix``.

        Gives up at ``timeout`` or after 30 s without progress; returns (stats, timed_out).
        """
        deadline = time.monotonic() + timeout
        last_progress = time.monotonic()
        last_seen = -1
        next_report = time.monotonic() + 5
        empty = {"count": 0, "unique": 0, "first": 0.0, "last": 0.0}
        while True:
            st = (await self.receiver_stats()).get(prefix, empty)
            if st["unique"] >= expected:
                return st, False
            now = time.monotonic()
            if st["unique"] != last_seen:
                last_seen, last_progress = st["unique"], now
            if now > deadline or now - last_progress > 30:
                self.say(f"  {prefix}: gave up waiting at {st['unique']:,}/{expected:,}")
                return st, True
            if worker is not None and not worker.alive():
                raise RuntimeError(f"the worker exited (code {worker.proc and worker.proc.poll()})")
            if now >= next_report:
                self.say(f"  {prefix}: {st['unique']:,}/{expected:,} delivered")
                next_report = now + 5
            await asyncio.sleep(0.05)

    async def health(self, worker: Worker) -> tuple[int, dict[str, Any]]:
        try:
            async with self.http.get(
                worker.url + "/health", timeout=aiohttp.ClientTimeout(total=2)
            ) as resp:
                return resp.status, orjson.loads(await resp.read())
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
            return 0, {}

    async def wait_healthy(self, worker: Worker, min_subs: int, timeout: float) -> float:
        """Seconds until /health is 200 with at least ``min_subs`` subscriptions."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        next_report = t0 + 10
        while time.monotonic() < deadline:
            if not worker.alive():
                raise RuntimeError("the worker exited while starting; see bench/out/worker.log")
            status, body = await self.health(worker)
            if status == 200 and body.get("subscriptions", 0) >= min_subs:
                return time.monotonic() - t0
            if time.monotonic() >= next_report:
                self.say(f"  worker: /health {status} subscriptions={body.get('subscriptions')}")
                next_report += 10
            await asyncio.sleep(0.1)
        raise RuntimeError(f"the worker was not healthy with {min_subs} subscriptions in time")

    async def status_caught_up(self, worker: Worker, endpoint_ids: list[str]) -> float:
        """Seconds until every endpoint's attempt log answers 200 through ``worker``."""
        t0 = time.monotonic()
        auth = {"Authorization": f"Bearer {self.token}"}
        waiting = list(endpoint_ids)
        while waiting:
            if time.monotonic() - t0 > self.args.phase_timeout:
                raise Stalled(f"status of {len(waiting)} endpoints still unavailable")
            for ep in list(waiting):
                url = f"{worker.url}/subscriptions/{ep}/attempts?limit=1"
                async with self.http.get(url, headers=auth) as resp:
                    await resp.read()
                    if resp.status == 200:
                        waiting.remove(ep)
                    elif resp.status != 503:
                        raise Stalled(f"GET {url}: {resp.status}")
            if waiting:
                await asyncio.sleep(0.2)
        return time.monotonic() - t0

    async def metrics(self, worker: Worker) -> dict[str, float]:
        async with self.http.get(worker.url + "/metrics") as resp:
            text = (await resp.read()).decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith(("webhook_deliveries_total{", "webhook_events_total{")):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    async def create_topics(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            for name in (EVENTS_TOPIC, BASELINE_TOPIC):
                try:
                    await admin.create_topics([NewTopic(name, self.args.partitions, 1)])
                except TopicAlreadyExistsError:
                    pass
        finally:
            await admin.close()

    def events(self, case: str, count: int, type_of: Callable[[int], str]) -> Iterator[Any]:
        for i in range(count):
            doc = load.event_doc(f"evt_{case}_{i}", type_of(i), i)
            yield f"k{i}".encode(), orjson.dumps(doc)

    def start_worker(self, env: dict[str, str] | None = None) -> Worker:
        # Every bench endpoint is on the receiver's one host; the ceiling holds C
        # connections to it, so the worker may too (its default is 16 per host).
        extra = {"WEBHOOK_STREAM_HTTP_POOL_PER_HOST": str(self.args.concurrency)}
        extra.update(kv.split("=", 1) for kv in self.args.worker_env)
        extra.update(env or {})
        worker = Worker(
            self.bootstrap_url,
            self.workdir / f"w{len(self.workers)}",
            self.worker_log,
            TOKEN,
            self.args.partitions,
            extra,
            self.args.worker_loglevel,
            self.args.loop,
        )
        self.workers.append(worker)
        return worker.start()

    # ------------------------------------------------------------------ the run

    def run(self) -> int:
        """Synchronous entry: start the broker and receiver, run every phase, clean up."""
        out = self.out
        broker_log = out / "broker.log"
        broker_log.write_bytes(b"")
        receiver_log = open(out / "receiver.log", "wb")
        ok = False
        try:
            self.broker = EmbeddedBroker(port=free_port(), log_file=broker_log)
            self.say(f"starting the embedded broker on 127.0.0.1:{self.broker.port}")
            self.broker.start()
            self.bootstrap = self.broker.bootstrap
            self.bootstrap_url = self.broker.url
            self.receiver = Receiver(receiver_log).start()
            self.say(f"receiver process pid {self.receiver.proc.pid} on :{self.receiver.port}")  # type: ignore[union-attr]
            asyncio.run(self.main())
            ok = True
        finally:
            self.cleanup()
            receiver_log.close()
            self.report(complete=ok)
        return 0 if ok else 1

    def cleanup(self) -> None:
        for worker in self.workers:
            if worker.alive():
                self.say(f"stopping worker pid {worker.pid}")
                t0 = time.monotonic()
                worker.stop(timeout=45)
                stop_s = time.monotonic() - t0
                self.say(f"  stopped in {stop_s:.1f}s")
                self.raw.setdefault("worker_stop_s", []).append(stop_s)
                if stop_s > 10:
                    self.notes.append(
                        f"worker pid {worker.pid} took {stop_s:.1f}s to stop (SIGTERM)"
                    )
        if self.receiver is not None:
            self.receiver.stop()
        if self.broker is not None:
            self.broker.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    async def main(self) -> None:
        async with aiohttp.ClientSession() as self._http:
            await self.create_topics()
            self._producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap, linger_ms=5, max_batch_size=262_144
            )
            await self._producer.start()
            try:
                await self.phases()
            finally:
                await self._producer.stop()

    async def phases(self) -> None:
        a = self.args
        if a.tracing_only:
            await phase_tracing(self)
            return
        if a.case_a_only:
            await phase_case_a(self)
            return
        if a.scale_out_only:
            await self.phase_scale_out_only()
            return
        if a.idle_only:
            worker = self.start_worker()
            await self.wait_healthy(worker, 0, 180)
            await phase_idle(self, worker)
            return
        if a.globs:
            self.say(f"6d routing one event with {a.globs:,} non-prefix globs (in-process)")
            row, self.raw["globs"] = glob_row(a.globs)
            self.rows.append(row)
        if a.filter_subs:
            self.say(f"6e/6f routing with {a.filter_subs:,} filtered subscriptions (in-process)")
            rows, self.raw["filters"] = filter_rows(a.filter_subs)
            self.rows.extend(rows)
        self.say("6g decode cost per event of each input form (in-process)")
        decode, self.raw["decode"] = decode_rows()
        self.rows.extend(decode)
        self.say("6h bytes and CPU per delivery record with each codec (in-process)")
        codecs, self.raw["compression"] = compression_rows()
        self.rows.extend(codecs)
        assert self.broker is not None and self.broker.pid is not None
        broker, self.raw["compression_broker_us"] = await broker_rows(
            self.bootstrap, self.broker.pid
        )
        self.rows.extend(broker)
        await self.phase_ceiling()
        await self.phase_own_client()
        await phase_proxied(
            self, self.raw["own_client"]["done"] / self.raw["own_client"]["seconds"]
        )
        await phase_receivers(self, self.raw["own_client"]["client_ms"])
        if a.egress_only:
            return
        await self.phase_baseline()

        self.say("starting webhook-stream worker 1")
        worker = self.start_worker()
        ready_s = await self.wait_healthy(worker, 0, 180)
        self.raw["worker_start_s"] = ready_s
        self.say(f"worker pid {worker.pid} healthy after {ready_s:.1f}s on :{worker.port}")

        c = a.concurrency
        specs: list[tuple[str, str, str]] = []
        for case in ("a", "b", "s1", "s2", "x"):
            for i in range(c):
                etype = "bench.b.all" if case == "b" else f"bench.{case}.e{i}"
                specs.append((f"ep_{case}_{i}", f"/{case}/{i}", etype))
        for i in range(a.latency_endpoints):
            specs.append((f"ep_lat_{i}", f"/lat/{i}", f"bench.lat.e{i}"))
        specs.append(("ep_warm_0", "/warm/0", "bench.warm"))
        await self.create_subscriptions(worker, specs)
        api_subs = len(specs)
        await self.wait_healthy(worker, api_subs, 60)
        await self.phase_warmup(worker)

        metrics0 = await self.metrics(worker)
        self.raw["rss_kb_before_a"] = memory_kb(worker.pid)["VmRSS"]
        before_a = await records.positions(self.bootstrap)
        cpu0, main0 = cpu_seconds(worker.pid), process_cpu_seconds(worker.pid)
        others0 = self.others_cpu()
        n = a.events
        res_a = await self.case(worker, "a", n, lambda i: f"bench.a.e{i % c}", n)
        after_a = await records.positions(self.bootstrap)  # about a second, the worker idle
        res_b = await self.case(worker, "b", n // c, lambda i: "bench.b.all", (n // c) * c)
        cpu1, main1 = cpu_seconds(worker.pid), process_cpu_seconds(worker.pid)
        others = [b - a for a, b in zip(others0, self.others_cpu(), strict=True)]
        mem = memory_kb(worker.pid)
        self.add_case_rows(res_a, res_b, cpu1 - cpu0, main1 - main0, mem)
        self.add_machine_row(res_a["delivered"] + res_b["delivered"], cpu1 - cpu0, *others)
        counted = await records.count_between(self.bootstrap, before_a, after_a)
        row, self.raw["records_per_delivery"] = records.records_row(counted, res_a["delivered"])
        self.rows.append(row)
        await self.phase_ceiling("after cases A and B")

        await self.phase_latency(worker)

        await self.phase_subscriptions(worker, api_subs)
        metrics1 = await self.metrics(worker)
        self.worker_counters(metrics0, metrics1)
        self.raw["worker1_vmhwm_kb"] = memory_kb(worker.pid)["VmHWM"]

        if not a.skip_idle:
            await phase_idle(self, worker)
        if not a.skip_cold_start:
            worker = await self.phase_cold_start(worker, api_subs + a.subs)
        if a.scale_out:
            await self.phase_scale_out(worker)
        if not a.skip_flow:  # last: the hanging endpoint's retries outlive its phase
            await phase_strict(self, worker)
            await phase_isolation(self, worker)
            await phase_tenant_isolation(self, worker)

    async def phase_scale_out_only(self) -> None:
        """Rows 3c/3d on a fresh worker (no bulk subscriptions), then the flow rows."""
        worker = self.start_worker()
        await self.wait_healthy(worker, 0, 180)
        c = self.args.concurrency
        specs = [(f"ep_x_{i}", f"/x/{i}", f"bench.x.e{i}") for i in range(c)]
        specs.append(("ep_warm_0", "/warm/0", "bench.warm"))
        await self.create_subscriptions(worker, specs)
        await self.wait_healthy(worker, len(specs), 60)
        await self.phase_warmup(worker)
        await self.phase_scale_out(worker)
        if not self.args.skip_flow:  # on the three workers scale-out leaves running
            await phase_strict(self, worker)
            await phase_isolation(self, worker)
            await phase_tenant_isolation(self, worker)

    async def phase_scale_out(self, first: Worker, rounds: int = 2) -> None:
        """Case A on one worker, then on three (same app id): CPU per 1,000 for the cluster.

        Each worker's status store keeps only its partitions, so the cluster's CPU per
        delivery must not grow with the workers (3d within 1.25x of 3c). The pair is run
        ``rounds`` times, one worker and three taking turns (the two extra workers stop
        between rounds): this box's speed drifts within minutes, and alternating keeps a
        slow minute from landing on one side only. Rows 3c/3d sum every round.

        The events are produced with librdkafka, as most services' producers are: the
        bench's aiokafka producer competes with the cluster for the two cores, and took
        0.8-1.2 s for 30,000 events beside one worker but 2.1-2.9 s beside three, so the
        three met a trickle where the one met a backlog (librdkafka: 0.14-0.7 s in both).
        ``--scale-out-rate`` offers both the same steady load instead.
        """
        c, n = self.args.concurrency, self.args.events
        pace = float(self.args.scale_out_rate)

        def type_of(i: int) -> str:
            return f"bench.x.e{i % c}"

        async def idle_cores(workers: list[Worker], seconds: float = 5.0) -> float:
            """What the idle cluster burns (fetch polls, heartbeats): cores."""
            before = sum(cpu_seconds(w.pid) for w in workers)
            await asyncio.sleep(seconds)
            return (sum(cpu_seconds(w.pid) for w in workers) - before) / seconds

        async def settled(cluster: list[Worker], tag: str) -> None:
            """Every worker owns its partitions and its status store has caught up."""
            # One event per endpoint, delivered, before the clock starts; then the status
            # stores that were given partitions read their history (a one-off per change
            # of members, seconds): every endpoint's attempt log must answer 200, not 503.
            seen = (await self.receiver_stats()).get("x", {"unique": 0})["unique"]
            await load.produce(self.producer, EVENTS_TOPIC, self.events(tag, c, type_of))
            await self.wait_receipts("x", seen + c, first, 120)
            caught_up = await self.status_caught_up(first, [f"ep_x_{i}" for i in range(c)])
            self.say(f"  {len(cluster)} worker(s) settled; status caught up after {caught_up:.1f}s")
            self.raw.setdefault("scale_out_status_caught_up_s", []).append(caught_up)

        sums = {1: [0.0, 0.0, 0.0], 3: [0.0, 0.0, 0.0]}  # cpu_s, seconds, idle cores
        # Which of a worker's processes the cluster's extra CPU is in (summed over workers).
        roles: dict[int, dict[str, float]] = {1: {}, 3: {}}

        def by_role(cluster: list[Worker]) -> dict[str, float]:
            out: dict[str, float] = {}
            out["broker"] = self.others_cpu()[0]  # not in the cluster's sum: printed beside
            for w in cluster:
                for role, s in cpu_by_role(w.pid).items():
                    out[role] = out.get(role, 0.0) + s
            return out

        def add_roles(k: int, before: dict[str, float], after: dict[str, float]) -> None:
            for role, s in after.items():
                roles[k][role] = roles[k].get(role, 0.0) + s - before.get(role, 0.0)

        ratios: list[float] = []
        profilers: list[subprocess.Popen[bytes]] = []  # --profile: the first worker's, round 1
        for r in range(1, rounds + 1):
            self.say(f"7 scale-out, round {r}/{rounds}: case A on 1 worker")
            if r > 1:
                await settled([first], f"xwarm{r}a")
            idle1 = await idle_cores([first])
            cpu0, roles0 = cpu_seconds(first.pid), by_role([first])
            if self.args.profile and r == 1:
                profilers = start_profilers(self, first.pid, "scale-1")
            one = await self.case(first, "x", n, type_of, n, ids=f"x{r}a", load_rate=pace)
            await stop_profilers(profilers)
            one_cpu = cpu_seconds(first.pid) - cpu0
            add_roles(1, roles0, by_role([first]))
            self.say(f"7 scale-out, round {r}/{rounds}: two more worker processes (same app id)")
            more = [self.start_worker(), self.start_worker()]
            for w in more:
                await self.wait_healthy(w, 0, self.args.phase_timeout)
            cluster = [first, *more]
            await settled(cluster, f"xwarm{r}b")
            idle3 = await idle_cores(cluster)
            cpu0, roles0 = sum(cpu_seconds(w.pid) for w in cluster), by_role(cluster)
            if self.args.profile and r == 1:
                profilers = start_profilers(self, first.pid, "scale-3")
            three = await self.case(first, "x", n, type_of, n, ids=f"x{r}b", load_rate=pace)
            await stop_profilers(profilers)
            three_cpu = sum(cpu_seconds(w.pid) for w in cluster) - cpu0
            add_roles(3, roles0, by_role(cluster))
            for k, cpu_s, res, idle in ((1, one_cpu, one, idle1), (3, three_cpu, three, idle3)):
                sums[k][0] += cpu_s
                sums[k][1] += res["seconds"]
                sums[k][2] += idle / rounds
            ratios.append(three_cpu / max(1e-9, one_cpu))
            self.say(f"  round {r}: 3 workers / 1 worker = {ratios[-1]:.2f}x CPU per delivery")
            if r < rounds:
                for w in more:
                    w.stop(timeout=45)
        per_k = {k: v[0] / (rounds * n) * 1000 for k, v in sums.items()}
        # What the cluster burns idle (polls, heartbeats) is part of the cost: on a slow
        # (loaded) box it is paid for longer per delivery, so it is printed beside.
        self.raw["scale_out"] = {
            "cpu_per_1000": [per_k[1], per_k[3]],
            "idle_cores": [sums[1][2], sums[3][2]],
            "workers": [1, 3],
            "round_ratios": ratios,
            "cpu_per_1000_by_role": {
                k: {role: s / (rounds * n) * 1000 for role, s in v.items()}
                for k, v in roles.items()
            },
        }
        each = ", ".join(f"{x:.2f}x" for x in ratios)
        paced = f" at {pace:,.0f}/s" if pace else ""
        for row, workers in (("3c", 1), ("3d", 3)):
            cpu_s, seconds, idle_c = sums[workers]
            rate_ = rounds * n / max(1e-9, seconds)
            per = {role: s / (rounds * n) * 1000 for role, s in roles[workers].items()}
            broker = per.pop("broker", float("nan"))  # beside the cluster, not in its sum
            parts = ", ".join(f"{role} {v:.3f}" for role, v in per.items())
            parts += f"; the broker beside it {broker:.3f}"
            ratio = (
                f"; {per_k[3] / per_k[1]:.2f}x of 1 worker (limit 1.25x; rounds {each})"
                if workers > 1
                else ""
            )
            self.rows.append(
                Row(
                    row,
                    f"webhook-stream A, {workers} worker process{'es' if workers > 1 else ''}",
                    rate(rate_, "deliveries/s"),
                    "",
                    f"{rounds} x {n:,} events{paced}; cluster busy {cpu_s / seconds:.2f} cores, "
                    f"{per_k[workers]:.3f} CPU-s per 1,000 for the whole cluster "
                    f"({parts}; idle, it burnt {idle_c:.2f} cores){ratio}",
                    per_s=rate_,
                )
            )

    # ------------------------------------------------------------------ phases

    async def phase_ceiling(self, when: str = "at the start") -> None:
        """Measure the ceiling; run twice (start, after cases A and B), the higher counts.

        These machines are shared and their speed drifts by up to 2x within minutes: taking
        the faster of two ceilings keeps a slow moment from flattering every ratio.
        """
        a = self.args
        assert self.receiver is not None
        self.say(f"1 ceiling {when}: {a.events:,} signed POSTs, bare aiohttp, C={a.concurrency}")
        own0, receiver0 = time.process_time(), cpu_seconds(self.receiver.pid)
        res = await load.ceiling(self.rurl(""), a.events, a.concurrency, time_limit=a.phase_timeout)
        own_s = time.process_time() - own0
        cpu_s = own_s + cpu_seconds(self.receiver.pid) - receiver0
        self.ceiling_cpu_per_k = cpu_s / max(1, res.done) * 1000
        self.ceiling_client_ms = own_s / max(1, res.done) * 1000
        self.ceiling_receiver_ms = (cpu_s - own_s) / max(1, res.done) * 1000
        self.ceilings.append(res.rate)
        self.raw.setdefault("ceilings", []).append(vars(res))
        self.say(f"  ceiling: {res.rate:,.0f} req/s ({res.done:,} in {res.seconds:.2f}s)")
        if res.errors or res.timed_out:
            self.notes.append(
                f"ceiling {when}: {res.errors} errors{', TIMED OUT' if res.timed_out else ''}"
            )
        runs = " and ".join(f"{r:,.0f}" for r in self.ceilings)
        self.rows = [r for r in self.rows if r.key != "1"]
        self.rows.append(
            Row(
                "1",
                f"HTTP ceiling: bare aiohttp, C={a.concurrency}",
                rate(max(self.ceilings), "req/s"),
                "1.00x",
                f"{a.events:,} POSTs, {a.concurrency} paths, no Kafka; the higher of "
                f"{len(self.ceilings)} runs ({runs}: start, after 3a/3b); "
                f"client CPU {self.ceiling_client_ms:.3f} ms per request, receiver "
                f"{self.ceiling_receiver_ms:.3f}",
            )
        )

    async def phase_own_client(self) -> None:
        """Row 1b: the same POSTs through webhook-stream's own HTTP client, no Kafka."""
        a = self.args
        assert self.receiver is not None
        self.say(f"1b {a.events:,} signed POSTs through webhook-stream's HTTP client")
        cpu0 = time.process_time()
        res = await load.ceiling(
            self.rurl(""), a.events, a.concurrency, a.phase_timeout, client="webhook-stream"
        )
        client_ms = (time.process_time() - cpu0) / max(1, res.done) * 1000
        self.raw["own_client"] = {**vars(res), "client_ms": client_ms}
        self.say(f"  own client: {res.rate:,.0f} req/s, {client_ms:.3f} CPU-ms per request")
        self.add_load_row(
            "1b",
            f"HTTP: webhook-stream's own client, C={a.concurrency}",
            res,
            "req/s",
            f"{res.done:,} POSTs, no Kafka; client CPU {client_ms:.3f} ms per request",
        )

    async def phase_baseline(self) -> None:
        a = self.args
        self.say(f"2 baseline: producing {a.events:,} events to {BASELINE_TOPIC}")
        await load.produce(
            self.producer, BASELINE_TOPIC, self.events("base", a.events, lambda i: "bench.base")
        )
        self.say("  consuming and POSTing them one at a time")
        res = await load.baseline(
            self.bootstrap,
            BASELINE_TOPIC,
            self.rurl(""),
            a.events,
            a.concurrency,
            time_limit=a.phase_timeout,
        )
        self.raw["baseline"] = vars(res)
        self.say(f"  baseline: {res.rate:,.0f} deliveries/s ({res.done:,} in {res.seconds:.2f}s)")
        self.add_load_row(
            "2",
            "baseline: aiokafka -> sequential aiohttp POST",
            res,
            "deliveries/s",
            f"{res.done:,} events, group-less consumer, sequential POSTs",
        )

    def add_load_row(
        self, key: str, label: str, res: load.LoadResult, unit: str, notes: str
    ) -> None:
        """A row for a load without the worker (1b, 2); errors and timeouts go in its notes."""
        if res.errors or res.timed_out:
            notes += f"; {res.errors} errors{', TIMED OUT' if res.timed_out else ''}"
        self.rows.append(Row(key, label, rate(res.rate, unit), "", notes, per_s=res.rate))

    async def create_subscriptions(self, worker: Worker, specs: list[tuple[str, str, str]]) -> None:
        self.say(f"3 creating {len(specs)} subscriptions through the API")
        sem = asyncio.Semaphore(8)
        auth = {"Authorization": f"Bearer {TOKEN}"}

        async def one(sub_id: str, path: str, etype: str) -> None:
            body = {"id": sub_id, "url": self.rurl(path), "event_types": [etype]}
            async with (
                sem,
                self.http.post(worker.url + "/subscriptions", json=body, headers=auth) as resp,
            ):
                if resp.status not in (201, 202):
                    raise RuntimeError(
                        f"POST /subscriptions {sub_id}: {resp.status} {await resp.text()}"
                    )

        t0 = time.monotonic()
        await asyncio.gather(*(one(*spec) for spec in specs))
        self.say(f"  created in {time.monotonic() - t0:.1f}s")

    async def case(
        self,
        worker: Worker,
        prefix: str,
        events: int,
        type_of: Callable[[int], str],
        expected: int,
        ids: str | None = None,
        load_rate: float | None = None,
    ) -> dict[str, Any]:
        """Produce ``events`` and time first produce -> last receipt of ``expected``.

        ``ids`` (default ``prefix``) names the event ids: a second run on the same
        endpoints needs new ids, or its deliveries are duplicates of the first's. What
        the receiver counted under ``prefix`` before is not this case's. With a ``load_rate``
        the events are produced with librdkafka (its C threads) instead of the bench's
        aiokafka producer, which shares the bench process's one core, at that many events
        a second (0: as fast as it sends).
        """
        self.say(f"  case {prefix}: producing {events:,} events for {expected:,} deliveries")
        before = (await self.receiver_stats()).get(prefix, {"count": 0, "unique": 0})
        cpu0 = cpu_seconds(worker.pid)
        t_start = time.time()
        batch = self.events(ids or prefix, events, type_of)
        if load_rate is not None:
            await asyncio.to_thread(
                load.produce_rdkafka, self.bootstrap, EVENTS_TOPIC, batch, load_rate
            )
        else:
            await load.produce(self.producer, EVENTS_TOPIC, batch)
        produced_s = time.time() - t_start
        timeout = min(self.args.phase_timeout, 30 + expected / 100)
        st, timed_out = await self.wait_receipts(
            prefix, before["unique"] + expected, worker, timeout
        )
        st = {**st, "unique": st["unique"] - before["unique"]}
        st["count"] -= before["count"]
        if before["unique"]:
            st["first"] = 0.0  # the receiver keeps the first receipt of the prefix only
        seconds = max(1e-9, (st["last"] or time.time()) - t_start)
        # Busy share of one core while the case ran (1.0 = the worker's one core is pegged).
        cores = (cpu_seconds(worker.pid) - cpu0) / max(1e-9, time.time() - t_start)
        res = {
            "events": events,
            "expected": expected,
            "delivered": st["unique"],
            "received": st["count"],
            "duplicates": st["count"] - st["unique"],
            "produce_s": produced_s,
            "seconds": seconds,
            "rate": st["unique"] / seconds,
            "worker_cores": cores,
            "rss_kb_after": memory_kb(worker.pid)["VmRSS"],
            "first_receipt_s": (st["first"] - t_start) if st["first"] else None,
            "timed_out": timed_out,
        }
        self.raw[f"case_{prefix}"] = res
        self.say(
            f"  case {prefix}: {res['rate']:,.0f} deliveries/s "
            f"({st['unique']:,} in {seconds:.2f}s; produce took {produced_s:.2f}s; "
            f"worker CPU {cores:.2f} cores; first receipt after "
            f"{res['first_receipt_s'] or float('nan'):.2f}s)"
        )
        if res["duplicates"]:
            self.notes.append(f"case {prefix}: {res['duplicates']} duplicate deliveries received")
        return res

    def case_notes(self, res: dict[str, Any], what: str) -> str:
        notes = f"{what}; worker busy {res['worker_cores']:.2f} cores"
        if res["timed_out"]:
            notes += f"; INCOMPLETE {res['delivered']:,}/{res['expected']:,}"
        if res["duplicates"]:
            notes += f"; {res['duplicates']} duplicates"
        return notes

    def others_cpu(self) -> tuple[float, float, float]:
        """CPU seconds so far of the broker, the receiver and this process (the load)."""
        assert self.broker is not None and self.broker.pid is not None
        assert self.receiver is not None
        return (
            cpu_seconds(self.broker.pid),
            cpu_seconds(self.receiver.pid),
            time.process_time(),
        )

    def add_machine_row(
        self, delivered: int, worker_s: float, broker_s: float, receiver_s: float, load_s: float
    ) -> None:
        """Row 5c: what one delivery costs the whole machine, beside the ceiling's request."""
        per_k = [x / max(1, delivered) * 1000 for x in (worker_s, broker_s, receiver_s, load_s)]
        total = sum(per_k)
        cores = os.cpu_count() or 1
        self.raw["machine_cpu_per_1000"] = dict(
            zip(("worker", "broker", "receiver", "load"), per_k, strict=True)
        )
        self.rows.append(
            Row(
                "5c",
                "machine CPU per 1,000 deliveries (A+B)",
                f"{total:.3f} s",
                "",
                "worker {:.3f} + broker {:.3f} + receiver {:.3f} + producer/bench {:.3f}; "
                "{} cores bound this at ~{:,.0f}/s (ceiling: {:.3f} s per 1,000 requests)".format(
                    *per_k, cores, cores * 1000 / total, self.ceiling_cpu_per_k
                ),
            )
        )

    def add_case_rows(
        self,
        res_a: dict[str, Any],
        res_b: dict[str, Any],
        cpu_s: float,
        main_cpu_s: float,
        mem: dict[str, int],
    ) -> None:
        c = self.args.concurrency
        self.rows.append(
            Row(
                "3a",
                "webhook-stream A: 1 endpoint per event",
                rate(res_a["rate"], "deliveries/s"),
                "",
                self.case_notes(res_a, f"{res_a['events']:,} events over {c} endpoints"),
                per_s=res_a["rate"],
            )
        )
        self.rows.append(
            Row(
                "3b",
                f"webhook-stream B: fan-out to {c}",
                rate(res_b["rate"], "deliveries/s"),
                "",
                self.case_notes(res_b, f"{res_b['events']:,} events x {c} endpoints"),
                per_s=res_b["rate"],
            )
        )
        delivered = res_a["delivered"] + res_b["delivered"]
        per_k = cpu_s / delivered * 1000 if delivered else float("nan")
        self.raw["cpu"] = {
            "seconds": cpu_s,
            "worker_process_seconds": main_cpu_s,
            "deliveries": delivered,
            "per_1000": per_k,
        }
        self.raw["worker_after_ab_kb"] = mem
        self.rows.append(
            Row(
                "5a",
                "worker CPU per 1,000 deliveries (A+B)",
                f"{per_k:.3f} s",
                "",
                f"{cpu_s:.1f} CPU-s for {delivered:,}; ~{1000 / per_k:,.0f} deliveries/CPU-s; "
                f"worker process {main_cpu_s / delivered * 1000:.3f} + status view "
                f"{(cpu_s - main_cpu_s) / delivered * 1000:.3f}",
            )
        )
        self.rows.append(
            Row(
                "5b",
                "worker peak RSS (VmHWM) after A+B, with its view",
                f"{mem['VmHWM'] / 1024:,.0f} MB",
                "",
                f"VmRSS before A {self.raw['rss_kb_before_a'] / 1024:,.0f} MB, "
                f"after A {res_a['rss_kb_after'] / 1024:,.0f} MB, "
                f"after B {res_b['rss_kb_after'] / 1024:,.0f} MB",
            )
        )

    async def phase_warmup(self, worker: Worker) -> None:
        """One event to a warm-up endpoint: the consumers join their groups after /health."""
        self.say("3 warm-up: one event, waiting for its delivery")
        t0 = time.time()
        await load.produce(
            self.producer, EVENTS_TOPIC, self.events("warm", 1, lambda i: "bench.warm")
        )
        st, timed_out = await self.wait_receipts("warm", 1, worker, 90)
        first_s = (st["last"] or time.time()) - t0
        self.raw["first_delivery_s"] = first_s
        self.say(f"  first delivery {first_s:.2f}s after produce")
        self.rows.append(
            Row(
                "3",
                "first delivery after /health 200",
                f"{first_s:.1f} s",
                "",
                "one event produced right after the subscriptions were visible"
                + ("; NEVER ARRIVED" if timed_out else ""),
            )
        )

    async def phase_latency(self, worker: Worker) -> None:
        a = self.args
        count = int(a.latency_rate * a.latency_seconds)
        eps = a.latency_endpoints
        self.say(f"4 latency: {count:,} events paced at {a.latency_rate:g}/s to {eps} endpoints")
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=0)
        await producer.start()
        try:
            futures = []
            t0 = time.monotonic()
            behind = 0.0
            for i in range(count):
                delay = t0 + i / a.latency_rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    behind = max(behind, -delay)
                doc = load.event_doc(f"evt_lat_{i}", f"bench.lat.e{i % eps}", i)
                futures.append(
                    await producer.send(EVENTS_TOPIC, orjson.dumps(doc), key=f"k{i}".encode())
                )
            await asyncio.gather(*futures)
            paced_s = time.monotonic() - t0
        finally:
            await producer.stop()
        st, timed_out = await self.wait_receipts("lat", count, worker, 60)
        arrived = (await self.receiver_stats(lat="lat"))["latencies"]  # in arrival order
        lats = sorted(arrived)
        # Past the first second: a worker idle before the row starts with fetch waits
        # lengthened (fetch_idle_wait, row 7q), which its first events pay once.
        steady = sorted(arrived[int(a.latency_rate) :]) or lats
        if not lats:
            self.rows.append(Row("4", "end-to-end latency", "no data", "", "nothing received"))
            return
        p50 = statistics.median(lats) * 1000
        p99 = p99_of(lats) * 1000
        mx = lats[-1] * 1000
        steady_p99 = p99_of(steady) * 1000
        self.raw["latency"] = {
            "sent": count,
            "received": st["unique"],
            "p50_ms": p50,
            "p99_ms": p99,
            "max_ms": mx,
            "steady_p99_ms": steady_p99,
            "paced_s": paced_s,
            "producer_behind_max_s": behind,
            "timed_out": timed_out,
        }
        self.say(
            f"  latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {mx:.1f} ms; "
            f"after the first second p99 {steady_p99:.1f} ms"
        )
        hop_s = await hop_latencies(self.bootstrap)
        self.raw["latency"]["hops_p50_p99_ms"] = hop_percentiles(hop_s)
        self.say(f"  latency by hop: {hop_summary(hop_s)}")
        notes = (
            f"{a.latency_rate:g} ev/s for {paced_s:.1f}s to {eps} endpoints; "
            f"{st['unique']:,}/{count:,} received; after the first second p99 "
            f"{steady_p99:.0f} ms; by hop {hop_summary(hop_s)}"
        )
        if behind > 0.05:
            notes += f"; pacing fell {behind * 1000:.0f} ms behind"
        self.rows.append(
            Row(
                "4",
                "end-to-end latency p50 / p99 / max",
                f"{p50:.0f} / {p99:.0f} / {mx:.0f} ms",
                "",
                notes,
            )
        )

    async def phase_subscriptions(self, worker: Worker, api_subs: int) -> None:
        a = self.args
        c = a.concurrency
        small = a.small_events
        self.say(f"6 routing before loading: case s1, {small:,} events")
        before = await self.case(worker, "s1", small, lambda i: f"bench.s1.e{i % c}", small)

        rss0 = memory_kb(worker.pid)["VmRSS"]
        self.say(f"6 producing {a.subs:,} subscriptions to {SUBSCRIPTIONS}")

        def records() -> Iterator[tuple[bytes, bytes]]:
            for i in range(a.subs):
                sid = f"bulk_{i:06d}"
                # Half exact types, half prefix globs: both index paths of SubscriptionIndex.
                pattern = f"bulk.t{i}" if i % 2 == 0 else f"bulk.p{i}.*"
                doc = {
                    "id": sid,
                    "url": "http://127.0.0.1:9/x",
                    "event_types": [pattern],
                    "secret": generate_secret(),
                }
                yield sid.encode(), orjson.dumps(doc)

        t0 = time.monotonic()
        await load.produce(self.producer, SUBSCRIPTIONS, records())
        produce_s = time.monotonic() - t0
        self.say(f"  produced in {produce_s:.1f}s; waiting for the worker to load them")
        await self.wait_healthy(worker, api_subs + a.subs, a.phase_timeout)
        load_s = time.monotonic() - t0
        rss1 = memory_kb(worker.pid)["VmRSS"]
        delta = rss1 - rss0
        self.say(f"  loaded in {load_s:.1f}s; VmRSS {rss0 / 1024:.0f} -> {rss1 / 1024:.0f} MB")
        self.raw["subs_load"] = {
            "subs": a.subs,
            "produce_s": produce_s,
            "load_s": load_s,
            "rss_before_kb": rss0,
            "rss_after_kb": rss1,
        }
        self.rows.append(
            Row(
                "6a",
                f"{a.subs:,} subs: load into running worker",
                f"{load_s:.1f} s",
                "",
                f"VmRSS {rss0 / 1024:,.0f} -> {rss1 / 1024:,.0f} MB "
                f"(+{delta / 1024:,.0f} MB, {delta * 1024 / a.subs:,.0f} B/sub); "
                f"produce {produce_s:.1f}s",
            )
        )

        self.say(f"6 routing with {a.subs:,} subscriptions: case s2, {small:,} events")
        after = await self.case(worker, "s2", small, lambda i: f"bench.s2.e{i % c}", small)
        flat = after["rate"] / before["rate"] if before["rate"] else float("nan")
        self.raw["routing_flatness"] = flat
        notes = f"{small:,} events each; after/before = {flat:.2f}x"
        for res in (before, after):
            if res["timed_out"]:
                notes += f"; {res['expected'] - res['delivered']:,} MISSING"
        self.rows.append(
            Row(
                "6b",
                f"case A with {api_subs} vs {api_subs + a.subs:,} subs",
                f"{before['rate']:,.0f} -> {after['rate']:,.0f} deliveries/s",
                "",
                notes,
                per_s=after["rate"],
            )
        )

    async def phase_cold_start(self, old: Worker, total_subs: int) -> Worker:
        self.say(f"6 stopping worker 1 (pid {old.pid}) for a cold start")
        t0 = time.monotonic()
        await asyncio.to_thread(old.stop, 60)
        stop_s = time.monotonic() - t0
        self.raw["worker1_stop_s"] = stop_s
        self.say(f"  worker 1 stopped in {stop_s:.1f}s (exit {old.proc and old.proc.returncode})")
        if stop_s > 10:
            self.notes.append(f"worker 1 took {stop_s:.1f}s to stop after SIGTERM")
        self.say(f"6 starting worker 2 with {total_subs:,} subscriptions on the topic")
        started = time.monotonic()
        worker = self.start_worker()
        ready_s = await self.wait_healthy(worker, total_subs, self.args.phase_timeout)
        mem = memory_kb(worker.pid)
        self.say(f"  worker 2 healthy after {ready_s:.1f}s, VmRSS {mem['VmRSS'] / 1024:.0f} MB")
        # Readiness that matters: one event through worker 2 (warm-up endpoint, new event id).
        await load.produce(
            self.producer, EVENTS_TOPIC, self.events("warm2", 1, lambda i: "bench.warm")
        )
        _, never = await self.wait_receipts("warm", 2, worker, 90)
        first_s = time.monotonic() - started
        self.say(f"  worker 2 delivered its first event {first_s:.1f}s after start")
        self.raw["cold_start"] = {"ready_s": ready_s, "first_delivery_s": first_s, **mem}
        self.rows.append(
            Row(
                "6c",
                f"fresh worker start with {total_subs:,} subs",
                f"{ready_s:.1f} s",
                "",
                f"to /health 200; first delivery "
                f"{'NEVER' if never else f'after {first_s:.1f}s'}; "
                f"VmRSS {mem['VmRSS'] / 1024:,.0f} MB, "
                f"peak {mem['VmHWM'] / 1024:,.0f} MB "
                f"(empty worker: {self.raw['worker_start_s']:.1f}s)",
            )
        )
        return worker

    def worker_counters(self, m0: dict[str, float], m1: dict[str, float]) -> None:
        diff = {k: m1.get(k, 0) - m0.get(k, 0) for k in m1}
        self.raw["worker_metrics_delta"] = diff
        short = {
            re.sub(r'^webhook_(\w+)_total\{\w+="(\w+)"\}$', r"\1.\2", k): int(v)
            for k, v in diff.items()
        }
        self.raw["worker_counters"] = short
        bad = {
            k: v
            for k, v in short.items()
            if v and k in ("deliveries.retried", "deliveries.dead_lettered", "events.rejected")
        }
        if bad:
            self.notes.append(f"worker counters over the run: {bad}")

    # ------------------------------------------------------------------ output

    def log_findings(self) -> list[str]:
        path = self.out / "worker.log"
        if not path.exists():
            return []
        counts: dict[str, int] = {}
        for line in path.read_text(errors="replace").splitlines():
            if LOG_PATTERN.search(line):
                key = re.sub(r"\d+", "N", line.strip())[:160]
                counts[key] = counts.get(key, 0) + 1
        return [f"{n:5d} x {line}" for line, n in sorted(counts.items(), key=lambda kv: -kv[1])]

    def report(self, *, complete: bool) -> None:
        a = self.args
        elapsed = time.monotonic() - self.started
        if not self.rows:
            print("no results")
            return
        findings = self.log_findings()
        head = [
            f"webhook-stream bench, {datetime.now(UTC).isoformat(timespec='seconds')}"
            + ("" if complete else "  (INCOMPLETE: interrupted or failed, see above)"),
            f"host: {os.cpu_count()} cpus, Python {platform.python_version()}, "
            f"embedded broker (Tansu), partitions={a.partitions}, events={a.events:,}, "
            f"C={a.concurrency}, subs={a.subs:,}; run took {elapsed:.0f}s",
        ]
        self.rows.sort(key=lambda r: r.key)
        for row in self.rows:
            if row.per_s is not None:
                row.ratio = ratio(row.per_s, max(self.ceilings, default=0.0))
        text = text_table(self.rows)
        print()
        print("\n".join(head))
        print()
        print(text)
        print()
        if self.notes:
            print("notes:")
            for note in self.notes:
                print(f"  - {note}")
        print(f"worker log: {len(findings)} distinct warning/error lines (bench/out/worker.log)")
        for line in findings[:10]:
            print(f"  {line}")
        md = [
            "# webhook-stream bench",
            "",
            *(f"{h}  " for h in head),
            "",
            markdown_table(self.rows),
            "",
        ]
        if self.notes:
            md += ["Notes:", "", *(f"- {n}" for n in self.notes), ""]
        md += [f"Worker log: {len(findings)} distinct warning/error lines.", ""]
        if findings:
            md += ["```", *findings[:20], "```", ""]
        md += ["Command: `python -m bench " + " ".join(sys.argv[1:]) + "`", ""]
        (self.out / "latest.md").write_text("\n".join(md))
        self.raw["elapsed_s"] = elapsed
        self.raw["complete"] = complete
        (self.out / "latest.json").write_bytes(
            orjson.dumps(self.raw, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
        )
        print(f"wrote {self.out / 'latest.md'} and latest.json")
