"""The ``webhook-stream`` command: dev, broker, topics, replay, reseal, receive, send."""

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
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from webhook_stream.broker import EmbeddedBroker
from webhook_stream.core import kafka, kafka_auth
from webhook_stream.core.errors import WebhookStreamError
from webhook_stream.core.settings import Settings
from webhook_stream.failures.replay import (
    ReplaySummary,
    parse_time,
    replay_deadletter,
    replay_events,
)
from webhook_stream.subscriptions.registry import SubscriptionRegistry
from webhook_stream.subscriptions.reseal import ResealSummary, reseal

__all__ = ["main", "worker_command"]

T = TypeVar("T")


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


def worker_command(
    port: int, *, host: str = "127.0.0.1", loglevel: str = "info", loop: str = "uvloop"
) -> list[str]:
    """``faust -A webhook_stream worker`` for this interpreter, on ``host:port``."""
    return [
        sys.executable, "-m", "faust", "-L", loop, "-A", "webhook_stream", "worker",
        "-l", loglevel, "--web-port", str(port), "--web-host", host,
    ]  # fmt: skip


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_dev(args: argparse.Namespace) -> int:
    """Embedded broker + worker + API in one process tree; Ctrl-C stops all of it."""
    pinned = os.environ.get("WEBHOOK_STREAM_API_TOKEN", "").strip()
    token = pinned or secrets.token_urlsafe(24)
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
    cmd = worker_command(args.port)
    _say("starting the worker ...")
    # Own session, like the broker: on Ctrl-C this process stops the worker first (it drains
    # and commits while the broker is still up), then the broker.
    worker = subprocess.Popen(cmd, env=env, start_new_session=True)  # noqa: S603
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if not _wait_healthy(args.port, worker, timeout=120):
            _say("the worker did not become healthy; see its log above")
            return 1
        _say("")
        _say(f"  webhook-stream is running.   API:    http://127.0.0.1:{args.port}")
        _say(f"  API token:  {token}")
        # The fragment is read by the page and never sent to the server (nor to its log).
        _say(f"  console:    http://127.0.0.1:{args.port}/ui/#token={quote(token, safe='')}")
        _say(f"  broker:     {broker.bootstrap}   (produce events to events.<name>)")
        _say("")
        _say("  In another terminal, for the tour (README):")
        _say(f"    export WEBHOOK_STREAM_API_TOKEN={token}")
        _say(f"    export WEBHOOK_STREAM_BROKER={broker.url}")
        _say(f"    export API=http://127.0.0.1:{args.port}")
        _say(f'    export PATH="{Path(sys.executable).parent}:$PATH"   # webhook-stream, faust')
        if pinned:
            _say("  (the token is the WEBHOOK_STREAM_API_TOKEN you set)")
        else:
            _say("  (a new token every run; to keep one: WEBHOOK_STREAM_API_TOKEN=... make run)")
        _say("  Ctrl-C stops the worker and the broker.")
        _say("")
        return worker.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the drain
        if worker.poll() is None:
            _say("stopping the worker (it finishes in-flight deliveries first) ...")
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
    # Tansu runs in its own session, so a SIGTERM from a supervisor reaches only this
    # process: without a handler, its default action ended us and left Tansu on the port.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        broker.start()
        _say(f"embedded broker on {broker.bootstrap}; WEBHOOK_STREAM_BROKER={broker.url}")
        _say("memory only: everything is gone when it stops. Ctrl-C stops it.")
        while True:
            signal.pause()
    except KeyboardInterrupt:
        _say("stopping the broker ...")
    finally:
        broker.stop()
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    """Print the topic plan and create what is missing."""
    from webhook_stream.core.topics import ensure_topics, plan

    settings = Settings.from_env()
    for spec in plan(settings):
        conf = ", ".join(f"{k}={v}" for k, v in spec.config.items())
        _say(f"{spec.name:32} partitions={spec.partitions:<3} {conf:52} {spec.role}")
    if args.dry_run:
        return 0
    created = asyncio.run(_checked(settings, ensure_topics(settings)))
    _say(f"created {len(created)} topic(s)" + (f": {', '.join(created)}" if created else ""))
    return 0


async def _checked(settings: Settings, work: Coroutine[Any, Any, T]) -> T:
    """``work``, after a connection check that turns TLS/SASL failures into clear errors."""
    try:
        await kafka_auth.preflight(settings)
    except BaseException:
        work.close()
        raise
    return await work


def _progress(summary: ReplaySummary) -> None:
    print(
        f"  ... scanned {summary.scanned:,}, matched {summary.matched:,}",
        file=sys.stderr,
        flush=True,
    )


async def _replay(args: argparse.Namespace, settings: Settings) -> ReplaySummary:
    producer = kafka.producer(settings)
    await producer.start()
    try:
        times: dict[str, Any] = {
            k: parse_time(getattr(args, k)) for k in ("since", "until") if getattr(args, k)
        }
        common: dict[str, Any] = {
            "endpoint": args.endpoint,
            "tenant": args.tenant,
            "dry_run": args.dry_run,
        }
        if args.source == "deadletter":
            return await replay_deadletter(
                settings, producer, force=args.force, progress=_progress, **common, **times
            )
        registry = SubscriptionRegistry(settings)
        loading = asyncio.create_task(registry.run())
        try:
            await asyncio.wait_for(registry.ready.wait(), timeout=120)
        finally:
            registry.stop()
        await loading
        _say(f"loaded {len(registry.index):,} subscriptions")
        return await replay_events(
            settings,
            producer,
            registry.index,
            topic=args.topic,
            progress=_progress,
            **common,
            **times,
        )
    finally:
        await producer.stop()


def cmd_replay(args: argparse.Namespace) -> int:
    """Re-queue dead letters, or re-fan-out a time range of an events topic."""
    settings = Settings.from_env()
    what = "dead-lettered deliveries" if args.source == "deadletter" else f"events of {args.topic}"
    _say(f"replaying {what}" + (" (dry run: nothing is sent)" if args.dry_run else "") + " ...")
    summary = asyncio.run(_checked(settings, _replay(args, settings)))
    verb = "would re-queue" if args.dry_run else "re-queued"
    line = f"scanned {summary.scanned:,}, matched {summary.matched:,}, {verb} "
    line += f"{(summary.matched if args.dry_run else summary.requeued):,}"
    if args.source == "deadletter":
        line += f", skipped {summary.skipped_succeeded:,} already succeeded"
    _say(line)
    return 0


async def _reseal(settings: Settings) -> ResealSummary:
    producer = kafka.producer(settings)
    await producer.start()
    try:
        return await reseal(settings, producer, _reseal_progress)
    finally:
        await producer.stop()


def _reseal_progress(summary: ResealSummary) -> None:
    print(
        f"  ... read {summary.scanned:,} records, re-sealed {summary.resealed:,}",
        file=sys.stderr,
        flush=True,
    )


def cmd_reseal(args: argparse.Namespace) -> int:
    """Re-write every subscription with its secrets sealed by the newest key."""
    settings = Settings.from_env()
    _say("re-sealing subscriptions with the newest key of WEBHOOK_STREAM_SECRET_KEY ...")
    summary = asyncio.run(_checked(settings, _reseal(settings)))
    _say(
        f"read {summary.scanned:,} records: {summary.endpoints:,} endpoints, "
        f"re-sealed {summary.resealed:,}"
        + (
            f", {summary.concurrent:,} changed meanwhile re-sealed again"
            if summary.concurrent
            else ""
        )
    )
    if summary.failed:
        shown = ", ".join(summary.failed[:20]) + (" ..." if len(summary.failed) > 20 else "")
        _say(
            f"{len(summary.failed):,} endpoint(s) could not be opened with any configured key "
            f"and were left as they are: {shown}"
        )
        return 1
    _say("done: keys after the first can be removed from WEBHOOK_STREAM_SECRET_KEY")
    return 0


def cmd_receive(args: argparse.Namespace) -> int:
    """A receiver for trying things out: prints every webhook, checks its signature."""
    from webhook_stream.devtools import receive

    secret = args.secret or os.environ.get("WEBHOOK_SECRET", "")
    try:
        asyncio.run(receive(args.host, args.port, secret, args.status, sys.stdout))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        _say(f"webhook-stream receive: cannot listen on {args.host}:{args.port}: {exc.strerror}")
        return 1
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    """Send one JSON event to a topic with the worker's Kafka settings (no kcat needed)."""
    from webhook_stream.devtools import parse_headers, send

    settings = Settings.from_env()
    value = sys.stdin.read() if args.event in (None, "-") else args.event
    try:
        headers = parse_headers(args.header or [])
        where = asyncio.run(
            _checked(settings, send(settings, args.topic, value, args.key, headers))
        )
    except ValueError as exc:
        _say(f"webhook-stream send: {exc}")
        return 2
    _say(f"sent to {args.topic} (partition {where.partition}, offset {where.offset})")
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

    replay = sub.add_parser("replay", help="re-queue dead letters or re-fan-out events")
    rsub = replay.add_subparsers(dest="source", required=True)
    dl = rsub.add_parser("deadletter", help="re-queue dead-lettered deliveries (same webhook-id)")
    ev = rsub.add_parser("events", help="re-fan-out a time range of an events topic")
    ev.add_argument("--topic", required=True, help="events topic, e.g. events.orders")
    for p, since_required in ((dl, False), (ev, True)):
        p.add_argument(
            "--since",
            required=since_required,
            help="ISO-8601 time or an age such as 2h (default: everything)",
        )
        p.add_argument("--until", help="ISO-8601 time or an age (default: now)")
        p.add_argument("--endpoint", help="only this endpoint id")
        p.add_argument("--tenant", help="only this tenant (required with several tenants)")
        p.add_argument("--dry-run", action="store_true", help="count, send nothing")
    dl.add_argument(
        "--force", action="store_true", help="also re-send deliveries that have succeeded since"
    )
    replay.set_defaults(func=cmd_replay)

    receiving = sub.add_parser(
        "receive", help="a receiver that prints every webhook and checks its signature"
    )
    receiving.add_argument("--port", type=int, default=9000, help="port (default 9000)")
    receiving.add_argument("--host", default="127.0.0.1")
    receiving.add_argument(
        "--secret", help="the endpoint's whsec_... secret (or $WEBHOOK_SECRET); wrong = 401"
    )
    receiving.add_argument(
        "--status", type=int, default=200, help="status to answer (e.g. 503 to see retries)"
    )
    receiving.set_defaults(func=cmd_receive)

    sending = sub.add_parser(
        "send", help="send one JSON event to a topic, with the worker's Kafka settings"
    )
    sending.add_argument("topic", help="e.g. events.orders")
    sending.add_argument("event", nargs="?", help="the event as JSON (default: read stdin)")
    sending.add_argument("--key", help="record key (events with one key keep their order)")
    sending.add_argument(
        "--header", action="append", metavar="NAME=VALUE", help="a record header (repeatable)"
    )
    sending.set_defaults(func=cmd_send)

    resealing = sub.add_parser(
        "reseal", help="re-write every subscription sealed with the newest secret key"
    )
    resealing.set_defaults(func=cmd_reseal)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse gives an optional positional its value only before the options: `send TOPIC
    # --key K '{...}'` leaves the event over. Take it; anything else is still an error.
    if getattr(args, "command", None) == "send" and args.event is None and len(extra) == 1:
        args.event, extra = extra[0], []
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args))
    except WebhookStreamError as exc:
        print(f"webhook-stream: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
