"""The delivery HTTP client against raw scripted servers on 127.0.0.1.

Each server answers with exact bytes, so the odd corners of HTTP/1.1 (chunked bodies,
interim responses, a peer closing an idle keep-alive connection, garbage) are real.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import RawServer, Respond, always, ok
from webhook_stream.core.settings import Settings
from webhook_stream.http._http11 import Pool
from webhook_stream.http.client import HttpClient, HttpResult


@contextlib.asynccontextmanager
async def client(**env: str) -> AsyncIterator[HttpClient]:
    environ = {"WEBHOOK_STREAM_ALLOW_INSECURE_TARGETS": "1"}
    environ.update({f"WEBHOOK_STREAM_{k.upper()}": v for k, v in env.items()})
    http = HttpClient(Settings.from_env(environ))
    await http.start()
    try:
        yield http
    finally:
        await http.close()


async def post(http: HttpClient, url: str, timeout: float = 5.0, **headers: str) -> HttpResult:
    return await http.post(
        url, b'{"a":1}', {"content-type": "application/json", **headers}, timeout
    )


async def test_keep_alive_one_connection_for_sequential_posts() -> None:
    async with RawServer(always(ok(b"fine"))) as server, client() as http:
        results = [await post(http, server.url("/p?q=1"), x_custom="v") for _ in range(20)]
    assert {(r.status, r.body, r.error) for r in results} == {(200, b"fine", None)}
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /p?q=1 HTTP/1.1\r\n")
    assert f"host: 127.0.0.1:{server.port}\r\n".encode() in first
    assert b"content-length: 7\r\n" in first and b"x_custom: v\r\n" in first
    assert first.endswith(b'\r\n\r\n{"a":1}')


async def test_chunked_body_is_read_and_the_connection_reused() -> None:
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    async with RawServer(always(chunked)) as server, client() as http:
        results = [await post(http, server.url()) for _ in range(3)]
    assert [r.body for r in results] == [b"hello"] * 3
    assert server.connections == 1


async def test_large_body_keeps_the_first_kilobyte() -> None:
    big = ok(b"x" * 300_000)
    async with RawServer(always(big)) as server, client() as http:
        first = await post(http, server.url())
        second = await post(http, server.url())
    assert first.status == 200 and first.body == b"x" * 1024
    assert second.status == 200 and second.body == b"x" * 1024


async def test_connection_close_is_honoured() -> None:
    async def respond(conn: int, index: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(ok(extra=b"connection: close\r\n"))
        return False

    async with RawServer(respond) as server, client() as http:
        results = [await post(http, server.url()) for _ in range(3)]
    assert [r.status for r in results] == [200] * 3
    assert server.connections == 3


async def test_idle_connection_closed_by_peer_is_retried_on_a_new_one() -> None:
    """The peer drops a kept-alive connection as the next request arrives: sent again."""

    async def respond(conn: int, index: int, writer: asyncio.StreamWriter) -> bool:
        if conn == 1 and index == 1:
            return False  # close without a byte of response
        writer.write(ok())
        return True

    async with RawServer(respond) as server, client() as http:
        assert (await post(http, server.url())).status == 200
        second = await post(http, server.url())
    assert (second.status, second.error) == (200, None)
    assert server.connections == 2 and len(server.requests) == 3


async def test_fresh_connection_closed_without_response_is_an_error() -> None:
    async def respond(conn: int, index: int, writer: asyncio.StreamWriter) -> bool:
        return False

    async with RawServer(respond) as server, client() as http:
        result = await post(http, server.url())
    assert (result.status, result.error) == (None, "connection_reset")
    assert server.connections == 1  # not retried: the request was not on a reused connection


async def test_interim_100_continue_is_skipped() -> None:
    data = b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"after")
    async with RawServer(always(data)) as server, client() as http:
        result = await post(http, server.url())
    assert (result.status, result.body) == (200, b"after")


async def test_a_second_response_in_the_same_packet_is_ignored() -> None:
    data = ok(b"first") + b"HTTP/1.1 500 Oops\r\ncontent-length: 4\r\n\r\nnope"
    async with RawServer(always(data)) as server, client() as http:
        first = await post(http, server.url())
        second = await post(http, server.url())
    assert (first.status, first.body) == (200, b"first")
    assert (second.status, second.body) == (200, b"first")
    assert server.connections == 2  # the connection that carried extra bytes is not reused


async def test_retry_after_and_status_reported() -> None:
    data = b"HTTP/1.1 503 Busy\r\nretry-after: 7\r\ncontent-length: 4\r\n\r\nbusy"
    async with RawServer(always(data)) as server, client() as http:
        result = await post(http, server.url())
    assert (result.status, result.body, result.retry_after) == (503, b"busy", 7.0)


@pytest.mark.parametrize(
    "data",
    [b"HELLO THERE\r\n\r\n", b"HTTP/1.1 200 OK\r\n" + b"x-pad: " + b"a" * 100_000 + b"\r\n"],
    ids=["garbage", "endless-head"],
)
async def test_bad_responses_are_protocol_errors(data: bytes) -> None:
    async with RawServer(always(data)) as server, client() as http:
        result = await post(http, server.url())
    assert (result.status, result.error) == (None, "protocol")


async def test_no_response_times_out() -> None:
    async def respond(conn: int, index: int, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(30)
        return False

    async with RawServer(respond) as server, client() as http:
        started = time.monotonic()
        result = await post(http, server.url(), timeout=0.5)
    assert (result.status, result.error) == (None, "timeout")
    assert 0.45 <= time.monotonic() - started < 3


async def test_no_response_on_a_reused_connection_times_out_and_it_is_not_reused() -> None:
    """The idle-connection path bounds the wait with its own timer, not asyncio.timeout."""

    async def respond(conn: int, index: int, writer: asyncio.StreamWriter) -> bool:
        if conn == 1 and index == 1:
            await asyncio.sleep(30)  # the second request on the kept connection: no answer
            return False
        writer.write(ok())
        return True

    async with RawServer(respond) as server, client() as http:
        assert (await post(http, server.url())).status == 200
        started = time.monotonic()
        result = await post(http, server.url(), timeout=0.5)
        waited = time.monotonic() - started
        third = await post(http, server.url())
    assert (result.status, result.error) == (None, "timeout")
    assert 0.45 <= waited < 3
    assert (third.status, third.error) == (200, None)
    assert server.connections == 2  # the timed-out connection was closed, not handed out


async def test_dripping_body_returns_the_status_within_the_body_budget() -> None:
    async def respond(conn: int, index: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n")
        for _ in range(100):
            writer.write(b"d")
            await writer.drain()
            await asyncio.sleep(0.1)
        return False

    async with RawServer(respond) as server, client() as http:
        started = time.monotonic()
        result = await post(http, server.url(), timeout=10)
    assert result.status == 200 and 1 <= len(result.body) <= 20
    assert time.monotonic() - started < 3


async def test_per_host_limit_bounds_open_connections() -> None:
    async def respond(conn: int, index: int, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.05)
        writer.write(ok())
        return True

    async with RawServer(respond) as server, client(http_pool_per_host="2") as http:
        results = await asyncio.gather(*(post(http, server.url()) for _ in range(10)))
    assert [r.status for r in results] == [200] * 10
    assert server.open_peak <= 2 and server.connections <= 2


async def test_connection_refused_is_connect() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    async with client() as http:
        result = await post(http, f"http://127.0.0.1:{port}/")
    assert (result.status, result.error) == (None, "connect")


@pytest.mark.parametrize(
    ("url", "headers", "error"),
    [
        ("http://127.0.0.1:99999/", {}, "invalid_url"),
        ("ftp://127.0.0.1/", {}, "invalid_url"),
        ("http://127.0.0.1:1/", {"x-bad": "a\r\nx-injected: 1"}, "invalid_header"),
        ("http://127.0.0.1:1/", {"x-bad": "caf\u00e9\u2603"}, "invalid_header"),
    ],
)
async def test_requests_that_cannot_be_sent(url: str, headers: dict[str, str], error: str) -> None:
    async with client() as http:
        result = await http.post(url, b"{}", headers, 1.0)
    assert (result.status, result.error) == (None, error)


async def test_https_required_unless_insecure_targets_are_allowed() -> None:
    http = HttpClient(Settings.from_env({}))
    await http.start()
    try:
        result = await http.post("http://example.com/", b"{}", {}, 1.0)
    finally:
        await http.close()
    assert result.error == "insecure_url"


# -- TLS ------------------------------------------------------------------------------------


def _certificates(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for ``localhost`` (no IP address in it)."""
    now = datetime.now(UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("test CA"))
        .issuer_name(name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class TlsServer(RawServer):
    def __init__(self, respond: Respond, cert: Path, key: Path) -> None:
        super().__init__(respond)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)

    async def __aenter__(self) -> TlsServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self


async def test_https_verifies_the_certificate_and_the_host_name(tmp_path: Path) -> None:
    ca, cert, key = _certificates(tmp_path)
    trusting = ssl.create_default_context(cafile=str(ca))
    settings = Settings.from_env({"WEBHOOK_STREAM_ALLOW_INSECURE_TARGETS": "1"})
    async with TlsServer(always(ok(b"secure")), cert, key) as server:
        http = HttpClient(settings, tls=trusting)
        await http.start()
        try:
            url = f"https://localhost:{server.port}/hook"
            results = [await post(http, url) for _ in range(3)]
            assert [(r.status, r.body, r.error) for r in results] == [(200, b"secure", None)] * 3
            assert server.connections == 1  # kept alive over TLS
            assert f"host: localhost:{server.port}\r\n".encode() in server.requests[0]
            # the certificate names localhost, not 127.0.0.1
            wrong_name = await post(http, f"https://127.0.0.1:{server.port}/hook")
            assert (wrong_name.status, wrong_name.error) == (None, "tls")
        finally:
            await http.close()
        # the system trust store does not know the test CA
        async with client() as system:
            untrusted = await post(system, f"https://localhost:{server.port}/hook")
        assert (untrusted.status, untrusted.error) == (None, "tls")


async def test_a_waiter_cancelled_while_a_slot_frees_up_only_gives_up_its_turn() -> None:
    """A timeout and a release in the same loop turn: the next waiter gets the slot.

    This once raised ``ValueError`` from the pool (the release had already dropped the
    cancelled waiter) and stopped the worker.
    """
    pool = Pool(per_host=1, total=10, keepalive_s=30)
    key = ("receiver.test", 80, False)
    assert await pool.acquire(key) is None  # the one slot is taken
    first = asyncio.create_task(pool.acquire(key))
    second = asyncio.create_task(pool.acquire(key))
    deadline = time.monotonic() + 5
    while len(pool._hosts[key].waiters) < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0)  # let both tasks reach their wait
    first.cancel()
    pool.release(key, None)  # before `first` handles its cancellation
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(second, 5) is None  # second holds the slot now
    pool.release(key, None)
