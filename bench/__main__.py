"""``python -m bench [--quick]``: run every phase and print the results table."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from webhook_stream.broker import EmbeddedBroker, free_port

from .compression import broker_rows, compression_rows
from .decode import decode_rows
from .filters import filter_rows
from .globs import glob_row
from .report import text_table
from .run import Bench

OUT = Path(__file__).resolve().parent / "out"

QUICK = {
    "events": 2000,
    "latency_seconds": 3.0,
    "subs": 10_000,
    "small_events": 1000,
    "flow_events": 500,
    "hang_events": 2000,
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "--events",
        type=int,
        default=20_000,
        help="requests for the ceiling and the baseline; events of case A; "
        "case B sends events/concurrency events (default 20000)",
    )
    p.add_argument(
        "--concurrency",
        "-c",
        type=int,
        default=50,
        help="endpoints (paths) per case, one request in flight each (default 50)",
    )
    p.add_argument(
        "--latency-seconds",
        type=float,
        default=10.0,
        help="duration of the paced latency phase (default 10)",
    )
    p.add_argument(
        "--latency-rate",
        type=float,
        default=200.0,
        help="events per second in the latency phase (default 200)",
    )
    p.add_argument(
        "--latency-endpoints",
        type=int,
        default=4,
        help="endpoints the latency events are spread over (default 4)",
    )
    p.add_argument(
        "--subs",
        type=int,
        default=100_000,
        help="subscriptions produced straight to webhooks.subscriptions (default 100000)",
    )
    p.add_argument(
        "--small-events",
        type=int,
        default=5000,
        help="events of the before/after routing runs around the load (default 5000)",
    )
    p.add_argument(
        "--partitions",
        type=int,
        default=8,
        help="WEBHOOK_STREAM_PARTITIONS and partitions of the input topic (default 8)",
    )
    p.add_argument(
        "--phase-timeout",
        type=float,
        default=180.0,
        help="upper bound in seconds on any single phase (default 180)",
    )
    p.add_argument(
        "--scale-out",
        action="store_true",
        help="also run case A on 1 and on 3 worker processes (rows 3c, 3d)",
    )
    p.add_argument(
        "--egress-only",
        action="store_true",
        help="run only rows 1, 1b, 1p, 1t, 1m and 1o (the HTTP clients: direct, proxied, "
        "https, mutual TLS, OAuth2), no worker",
    )
    p.add_argument(
        "--idle-only",
        action="store_true",
        help="run only rows 7i and 7q (idle cost of 1 and 3 workers, first event after quiet)",
    )
    p.add_argument(
        "--skip-idle", action="store_true", help="skip rows 7i and 7q (about two minutes)"
    )
    p.add_argument("--idle-subs", type=int, default=20, help="subscriptions loaded in row 7i")
    p.add_argument(
        "--idle-seconds", type=float, default=20.0, help="seconds measured idle in row 7i"
    )
    p.add_argument(
        "--quiet-seconds",
        type=float,
        default=60.0,
        help="quiet before row 7q's one event (seconds since the idle row started)",
    )
    p.add_argument(
        "--skip-cold-start",
        action="store_true",
        help="skip restarting a fresh worker with all subscriptions loaded",
    )
    p.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the worker, e.g. "
        "WEBHOOK_STREAM_HTTP_POOL_PER_HOST=64 (repeatable)",
    )
    p.add_argument(
        "--worker-loglevel",
        default="warn",
        choices=("crit", "error", "warn", "info", "debug"),
        help="the worker's -l (default warn); its log goes to bench/out/worker.log",
    )
    p.add_argument(
        "--loop",
        default="uvloop",
        choices=("aio", "uvloop"),
        help="the worker's event loop, faust -L (default uvloop, as the image runs it)",
    )
    p.add_argument(
        "--flow-events",
        type=int,
        default=2000,
        help="events to the strict and the max_in_flight 1 endpoint of row 8a (default 2000)",
    )
    p.add_argument(
        "--hang-events",
        type=int,
        default=6000,
        help="events queued for the hanging endpoint of row 8b (default 6000)",
    )
    p.add_argument(
        "--skip-flow",
        action="store_true",
        help="skip rows 8a/8b/4t (strict ordering, isolation from a hanging endpoint "
        "and from another tenant's worst settings)",
    )
    p.add_argument(
        "--globs",
        type=int,
        default=50_000,
        help="non-prefix glob patterns of the routing row 6d (default 50000; 0 skips it)",
    )
    p.add_argument(
        "--globs-only",
        action="store_true",
        help="run only row 6d (in-process, no broker or worker) and print it",
    )
    p.add_argument(
        "--filter-subs",
        type=int,
        default=10_000,
        help="subscriptions with content filters of rows 6e/6f (default 10000; 0 skips them)",
    )
    p.add_argument(
        "--filters-only",
        action="store_true",
        help="run only rows 6e/6f (in-process, no broker or worker) and print them",
    )
    p.add_argument(
        "--decode-only",
        action="store_true",
        help="run only rows 6g and 6h (decode cost per input form, bytes and CPU per "
        "delivery record per codec; in-process) and print them",
    )
    p.add_argument(
        "--tracing-only",
        action="store_true",
        help="run only row 5t: worker CPU per delivery with tracing off and on (OTLP)",
    )
    p.add_argument(
        "--case-a-only",
        action="store_true",
        help="run only the ceiling, row 3a on a fresh worker and row 4 (under a minute)",
    )
    p.add_argument(
        "--scale-out-only",
        action="store_true",
        help="run only rows 3c/3d (case A on one worker, then three, taking turns; "
        "a few minutes) and, unless --skip-flow, rows 8a/8b/4t on the three workers",
    )
    p.add_argument(
        "--scale-out-rate",
        type=float,
        default=0.0,
        help="rows 3c/3d produce their events at this many a second (default 0: as fast "
        "as librdkafka sends them, a backlog the workers drain)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy a worker's processes to bench/out/<tag>.<role>.pyspy: with "
        "--case-a-only during case A (case-a), with --scale-out-only the first worker's "
        "during round 1 (scale-1 alone, scale-3 beside two more)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small smoke run: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()),
    )
    args = p.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    for kv in args.worker_env:
        if "=" not in kv:
            p.error(f"--worker-env wants NAME=VALUE, got {kv!r}")
    if args.events < args.concurrency:
        p.error("--events must be at least --concurrency")
    return args


def _terminated(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.decode_only:
        rows, raw = decode_rows()
        codecs, raw_codecs = compression_rows()
        OUT.mkdir(parents=True, exist_ok=True)
        with EmbeddedBroker(port=free_port(), log_file=OUT / "tansu-codecs.log") as broker:
            assert broker.pid is not None
            on_broker, raw_broker = asyncio.run(broker_rows(broker.bootstrap, broker.pid))
        print(text_table(rows + codecs + on_broker))
        print(raw, raw_codecs, raw_broker)
        return 0
    if args.filters_only:
        rows, raw = filter_rows(args.filter_subs or 10_000)
        print(text_table(rows))
        print(raw)
        return 0
    if args.globs_only:
        row, raw = glob_row(args.globs or 50_000)
        print(text_table([row]))
        print(raw)
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    # Clean up children on SIGTERM as on Ctrl-C (also when started with SIGINT ignored).
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with open(OUT / "worker.log", "wb") as worker_log:
        try:
            return Bench(args, OUT, worker_log).run()
        except KeyboardInterrupt:
            print("interrupted; children stopped", file=sys.stderr)
            return 130


if __name__ == "__main__":
    raise SystemExit(main())
