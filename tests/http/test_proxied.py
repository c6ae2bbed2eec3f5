"""The proxied delivery client through a real forward proxy (``proxy.py``) on 127.0.0.1.

Same interface and rules as the direct client (tests/http/test_client.py), plus the error
classes that say the proxy, not the receiver, failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.http.test_client import TlsServer, _certificates
from tests.support import (
    PROXY_PASSWORD,
    ForwardProxy,
    RawServer,
    Receiver,
    always,
    eventually,
    free_port,
    ok,
    uid,
)
from webhook_stream.core.settings import Settings
from webhook_stream.delivery.policy import Outcome, classify
from webhook_stream.http.client import HttpResult
from webhook_stream.http.proxied import HttpxClient, bypasses_proxy, egress_client


@pytest.fixture(scope="module")
async def proxy(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ForwardProxy]:
    p = await ForwardProxy(tmp_path_factory.mktemp("proxy")).start()
    yield p
    await p.stop()


@contextlib.asynccontextmanager
async def client(
    proxy_url: str, tls: ssl.SSLContext | None = None, **env: str
) -> AsyncIterator[HttpxClient]:
    environ = {
        "WEBHOOK_STREAM_ALLOW_INSECURE_TARGETS": "1",
        "WEBHOOK_STREAM_EGRESS_PROXY": proxy_url,
    }
    environ.update({f"WEBHOOK_STREAM_{k.upper()}": v for k, v in env.items()})
    http = HttpxClient(Settings.from_env(environ), tls=tls)
    await http.start()
    try:
        yield http
    finally:
        await http.close()


async def post(http: HttpxClient, url: str, timeout: float = 5.0, **headers: str) -> HttpResult:
    return await http.post(
        url, b'{"a":1}', {"content-type": "application/json", **headers}, timeout
    )


async def proxy_logged(proxy: ForwardProxy, text: str) -> str:
    return await eventually(lambda: text in proxy.log_text() and proxy.log_text(), timeout=10)


def test_the_worker_uses_the_proxied_client_only_when_a_proxy_is_set() -> None:
    assert type(egress_client(Settings())).__name__ == "HttpClient"
    proxied = Settings.from_env({"WEBHOOK_STREAM_EGRESS_PROXY": "http://proxy.internal:3128"})
    assert isinstance(egress_client(proxied), HttpxClient)


async def test_http_target_goes_through_the_proxy_as_absolute_form(
    proxy: ForwardProxy, receiver: Receiver
) -> None:
    path = f"/{uid('abs')}"
    async with client(proxy.url()) as http:
        results = [await post(http, receiver.url(path), x_custom="v") for _ in range(3)]
    assert [(r.status, r.body, r.error) for r in results] == [(200, b"ok", None)] * 3
    await proxy_logged(proxy, f"POST 127.0.0.1:{receiver.port}{path} - 200 OK")
    assert len(receiver.at(path)) == 3
    for got in receiver.at(path):
        assert got.body == b'{"a":1}' and got.headers["x_custom"] == "v"
        # the proxy's credentials stop at the proxy (proxy.py forwards them on a reused
        # connection, so none is reused); nothing the direct client would not send
        names = {name.lower() for name in got.headers}
        assert "proxy-authorization" not in names and "accept-encoding" not in names


async def test_without_credentials_the_proxy_connection_is_kept_alive(
    tmp_path: Path, receiver: Receiver
) -> None:
    open_proxy = await ForwardProxy(tmp_path, auth=False).start()
    try:
        async with RawServer(always(ok())) as server, client(open_proxy.url()) as http:
            results = [await post(http, server.url()) for _ in range(5)]
        assert [r.status for r in results] == [200] * 5
        assert server.connections == 1
    finally:
        await open_proxy.stop()


async def test_https_target_goes_through_a_connect_tunnel_verified_end_to_end(
    proxy: ForwardProxy, tmp_path: Path
) -> None:
    ca, cert, key = _certificates(tmp_path)
    trusting = ssl.create_default_context(cafile=str(ca))
    async with TlsServer(always(ok(b"secure")), cert, key) as server:
        async with client(proxy.url(), tls=trusting) as http:
            url = f"https://localhost:{server.port}/hook"
            results = [await post(http, url) for _ in range(3)]
            assert [(r.status, r.body, r.error) for r in results] == [(200, b"secure", None)] * 3
            assert server.connections == 1  # one tunnel, kept alive
            assert f"host: localhost:{server.port}\r\n".encode() in server.requests[0].lower()
            # the certificate names localhost, not 127.0.0.1: refused through the tunnel too
            wrong_name = await post(http, f"https://127.0.0.1:{server.port}/hook")
            assert (wrong_name.status, wrong_name.error) == (None, "tls")
        await proxy_logged(proxy, f"CONNECT localhost:{server.port}")
        # the system trust store does not know the test CA
        async with client(proxy.url()) as system:
            untrusted = await post(system, f"https://localhost:{server.port}/hook")
        assert (untrusted.status, untrusted.error) == (None, "tls")


async def test_proxy_not_running_is_proxy_connect_and_retried() -> None:
    async with client(f"http://user:{PROXY_PASSWORD}@127.0.0.1:{free_port()}") as http:
        for url in ("http://127.0.0.1:9/hook", "https://localhost:9/hook"):
            result = await post(http, url)
            assert (result.status, result.error) == (None, "proxy_connect")
            assert classify(result) is Outcome.RETRY


async def test_wrong_proxy_credentials_are_proxy_auth(
    proxy: ForwardProxy, receiver: Receiver
) -> None:
    async with client(proxy.url(password="wrong")) as http:
        plain = await post(http, receiver.url())
        tunnel = await post(http, f"https://localhost:{receiver.port}/hook")
    assert (plain.status, plain.error) == (None, "proxy_auth")
    assert (tunnel.status, tunnel.error) == (None, "proxy_auth")
    assert classify(plain) is Outcome.RETRY and classify(tunnel) is Outcome.RETRY
    assert receiver.requests == []


async def test_proxy_that_cannot_reach_the_receiver_is_proxy_error(proxy: ForwardProxy) -> None:
    dead = free_port()
    async with client(proxy.url()) as http:
        plain = await post(http, f"http://127.0.0.1:{dead}/hook")
        tunnel = await post(http, f"https://localhost:{dead}/hook")
    assert (plain.status, plain.error) == (None, "proxy_error")  # proxy.py's own 502
    assert (tunnel.status, tunnel.error) == (None, "proxy_error")  # 502 to CONNECT
    assert classify(plain) is Outcome.RETRY and classify(tunnel) is Outcome.RETRY


async def test_the_receivers_own_errors_and_redirects_are_its_status(proxy: ForwardProxy) -> None:
    busy = b"HTTP/1.1 503 Busy\r\nretry-after: 7\r\ncontent-length: 4\r\n\r\nbusy"
    moved = b"HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:1/\r\ncontent-length: 0\r\n\r\n"
    async with (
        RawServer(always(busy)) as busy_server,
        RawServer(always(moved)) as moved_server,
        client(proxy.url()) as http,
    ):
        result = await post(http, busy_server.url())
        redirect = await post(http, moved_server.url())
    assert (result.status, result.body, result.retry_after, result.error) == (503, b"busy", 7, None)
    assert (redirect.status, redirect.error) == (302, None)  # never followed
    assert classify(redirect) is Outcome.FATAL and len(moved_server.requests) == 1


async def test_body_limit_and_budget_hold_through_the_proxy(proxy: ForwardProxy) -> None:
    async def drip(conn: int, index: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n")
        for _ in range(100):
            writer.write(b"d")
            await writer.drain()
            await asyncio.sleep(0.1)
        return False

    async with (
        RawServer(always(ok(b"x" * 300_000))) as big,
        RawServer(drip) as dripping,
        client(proxy.url()) as http,  # the default response_body_max: 1024
    ):
        large = await post(http, big.url())
        started = time.monotonic()
        slow = await post(http, dripping.url(), timeout=10)
        elapsed = time.monotonic() - started
    assert large.status == 200 and large.body == b"x" * 1024
    assert slow.status == 200 and len(slow.body) <= 20 and elapsed < 3


async def test_no_response_times_out(proxy: ForwardProxy) -> None:
    async def silent(conn: int, index: int, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(30)
        return False

    async with RawServer(silent) as server, client(proxy.url()) as http:
        started = time.monotonic()
        result = await post(http, server.url(), timeout=0.5)
    assert (result.status, result.error) == (None, "timeout")
    assert 0.45 <= time.monotonic() - started < 3


async def test_per_host_limit_bounds_connections_through_the_proxy(proxy: ForwardProxy) -> None:
    async def slow(conn: int, index: int, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.05)
        writer.write(ok())
        return True

    async with RawServer(slow) as server, client(proxy.url(), http_pool_per_host="2") as http:
        results = await asyncio.gather(*(post(http, server.url()) for _ in range(10)))
    assert [r.status for r in results] == [200] * 10
    assert server.open_peak <= 2


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://example.com/", "insecure_url"),
        ("https://127.0.0.1/hook", "forbidden_address"),
        ("https://169.254.169.254/latest/meta-data", "forbidden_address"),
        ("https://[::1]/hook", "forbidden_address"),
        ("https://localhost/hook", "forbidden_address"),
        ("https://api.localhost./hook", "forbidden_address"),
        ("https://127.1/hook", "forbidden_address"),
        ("https://example.com:99999/", "invalid_url"),
    ],
)
async def test_what_the_url_shows_is_refused_before_the_proxy(
    proxy: ForwardProxy, url: str, error: str
) -> None:
    settings = Settings.from_env({"WEBHOOK_STREAM_EGRESS_PROXY": proxy.url()})
    http = HttpxClient(settings)
    await http.start()
    before = proxy.log_text()
    try:
        result = await http.post(url, b"{}", {}, 2.0)
    finally:
        await http.close()
    assert (result.status, result.error) == (None, error)
    assert classify(result) is Outcome.FATAL
    assert proxy.log_text() == before  # never reached the proxy


async def test_no_proxy_hosts_go_direct(proxy: ForwardProxy, receiver: Receiver) -> None:
    path = f"/{uid('direct')}"
    async with client(proxy.url(), egress_no_proxy="other.example, 127.0.0.1") as http:
        result = await post(http, receiver.url(path))
    assert (result.status, result.error) == (200, None)
    assert len(receiver.at(path)) == 1
    assert path not in proxy.log_text()
    assert bypasses_proxy("a.b.corp.example", ("corp.example",))
    assert not bypasses_proxy("evilcorp.example", ("corp.example",))


async def test_header_injection_is_refused(proxy: ForwardProxy) -> None:
    async with client(proxy.url()) as http:
        injected = await http.post("http://127.0.0.1:1/", b"{}", {"x": "a\r\nb: 1"}, 1.0)
        latin = await http.post("http://127.0.0.1:1/", b"{}", {"x": "caf\u00e9\u2603"}, 1.0)
    assert injected.error == latin.error == "invalid_header"


async def test_a_filtering_proxys_refusal_is_proxy_error(proxy: ForwardProxy) -> None:
    """smokescreen refuses with a 407 or 502 carrying ``X-Smokescreen-Error`` (scripted here
    behind proxy.py, which passes it on); a bare 502 is the receiver's own."""
    refused = (
        b"HTTP/1.1 407 Request Rejected by Proxy\r\nx-smokescreen-error: "
        b"resolves to private address\r\ncontent-length: 6\r\n\r\ndenied"
    )
    bare = b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 3\r\n\r\nbad"
    async with (
        RawServer(always(refused)) as refusing,
        RawServer(always(bare)) as gateway,
        client(proxy.url()) as http,
    ):
        denied = await post(http, refusing.url())
        own = await post(http, gateway.url())
    assert (denied.status, denied.error, denied.body) == (None, "proxy_error", b"denied")
    assert classify(denied) is Outcome.RETRY
    assert (own.status, own.error) == (502, None)
