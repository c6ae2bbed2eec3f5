"""Real parts for integration tests: worker processes, HTTP receivers, Kafka helpers.

Nothing here mocks Kafka or HTTP. Waiting is always polling with a deadline.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from webhook_stream.broker import free_port
from webhook_stream.cli import worker_command

TOKEN = "test-token-please-ignore-0123456789"

#: Every signing secret the API handed out in this session (searched for at the end).
SECRETS_USED: list[str] = []

#: Every tenant token the API issued in this session (searched for at the end).
TENANT_TOKENS_USED: list[str] = []


async def eventually(
    check: Callable[[], Any | Awaitable[Any]], timeout: float = 30.0, interval: float = 0.05
) -> Any:
    """Poll ``check`` until it returns a truthy value; fail with the last value at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Something listens on ``host:port`` (a connect succeeds)."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def uid(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- worker


class Worker:
    """``faust -A webhook_stream worker`` as a real subprocess."""

    def __init__(self, broker_url: str, workdir: Path, env: dict[str, str] | None = None):
        self.port = free_port()
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"worker-{self.port}.log"
        self.env = {
            # The event loop production runs (the image sets FAUST_LOOP); a test may override.
            "FAUST_LOOP": "uvloop",
            # Tracing only where a test asks for it, whatever the developer's shell says.
            **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
            "WEBHOOK_STREAM_BROKER": broker_url,
            "WEBHOOK_STREAM_API_TOKEN": TOKEN,
            "WEBHOOK_STREAM_ALLOW_INSECURE_TARGETS": "1",
            "WEBHOOK_STREAM_RETRY_SCHEDULE": "1s,2s",
            "WEBHOOK_STREAM_HTTP_TIMEOUT": "2s",
            "WEBHOOK_STREAM_PARTITIONS": "4",
            "WEBHOOK_STREAM_MAX_EVENT_BYTES": "20000",
            # Status queries are forwarded between workers: on loopback, as all test traffic.
            "WEBHOOK_STREAM_STATUS_ADVERTISED_URL": f"http://127.0.0.1:{self.port}",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Worker:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            worker_command(self.port),
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    async def wait_ready(self, timeout: float = 60.0) -> Worker:
        async def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log_tail()
            try:
                async with httpx.AsyncClient() as client:
                    r = await client.get(self.url + "/health", timeout=1)
                return r.status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(ready, timeout=timeout, interval=0.2)
        return self

    async def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait for exit without blocking the loop (receivers run on it)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.proc.wait, timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        """Teardown: SIGTERM, then SIGKILL if it lingers."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=45)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- API helpers
    def api(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=15
        )

    async def metric(self, name: str, client: httpx.AsyncClient | None = None) -> float:
        """The value of an unlabelled metric on the worker's ``/metrics`` (it must be there).
        Sampling in a loop: pass a ``client`` (a new one costs ~30 ms)."""
        if client is None:
            async with self.api() as own:
                text = (await own.get("/metrics")).text
        else:
            text = (await client.get("/metrics")).text
        found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        assert found, f"{name} missing from /metrics"
        return float(found.group(1))

    async def list_subscriptions(self, client: httpx.AsyncClient | None = None) -> list[Any]:
        """Every subscription the API lists, following the ``next`` cursor to the last page."""
        own = client is None
        client = client or self.api()
        try:
            out: list[Any] = []
            params: dict[str, Any] = {"limit": 500}
            while True:
                r = await client.get("/subscriptions", params=params)
                assert r.status_code == 200, r.text
                out += r.json()["items"]
                if r.json()["next"] is None:
                    return out
                params["after"] = r.json()["next"]
        finally:
            if own:
                await client.aclose()

    async def issue_token(self, tenant_id: str, **body: Any) -> dict[str, Any]:
        """A new tenant token (admin route); the token is remembered for the log search."""
        async with self.api() as client:
            r = await client.post(f"/tenants/{tenant_id}/tokens", json=body)
        assert r.status_code == 201, r.text
        TENANT_TOKENS_USED.append(r.json()["token"])
        return r.json()

    async def create_subscription(self, **sub: Any) -> dict[str, Any]:
        async with self.api() as client:
            r = await client.post("/subscriptions", json=sub)
        assert r.status_code == 201, r.text
        SECRETS_USED.append(r.json()["secret"])
        return r.json()


# --------------------------------------------------------------------------- receiver


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    request: web.Request | None = field(default=None, repr=False, compare=False)

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


Script = Callable[["Received"], Awaitable[web.StreamResponse] | web.StreamResponse | int]


@dataclass
class Receiver:
    """An aiohttp server on 127.0.0.1 that records every request.

    ``script[path]`` decides the answer: an int status, or a (possibly async) function of
    the request returning a status or a response. Default: 200.
    """

    requests: list[Received] = field(default_factory=list)
    script: dict[str, Script | int] = field(default_factory=dict)
    port: int = 0
    host: str = "127.0.0.1"
    tls: ssl.SSLContext | None = None  # serve https:// with this server context
    _runner: web.AppRunner | None = None

    async def start(self) -> Receiver:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.tls)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str = "/hook") -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        got = Received(
            request.path, dict(request.headers), await request.read(), time.time(), request
        )
        self.requests.append(got)
        action = self.script.get(request.path, 200)
        if callable(action):
            action = action(got)
            if asyncio.iscoroutine(action):
                action = await action
        if isinstance(action, int):
            return web.Response(status=action, text="ok" if action < 300 else "nope")
        return action  # type: ignore[return-value]

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def wait_count(self, path: str, count: int, timeout: float = 30.0) -> list[Received]:
        await eventually(lambda: len(self.at(path)) >= count, timeout=timeout)
        return self.at(path)


# --------------------------------------------------------------------------- forward proxy

PROXY_USER, PROXY_PASSWORD = "hooks", "pr0xy-pass-please-ignore"


class ForwardProxy:
    """``proxy.py`` (PyPI) as a real subprocess on a loopback port, with basic auth.

    Its access log (``log_text``) has a line per request: ``POST 127.0.0.1:PORT/path - 200 OK``
    for a forwarded request, ``CONNECT host:PORT`` for a tunnel. :meth:`stop` then
    :meth:`start` brings it back on the same port.
    """

    def __init__(self, workdir: Path, auth: bool = True) -> None:
        self.port = free_port()
        self.log_path = workdir / f"proxy-{self.port}.log"
        self.auth = auth
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, password: str = PROXY_PASSWORD) -> str:
        creds = f"{PROXY_USER}:{password}@" if self.auth else ""
        return f"http://{creds}127.0.0.1:{self.port}"

    async def start(self, timeout: float = 30.0) -> ForwardProxy:
        command = [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1"]
        command += ["--port", str(self.port), "--num-workers", "1", "--num-acceptors", "1"]
        command += ["--log-file", str(self.log_path)]
        if self.auth:
            command += ["--basic-auth", f"{PROXY_USER}:{PROXY_PASSWORD}"]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

        def listening() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log_text()[-2000:]
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        await eventually(listening, timeout=timeout, interval=0.1)
        return self

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# --------------------------------------------------------------------------- kafka


class Kafka:
    """Produce and read topics of the session broker."""

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> Kafka:
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=1)
        await self.producer.start()
        return self

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    async def send(
        self,
        topic: str,
        value: bytes | dict[str, Any] | None,
        key: str | bytes | None = None,
        headers: Iterable[tuple[str, bytes]] | None = None,
    ) -> Any:
        assert self.producer is not None
        if isinstance(value, dict):
            value = orjson.dumps(value)
        if isinstance(key, str):
            key = key.encode()
        return await self.producer.send_and_wait(
            topic, value, key=key, headers=list(headers) if headers else None
        )

    async def deliveries_committed(self, group: str = "webhook-stream-deliver") -> bool:
        """Every record on ``webhooks.deliveries`` is below ``group``'s committed offset."""
        records = await self.read_all("webhooks.deliveries")
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            committed = {
                r.partition: await consumer.committed(TopicPartition(r.topic, r.partition))
                for r in records
            }
        finally:
            await consumer.stop()
        return bool(records) and all((committed[r.partition] or -1) > r.offset for r in records)

    async def read_all(self, topic: str) -> list[Any]:
        """Every record currently in ``topic`` (all partitions)."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            await consumer.topics()
            parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in parts]
            if not tps:
                return []
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            out: list[Any] = []

            async def behind() -> bool:
                return any([await consumer.position(tp) < end[tp] for tp in tps])

            while await behind():
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    out.extend(records)
            return out
        finally:
            await consumer.stop()

    async def wait_records(
        self, topic: str, match: Callable[[Any], bool], count: int = 1, timeout: float = 30.0
    ) -> list[Any]:
        async def found() -> list[Any]:
            hits = [r for r in await self.read_all(topic) if match(r)]
            return hits if len(hits) >= count else []

        return await eventually(found, timeout=timeout, interval=0.3)


async def create_topics(bootstrap: str, partitions: dict[str, int]) -> None:
    """Create each topic with its number of partitions (one replica)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, n, 1) for t, n in partitions.items()])
    finally:
        await admin.close()


def json_of(record: Any) -> Any:
    return orjson.loads(record.value)


def event(type_: str, data: Any = None, **extra: Any) -> dict[str, Any]:
    return {"type": type_, "data": data if data is not None else {}, **extra}


def retry_record(
    endpoint: str,
    n: int,
    due_ms: int,
    *,
    tenant: str | None = None,
    type_: str = "order.x",
    topic: str = "events.x",
) -> dict[str, Any]:
    """A ``webhooks.retry.*`` record as the delivery path writes it: attempt 1 of event
    ``{endpoint}-{n}`` failed with HTTP 500 and is due at ``due_ms``."""
    return {
        "delivery_id": f"msg_{endpoint}_{n}",
        "endpoint_id": endpoint,
        "tenant_id": tenant,
        "event": {
            "id": f"{endpoint}-{n}",
            "type": type_,
            "occurred_at": "2026-11-26T00:00:00.000Z",
            "tenant_id": tenant,
            "data": orjson.dumps({"n": n}).decode(),
            "source": {"topic": topic, "partition": 0, "offset": n},
        },
        "created_at": "2026-11-26T00:00:00.000Z",
        "attempts": 1,
        "first_attempt_at": None,
        "last_attempt_at": None,
        "last_status_code": 500,
        "last_error": "HTTP 500",
        "due_at_ms": due_ms,
        "origin": "retry",
    }


# --------------------------------------------------------------------------- raw HTTP server


#: (connection number, request number on that connection, writer) -> keep the connection?
Respond = Callable[[int, int, asyncio.StreamWriter], Awaitable[bool]]


def ok(body: bytes = b"ok", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)


class RawServer:
    """Reads Content-Length requests; ``respond`` writes whatever bytes it likes."""

    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.connections = 0
        self.open_now = 0
        self.open_peak = 0
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        number = self.connections
        self.open_now += 1
        self.open_peak = max(self.open_peak, self.open_now)
        try:
            for index in range(1000):
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                self.requests.append(head + await reader.readexactly(length))
                if not await self.respond(number, index, writer):
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # a cancelled handler returns quietly (asyncio logs a re-raised cancel)
        finally:
            self.open_now -= 1
            self._handlers.discard(task)
            writer.close()


def always(data: bytes) -> Respond:
    async def respond(conn: int, index: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(data)
        return True

    return respond
