"""Client certificates (mutual TLS) in both clients: presented, pooled per identity.

The server requires a certificate of one client CA; the direct client and the proxied one
(through a real ``proxy.py`` tunnel) present an endpoint's identity and keep its connections
apart from every other identity's.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.http.test_client import TlsServer, _certificates
from tests.support import ForwardProxy, always, ok
from tests.tls import make_client_pki
from webhook_stream.core.settings import Settings
from webhook_stream.http.client import HttpClient
from webhook_stream.http.proxied import HttpxClient
from webhook_stream.subscriptions.receiver_auth import ClientTls


@pytest.fixture(scope="module")
async def proxy(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ForwardProxy]:
    p = await ForwardProxy(tmp_path_factory.mktemp("proxy")).start()
    yield p
    await p.stop()


@pytest.mark.parametrize("proxied", [False, True], ids=["direct", "proxied"])
async def test_identities_are_presented_and_pooled_apart(
    proxied: bool, proxy: ForwardProxy, tmp_path: Path
) -> None:
    ca, cert, key = _certificates(tmp_path)
    pki, other_pki = make_client_pki("one"), make_client_pki("two")
    env = {"WEBHOOK_STREAM_ALLOW_INSECURE_TARGETS": "1"}
    if proxied:
        env["WEBHOOK_STREAM_EGRESS_PROXY"] = proxy.url()
    settings = Settings.from_env(env)
    trusting = ssl.create_default_context(cafile=str(ca))
    http = HttpxClient(settings, tls=trusting) if proxied else HttpClient(settings, tls=trusting)
    one = ClientTls(pki.cert, pki.key, ca.read_text())
    # No ca_cert: the client's own trust applies (here the test CA it was given).
    one_again = ClientTls(pki.cert, pki.key)
    stranger = ClientTls(other_pki.cert, other_pki.key, ca.read_text())
    async with TlsServer(always(ok(b"hi")), cert, key) as server:
        server.context.verify_mode = ssl.CERT_REQUIRED
        server.context.load_verify_locations(cadata=pki.ca)
        await http.start()
        try:
            url = f"https://localhost:{server.port}/hook"

            async def post(tls: ClientTls | None) -> tuple[int | None, str | None]:
                result = await http.post(url, b"{}", {}, 5.0, tls=tls)
                return result.status, result.error

            assert [await post(one) for _ in range(3)] == [(200, None)] * 3
            assert server.connections == 1  # kept alive, per identity
            assert await post(one_again) == (200, None)
            assert server.connections == 2  # another identity: another connection
            status, error = await post(None)
            assert status is None and error in ("tls", "connection_reset")
            status, error = await post(stranger)
            assert status is None and error in ("tls", "connection_reset")
            assert await post(one) == (200, None)
            assert server.connections == 2  # refused handshakes never count; `one` reused its own
        finally:
            await http.close()


async def test_a_token_response_may_be_longer_than_the_response_body_limit(
    tmp_path: Path,
) -> None:
    big = b'{"access_token":"' + b"t" * 4000 + b'","token_type":"Bearer"}'
    ca, cert, key = _certificates(tmp_path)
    settings = Settings.from_env({"WEBHOOK_STREAM_ALLOW_INSECURE_TARGETS": "1"})
    http = HttpClient(settings, tls=ssl.create_default_context(cafile=str(ca)))
    async with TlsServer(always(ok(big)), cert, key) as server:
        await http.start()
        try:
            url = f"https://localhost:{server.port}/token"
            assert len((await http.post(url, b"", {}, 5.0)).body) == settings.response_body_max
            assert (await http.post(url, b"", {}, 5.0, body_max=65536)).body == big
        finally:
            await http.close()
