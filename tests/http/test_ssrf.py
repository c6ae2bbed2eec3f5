"""Delivery-time SSRF guard: address policy, guarded resolver, the HTTP client end to end."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import pickle
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from tests.support import RawServer
from webhook_stream.core.settings import Settings, parse_networks
from webhook_stream.http.client import HttpClient, HttpResult
from webhook_stream.http.ssrf import (
    AddressPolicy,
    ForbiddenAddress,
    GuardedResolver,
    guarded_socket_factory,
)
from webhook_stream.http.urls import check_url_host

STRICT = AddressPolicy(allow_insecure=False)
INSECURE = AddressPolicy(allow_insecure=True)
ALLOW_LIST = AddressPolicy(allow_networks=parse_networks("10.1.0.0/16, 192.168.5.7, fd12::/64"))


# -- policy ----------------------------------------------------------------------------------

POLICY_ROWS = [
    # address, allowed by STRICT, allowed by ALLOW_LIST
    ("93.184.216.34", True, True),  # public
    ("8.8.8.8", True, True),
    ("2606:2800:220:1:248:1893:25c8:1946", True, True),  # public v6
    ("127.0.0.1", False, False),
    ("127.5.6.7", False, False),
    ("::1", False, False),
    ("0.0.0.0", False, False),
    ("::", False, False),
    ("10.0.0.1", False, False),
    ("10.1.2.3", False, True),  # in 10.1.0.0/16
    ("172.16.0.1", False, False),
    ("192.168.5.7", False, True),  # listed address
    ("192.168.5.8", False, False),
    ("100.64.0.1", False, False),  # CGNAT
    ("169.254.169.254", False, False),  # cloud metadata
    ("169.254.1.1", False, False),
    ("fd00:ec2::254", False, False),  # AWS metadata over IPv6
    ("fe80::1", False, False),
    ("fe80::1%eth0", False, False),
    ("fd12::5", False, True),  # ULA in the allow-list
    ("fc00::1", False, False),
    ("224.0.0.1", False, False),  # multicast
    ("ff02::1", False, False),
    ("240.0.0.1", False, False),  # reserved
    ("255.255.255.255", False, False),
    ("::ffff:10.0.0.1", False, False),  # IPv4-mapped private
    ("::ffff:10.1.0.9", False, True),  # mapped, embedded v4 in the allow-list
    ("::ffff:127.0.0.1", False, False),
    ("::ffff:93.184.216.34", False, False),  # every mapped address (::ffff:0:0/96 is not global)
    ("64:ff9b::a00:1", False, False),  # NAT64 of 10.0.0.1
    ("2002:7f00:1::", False, False),  # 6to4 of 127.0.0.1
    ("not-an-ip", False, False),
    ("", False, False),
]


@pytest.mark.parametrize(("address", "strict", "listed"), POLICY_ROWS)
def test_policy_table(address: str, strict: bool, listed: bool) -> None:
    assert STRICT.allowed(address) is strict
    assert ALLOW_LIST.allowed(address) is listed
    assert INSECURE.allowed(address) is True
    if address and address != "not-an-ip":
        assert STRICT.allowed(ipaddress.ip_address(address)) is strict


def test_parse_networks() -> None:
    assert parse_networks("") == ()
    assert parse_networks(" 10.1.0.0/16 , 192.168.5.7,,fd12::/64 ") == (
        ipaddress.ip_network("10.1.0.0/16"),
        ipaddress.ip_network("192.168.5.7/32"),
        ipaddress.ip_network("fd12::/64"),
    )
    assert parse_networks(["10.1.2.3/16"]) == (ipaddress.ip_network("10.1.0.0/16"),)
    with pytest.raises(ValueError, match="nope"):
        parse_networks("10.0.0.0/8,nope")


def test_policy_from_settings() -> None:
    class S:
        allow_insecure_targets = False
        allow_target_networks = ("10.1.0.0/16",)

    policy = AddressPolicy.from_settings(S())
    assert policy.allowed("10.1.0.1") and not policy.allowed("10.2.0.1")


def test_forbidden_address_error() -> None:
    exc = ForbiddenAddress("internal.example", ["10.0.0.1"])
    assert isinstance(exc, OSError)
    assert exc.host == "internal.example" and exc.addresses == ("10.0.0.1",)
    assert "10.0.0.1" not in str(exc)  # internal addresses stay out of attempt logs
    again = pickle.loads(pickle.dumps(exc))
    assert again.host == exc.host and again.addresses == exc.addresses


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("https://93.184.216.34/hook", False),
        ("https://example.com/hook", False),  # names are the resolver's job
        ("https://localhost/hook", False),  # ditto (resolves to loopback: resolver refuses)
        ("http://127.0.0.1:8080/", True),
        ("http://[::1]/", True),
        ("http://[::ffff:127.0.0.1]/", True),
        ("http://[::ffff:7f00:1]/", True),
        ("http://169.254.169.254/latest/meta-data/", True),
        ("http://[fd00:ec2::254]/", True),
        ("http://127.1/", True),  # inet_aton shorthands
        ("http://2130706433/", True),
        ("http://0x7f000001/", True),
        ("http://127.0.0.1./", True),
        ("http://10.1.2.3/", True),
    ],
)
def test_check_url_host(url: str, refused: bool) -> None:
    if refused:
        with pytest.raises(ForbiddenAddress):
            check_url_host(url, STRICT)
    else:
        check_url_host(url, STRICT)
    check_url_host(url, INSECURE)


def test_check_url_host_allow_list() -> None:
    check_url_host("http://10.1.2.3/", ALLOW_LIST)
    with pytest.raises(ForbiddenAddress):
        check_url_host("http://10.2.0.1/", ALLOW_LIST)


# -- resolver --------------------------------------------------------------------------------


def _result(host: str, address: str, port: int) -> ResolveResult:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return ResolveResult(hostname=host, host=address, port=port, family=family, proto=0, flags=0)


class ScriptedResolver(AbstractResolver):
    """Answers from a table, like a DNS server under the test's control."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls: list[str] = []
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls.append(host)
        return [_result(host, a, port) for a in self.table.get(host, [])]

    async def close(self) -> None:
        self.closed = True


TABLE = {
    "public.example": ["93.184.216.34"],
    "private.example": ["10.0.0.7"],
    "meta.example": ["169.254.169.254", "fd00:ec2::254"],
    "mixed.example": ["10.0.0.7", "93.184.216.34", "::1", "2606:2800:220:1::1"],
    "mapped.example": ["::ffff:192.168.1.1"],
    "listed.example": ["10.1.9.9"],
    "nothing.example": [],
}


async def test_resolver_passes_public_addresses() -> None:
    resolver = GuardedResolver(STRICT, ScriptedResolver(TABLE))
    result = await resolver.resolve("public.example", 443)
    assert [r["host"] for r in result] == ["93.184.216.34"]
    assert result[0]["port"] == 443


@pytest.mark.parametrize("host", ["private.example", "meta.example", "mapped.example"])
async def test_resolver_refuses_forbidden_only_answers(host: str) -> None:
    resolver = GuardedResolver(STRICT, ScriptedResolver(TABLE))
    with pytest.raises(ForbiddenAddress) as info:
        await resolver.resolve(host, 443)
    assert info.value.host == host
    assert info.value.addresses == tuple(TABLE[host])


async def test_resolver_filters_mixed_answers() -> None:
    """A rebinding-style answer mixing public and private addresses keeps only the public."""
    resolver = GuardedResolver(STRICT, ScriptedResolver(TABLE))
    result = await resolver.resolve("mixed.example", 443)
    assert [r["host"] for r in result] == ["93.184.216.34", "2606:2800:220:1::1"]


async def test_resolver_checks_every_lookup() -> None:
    """Each call re-checks: an answer that flips to private later is refused then."""
    inner = ScriptedResolver({"flip.example": ["93.184.216.34"]})
    resolver = GuardedResolver(STRICT, inner)
    assert await resolver.resolve("flip.example", 443)
    inner.table["flip.example"] = ["127.0.0.1"]
    with pytest.raises(ForbiddenAddress):
        await resolver.resolve("flip.example", 443)
    assert inner.calls == ["flip.example", "flip.example"]


async def test_resolver_allow_list_and_insecure() -> None:
    listed = GuardedResolver(ALLOW_LIST, ScriptedResolver(TABLE))
    assert [r["host"] for r in await listed.resolve("listed.example")] == ["10.1.9.9"]
    insecure = GuardedResolver(INSECURE, ScriptedResolver(TABLE))
    assert [r["host"] for r in await insecure.resolve("private.example")] == ["10.0.0.7"]


async def test_resolver_empty_answer_is_an_ordinary_failure() -> None:
    resolver = GuardedResolver(STRICT, ScriptedResolver(TABLE))
    with pytest.raises(OSError) as info:
        await resolver.resolve("nothing.example")
    assert not isinstance(info.value, ForbiddenAddress)


async def test_resolver_close_leaves_an_injected_inner_open() -> None:
    inner = ScriptedResolver(TABLE)
    await GuardedResolver(STRICT, inner).close()
    assert not inner.closed
    own = GuardedResolver(STRICT)  # builds aiohttp's default resolver lazily
    with pytest.raises(ForbiddenAddress):
        await own.resolve("localhost")  # the real resolver answers loopback
    await own.close()


# -- end to end through the HTTP client ------------------------------------------------------


def answer(status: int = 200, headers: dict[str, str] | None = None) -> RawServer:
    """A raw server answering every request with ``status`` and closing the connection."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    data = f"HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n{extra}\r\nok"

    async def respond(conn: int, index: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(data.encode())
        return False

    return RawServer(respond)


@contextlib.asynccontextmanager
async def _client(
    policy: AddressPolicy, resolver: AbstractResolver | None = None
) -> AsyncIterator[HttpClient]:
    """Our delivery client with ``policy``; plain http allowed so loopback servers work."""
    client = HttpClient(Settings.from_env({}), resolver, policy=policy, require_https=False)
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def _post(client: HttpClient, url: str) -> HttpResult:
    return await client.post(url, b"{}", {"content-type": "application/json"}, 5.0)


async def test_e2e_name_resolving_to_loopback_is_refused() -> None:
    async with answer() as server, _client(STRICT) as client:
        result = await _post(client, f"http://localhost:{server.port}/")
        assert result.status is None and result.error == "forbidden_address"
        await asyncio.sleep(0.05)
        assert server.connections == 0


async def test_e2e_rebinding_answer_is_refused_at_connect_time() -> None:
    """Validated as a public name; at delivery time the name answers loopback only."""
    async with answer() as server:
        inner = ScriptedResolver({"rebind.example": ["127.0.0.1"]})
        async with _client(STRICT, inner) as client:
            result = await _post(client, f"http://rebind.example:{server.port}/")
        assert inner.calls == ["rebind.example"]
        assert result.error == "forbidden_address"
        assert server.connections == 0


async def test_e2e_allowed_when_insecure() -> None:
    async with answer() as server, _client(INSECURE) as client:
        result = await _post(client, f"http://localhost:{server.port}/")
        assert (result.status, result.body, result.error) == (200, b"ok", None)
        assert server.connections == 1
        assert server.requests[0].startswith(b"POST / HTTP/1.1")


async def test_e2e_ip_literal_refused_without_resolving() -> None:
    async with answer() as server:
        url = f"http://127.0.0.1:{server.port}/"
        inner = ScriptedResolver({})
        async with _client(STRICT, inner) as client:
            result = await _post(client, url)
        assert inner.calls == []  # literals are never resolved
        assert result.error == "forbidden_address"
        with pytest.raises(ForbiddenAddress):
            check_url_host(url, STRICT)
        await asyncio.sleep(0.05)
        assert server.connections == 0


def test_socket_factory_refuses_a_forbidden_peer() -> None:
    """The last line of defence: every socket the client opens goes through it."""
    factory = guarded_socket_factory(STRICT)
    with pytest.raises(ForbiddenAddress):
        factory((socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("10.0.0.7", 443)))
    sock = factory((socket.AF_INET, socket.SOCK_STREAM, 0, "", ("93.184.216.34", 443)))
    sock.close()


async def test_e2e_allow_list_admits_a_listed_loopback() -> None:
    policy = AddressPolicy(allow_networks=parse_networks("127.0.0.1"))
    async with answer() as server, _client(policy, ScriptedResolver({})) as client:
        result = await _post(client, f"http://127.0.0.1:{server.port}/")
        assert result.status == 200
        assert server.connections == 1


async def test_e2e_redirect_is_not_followed() -> None:
    async with answer() as target:
        location = f"http://127.0.0.1:{target.port}/"
        async with answer(302, {"location": location}) as server, _client(INSECURE) as client:
            result = await _post(client, f"http://localhost:{server.port}/")
            assert result.status == 302
            assert server.connections == 1
        await asyncio.sleep(0.05)
        assert target.connections == 0
