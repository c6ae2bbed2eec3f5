"""The ``webhook-stream`` command: dev, broker, topics (and replay)."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence

from .broker import EmbeddedBroker
from .errors import WebhookStreamError
from .settings import Settings

__all__ = ["main"]


def _say(msg: str) -> None:
    print(msg, flush=True)


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/health"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def cmd_dev(args: argparse.Namespace) -> int:
    """Embedded broker + worker + API in one process tree; Ctrl-C stops all of it."""
    token = os.environ.get("WEBHOOK_STREAM_API_TOKEN") or secrets.token_urlsafe(24)
    broker = EmbeddedBroker(port=args.broker_port)
    _say(f"starting the embedded broker (Tansu, memory only) on 127.0.0.1:{args.broker_port} ...")
    broker.start()
    env = {
        **os.environ,
        "WEBHOOK_STREAM_BROKER": broker.url,
        "WEBHOOK_STREAM_API_TOKEN": token,
        "WEBHOOK_STREAM_ALLOW_INSECURE_TARGETS": "1",
        "WEBHOOK_STREAM_WEB_PORT": str(args.port),
    }
    cmd = [
        sys.executable,
        "-m",
        "faust",
        "-A",
        "webhook_stream",
        "worker",
        "-l",
        "info",
        "--web-port",
        str(args.port),
        "--web-host",
        "127.0.0.1",
    ]
    _say("starting the worker ...")
    worker = subprocess.Popen(cmd, env=env)  # noqa: S603
    try:
        if not _wait_healthy(args.port, worker, timeout=120):
            _say("the worker did not become healthy; see its log above")
            return 1
        _say("")
        _say(f"  webhook-stream is running.   API:    http://127.0.0.1:{args.port}")
        _say(f"  API token:  {token}")
        _say(f"  broker:     {broker.bootstrap}   (produce events to events.<name>)")
        _say(
            f"  try:        curl -H 'Authorization: Bearer {token}' http://127.0.0.1:{args.port}/subscriptions"
        )
        _say("  Ctrl-C stops the worker and the broker.")
        _say("")
        return worker.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=40)
            except subprocess.TimeoutExpired:
                worker.kill()
        broker.stop()
        _say("stopped.")


def cmd_broker(args: argparse.Namespace) -> int:
    """The embedded broker alone, for running workers separately."""
    broker = EmbeddedBroker(port=args.port, host=args.host)
    broker.start()
    _say(f"embedded broker on {broker.bootstrap}; WEBHOOK_STREAM_BROKER={broker.url}")
    _say("memory only: everything is gone when it stops. Ctrl-C stops it.")
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    """Print the topic plan and create what is missing."""
    from .topics import ensure_topics, plan

    settings = Settings.from_env()
    for spec in plan(settings):
        conf = ", ".join(f"{k}={v}" for k, v in spec.config.items())
        _say(f"{spec.name:32} partitions={spec.partitions:<3} {conf:52} {spec.role}")
    if args.dry_run:
        return 0
    created = asyncio.run(ensure_topics(settings))
    _say(f"created {len(created)} topic(s)" + (f": {', '.join(created)}" if created else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="webhook-stream", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="embedded broker + worker + API (what `make run` calls)")
    dev.add_argument("--port", type=int, default=6066, help="API port (default 6066)")
    dev.add_argument("--broker-port", type=int, default=9092, help="broker port (default 9092)")
    dev.set_defaults(func=cmd_dev)

    broker = sub.add_parser("broker", help="the embedded broker alone")
    broker.add_argument("--port", type=int, default=9092)
    broker.add_argument("--host", default="127.0.0.1")
    broker.set_defaults(func=cmd_broker)

    topics = sub.add_parser("topics", help="print the topic plan and create missing topics")
    topics.add_argument("--dry-run", action="store_true", help="print the plan only")
    topics.set_defaults(func=cmd_topics)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except WebhookStreamError as exc:
        print(f"webhook-stream: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
