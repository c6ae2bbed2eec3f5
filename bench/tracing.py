"""Row 5t: worker CPU per 1,000 deliveries with tracing off and on (``--tracing-only``).

The same case A run twice, each by a fresh worker of its own: first with no ``OTEL_*``
setting (tracing off: the SDK is not loaded), then with ``OTEL_TRACES_EXPORTER=otlp`` and
``OTEL_TRACES_SAMPLER=always_on`` (every event's fan-out span and every attempt's span
exported), to an OTLP/HTTP sink in the bench process that decodes each export and counts
its spans. The worker's CPU (and its status view's) is taken once the sink has every span,
so exporting is paid for in the row. The ratio on/off is what tracing costs per delivery;
compare the off figure with row 5a of a full run (cases A and B).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from webhook_stream.broker import free_port

from . import load
from .procs import cpu_seconds
from .report import Row

TOPIC = "events.bench"


class OtlpSink:
    """``POST /v1/traces`` (protobuf) on 127.0.0.1: counts spans, answers success."""

    def __init__(self) -> None:
        self.port = free_port()
        self.spans = 0
        self.requests = 0
        self._runner: web.AppRunner | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> OtlpSink:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", self._export)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _export(self, request: web.Request) -> web.Response:
        req = ExportTraceServiceRequest()
        req.ParseFromString(await request.read())
        self.requests += 1
        self.spans += sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )


async def _run(bench: Any, mode: str, env: dict[str, str], sink: OtlpSink) -> dict[str, Any]:
    a = bench.args
    c, n = a.concurrency, a.events
    prefix = f"tr{mode}"
    bench.say(f"5t tracing {mode}: starting a worker")
    worker = bench.start_worker(env)
    try:
        await bench.wait_healthy(worker, 0, 180)
        specs = [(f"ep_{prefix}_{i}", f"/{prefix}/{i}", f"bench.{prefix}.e{i}") for i in range(c)]
        await bench.create_subscriptions(worker, specs)
        await bench.wait_healthy(worker, c, 60)
        # Warm: one event through (the consumer groups join after /health).
        await load.produce(
            bench.producer,
            TOPIC,
            bench.events(f"{prefix}warm", 1, lambda i: f"bench.{prefix}.e0"),
        )
        await bench.wait_receipts(prefix, 1, worker, 90)
        spans0 = sink.spans
        cpu0 = cpu_seconds(worker.pid)
        res = await bench.case(worker, prefix, n, lambda i: f"bench.{prefix}.e{i % c}", n)
        exported = True
        if mode == "on":
            # One fan-out span and one attempt span per delivery: wait until exported.
            deadline = time.monotonic() + 60
            while sink.spans - spans0 < 2 * res["delivered"] and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            exported = sink.spans - spans0 >= 2 * res["delivered"]
        cpu_s = cpu_seconds(worker.pid) - cpu0
    finally:
        await asyncio.to_thread(worker.stop, 60)
    return {
        **res,
        "cpu_s": cpu_s,
        "per_1000": cpu_s / max(1, res["delivered"]) * 1000,
        "spans": sink.spans - spans0,
        "exported": exported,
    }


async def phase_tracing(bench: Any) -> None:
    sink = await OtlpSink().start()
    try:
        off = await _run(bench, "off", {}, sink)
        on = await _run(
            bench,
            "on",
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
                "OTEL_TRACES_SAMPLER": "always_on",
                "OTEL_SERVICE_NAME": "webhook-stream-bench",
            },
            sink,
        )
    finally:
        await sink.stop()
    bench.raw["tracing"] = {"off": off, "on": on, "sink_requests": sink.requests}
    ratio = on["per_1000"] / max(1e-9, off["per_1000"])
    for mode, res in (("off", off), ("on", on)):
        notes = (
            f"case A, {res['delivered']:,} deliveries, {res['rate']:,.0f}/s; "
            f"{res['cpu_s']:.1f} CPU-s (worker + status view)"
        )
        if mode == "on":
            notes += (
                f"; {res['spans']:,} spans exported over OTLP/HTTP, 100 % sampled; "
                f"{ratio:.2f}x the CPU of tracing off"
            )
            if not res["exported"]:
                notes += "; NOT every span reached the sink within 60 s"
        if res["timed_out"]:
            notes += f"; INCOMPLETE {res['delivered']:,}/{res['expected']:,}"
        bench.rows.append(
            Row(
                f"5t {mode}",
                f"worker CPU per 1,000 deliveries, tracing {mode}",
                f"{res['per_1000']:.3f} s",
                "",
                notes,
            )
        )
