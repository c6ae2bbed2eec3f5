"""Row 1p: the POSTs of row 1b through a real forward proxy (``proxy.py``), no Kafka.

The proxy runs as a child process on a free loopback port (one acceptor, one worker, no
credentials, so connections are kept alive as in production's CONNECT tunnels). The row
is the proxied client's rate as a ratio to row 1b's direct client, measured right after it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from webhook_stream.broker import free_port

from . import load
from .procs import cpu_seconds, stop_process, wait_port


async def phase_proxied(bench: Any, direct_rate: float) -> None:
    a = bench.args
    port = free_port()
    log = open(bench.out / "proxy.log", "wb")
    command = [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", str(port)]
    command += ["--num-workers", "1", "--num-acceptors", "1", "--log-level", "WARNING"]
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc, 60)
        bench.say(f"1p {a.events:,} signed POSTs through proxy.py (pid {proc.pid}, :{port})")
        cpu0, proxy0 = time.process_time(), cpu_seconds(proc.pid)
        res = await load.ceiling(
            bench.rurl(""),
            a.events,
            a.concurrency,
            a.phase_timeout,
            client="webhook-stream-proxied",
            proxy=f"http://127.0.0.1:{port}",
        )
        client_ms = (time.process_time() - cpu0) / max(1, res.done) * 1000
        proxy_ms = (cpu_seconds(proc.pid) - proxy0) / max(1, res.done) * 1000
    finally:
        stop_process(proc)
        log.close()
    bench.raw["proxied_client"] = {**vars(res), "client_ms": client_ms, "proxy_ms": proxy_ms}
    of_direct = res.rate / direct_rate if direct_rate > 0 else float("nan")
    bench.say(
        f"  proxied: {res.rate:,.0f} req/s ({of_direct:.2f}x of 1b), client {client_ms:.3f} "
        f"CPU-ms, proxy {proxy_ms:.3f} CPU-ms per request"
    )
    bench.add_load_row(
        "1p",
        f"HTTP: webhook-stream's proxied client (httpx) via proxy.py, C={a.concurrency}",
        res,
        "req/s",
        f"{res.done:,} POSTs, no Kafka; {of_direct:.2f}x of 1b; client CPU {client_ms:.3f} ms, "
        f"proxy.py CPU {proxy_ms:.3f} ms per request",
    )
