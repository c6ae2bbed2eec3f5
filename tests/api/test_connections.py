"""The API listens on exactly ``WEBHOOK_STREAM_WEB_HOST`` and times slow or idle clients out.

A worker of its own, started without ``--web-host`` so the setting alone decides, with
``WEBHOOK_STREAM_WEB_CLIENT_TIMEOUT=2s``. Everything is checked with real sockets: another
loopback address (127.0.0.2) and, when this machine has one, a non-loopback address of
its own are refused; ``/proc/net/tcp`` shows the one listening address; a client sending
its request head byte by byte, an idle keep-alive connection and a body that never
arrives are cut off after the timeout.
"""

from __future__ import annotations

import itertools
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from tests.support import TOKEN, Worker
from webhook_stream.cli import worker_command

TIMEOUT_S = 2.0
#: How much later than the timeout a connection may be closed (a loaded test machine).
SLACK_S = 4.0


class EnvHostWorker(Worker):
    """A worker whose bind address comes from the environment only (no ``--web-host``)."""

    def start(self) -> Worker:
        cmd = worker_command(self.port)
        at = cmd.index("--web-host")
        del cmd[at : at + 2]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            cmd, cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        return self


@pytest.fixture(scope="module")
async def local_worker(broker, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Worker]:
    env = {
        "WEBHOOK_STREAM_WEB_HOST": "127.0.0.1",
        "WEBHOOK_STREAM_WEB_CLIENT_TIMEOUT": f"{TIMEOUT_S}s",
    }
    w = EnvHostWorker(broker.url, tmp_path_factory.mktemp("bind"), env).start()
    try:
        await w.wait_ready()
        yield w
    finally:
        w.stop()


def _own_addresses() -> set[str]:
    """This machine's IPv4 addresses (from the kernel's routing table: no tools needed)."""
    found: set[str] = set()
    lines = Path("/proc/net/fib_trie").read_text().splitlines()
    for before, line in itertools.pairwise(lines):
        if "/32 host LOCAL" in line:
            found.add(before.split()[-1])
    return found


def _refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return False
    except ConnectionRefusedError:
        return True


def _listening(port: int) -> set[str]:
    """Local addresses of the IPv4 and IPv6 sockets listening on ``port``."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                if len(address) == 8:
                    out.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
                else:
                    out.add(address)
    return out


async def test_the_api_listens_on_exactly_the_web_host(local_worker: Worker) -> None:
    port = local_worker.port
    assert _listening(port) == {"127.0.0.1"}
    assert not _refused("127.0.0.1", port)
    # 127.0.0.0/8 is all loopback: an exact bind still refuses another of its addresses.
    assert _refused("127.0.0.2", port)
    others = {a for a in _own_addresses() if not a.startswith("127.")}
    for address in others:
        assert _refused(address, port), address


def _closed_after(sock: socket.socket, started: float, send: bytes = b"") -> float:
    """Seconds from ``started`` until the server closes ``sock`` (``send`` byte by byte)."""
    sock.settimeout(0.2)
    pending = list(send)
    deadline = started + TIMEOUT_S + SLACK_S + 5
    while time.monotonic() < deadline:
        if pending:
            try:
                sock.send(bytes([pending.pop(0)]))
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - started
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - started
    raise AssertionError("the server never closed the connection")


async def test_a_client_sending_its_head_byte_by_byte_is_cut_off(local_worker: Worker) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200
    with socket.create_connection(("127.0.0.1", local_worker.port)) as sock:
        took = _closed_after(sock, time.monotonic(), head)
    assert TIMEOUT_S - 0.5 <= took <= TIMEOUT_S + SLACK_S, took


async def test_an_idle_keep_alive_connection_is_closed(local_worker: Worker) -> None:
    with socket.create_connection(("127.0.0.1", local_worker.port)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(10)
        got = b""
        while b"\r\n\r\n" not in got:
            got += sock.recv(65536)
        assert got.startswith(b"HTTP/1.1 200"), got[:100]
        answered = time.monotonic()
        # Read the rest of the answer, then stay idle.
        took = _closed_after(sock, answered)
    assert took <= TIMEOUT_S + SLACK_S, took


async def test_a_body_that_never_arrives_is_a_408(local_worker: Worker) -> None:
    request = (
        b"POST /subscriptions HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {TOKEN}\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        + b'{"url": '
    )
    with socket.create_connection(("127.0.0.1", local_worker.port)) as sock:
        sock.sendall(request)
        started = time.monotonic()
        sock.settimeout(TIMEOUT_S + SLACK_S + 5)
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = sock.recv(65536)
            assert chunk, "closed without an answer"
            got += chunk
        took = time.monotonic() - started
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), head
        length = int(
            next(x for x in head.split(b"\r\n") if x.lower().startswith(b"content-length")).split(
                b":"
            )[1]
        )
        while len(body) < length:
            body += sock.recv(65536)
    assert orjson.loads(body)["error"] == {
        "code": "request_timeout",
        "message": "the body did not arrive in time",
        "field": "body",
    }
    assert TIMEOUT_S - 0.5 <= took <= TIMEOUT_S + SLACK_S, took
