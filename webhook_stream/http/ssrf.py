"""Delivery-time SSRF defence for the HTTP client.

Validation of a subscription's URL (:mod:`webhook_stream.http.urls`) only sees the
host *name*; what a name resolves to can change between validation and delivery (DNS
rebinding), so the address is checked again at connect time, in the manner of Svix's
``NonLocalDnsResolver``:

* :class:`GuardedResolver` resolves a host name, drops every address the
  :class:`AddressPolicy` refuses and returns only the vetted ones. The client
  (:mod:`webhook_stream.http.client`) connects to exactly those addresses (it does no
  second lookup), so a rebinding DNS server cannot swap in a private address after the check.
* IP-literal hosts (``http://10.0.0.1/``) are never resolved:
  :func:`~webhook_stream.http.urls.check_url_host` refuses them before the request, and
  :func:`guarded_socket_factory`, through which the client opens every socket, sees the
  exact address of each connection, literal or resolved.

Through a forward proxy (:mod:`webhook_stream.http.proxied`) the worker never sees the
address the proxy connects to: :func:`~webhook_stream.http.urls.check_proxied_host`
refuses what can be refused from the URL alone (forbidden IP literals, ``localhost``
names) and the proxy enforces the rest.

Every refusal raises :class:`ForbiddenAddress` (an :class:`OSError`); the client reports
it as the error class ``forbidden_address``.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from webhook_stream.core.settings import parse_networks

__all__ = [
    "AddressPolicy",
    "ForbiddenAddress",
    "GuardedResolver",
    "guarded_socket_factory",
    "is_forbidden_address",
    "parse_ip",
    "parse_networks",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def is_forbidden_address(ip: IPAddress) -> bool:
    """True for addresses a webhook must never reach: loopback, private, link-local,
    multicast, unspecified, reserved, shared (CGNAT), and IPv6 forms embedding such an
    IPv4 address (mapped, 6to4, Teredo, NAT64). Cloud metadata addresses fall in these."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = [ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None]
        if ip in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if any(v4 is not None and is_forbidden_address(v4) for v4 in embedded):
            return True
        if ip.is_site_local:
            return True
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or ip.is_reserved
        or not ip.is_global
    )


class ForbiddenAddress(OSError):
    """The target's address is refused by the :class:`AddressPolicy` (SSRF guard).

    ``host`` is the host as the URL names it; ``addresses`` the refused addresses (kept
    out of the message: attempt logs are shown to tenants, internal addresses are not).
    """

    def __init__(self, host: str, addresses: Sequence[str] = ()) -> None:
        super().__init__(
            errno.EACCES,
            f"target {host!r} is refused: it resolves only to loopback, private, link-local, "
            "multicast, reserved or otherwise non-public addresses",
        )
        self.host = host
        self.addresses = tuple(addresses)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.host, self.addresses))


def parse_ip(value: object) -> IPAddress | None:
    """``value`` as an IP address (brackets and an IPv6 zone accepted), else None."""
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text)  # accepts an IPv6 zone: fe80::1%eth0
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which addresses a webhook may connect to.

    Refused: whatever :func:`~is_forbidden_address` refuses
    (loopback, private, link-local incl. the cloud metadata address 169.254.169.254,
    ``fd00:ec2::254``, multicast, unspecified, reserved, CGNAT, and IPv6 forms embedding
    such an IPv4 address) -- unless ``allow_insecure`` (development and tests) or the
    address is in ``allow_networks`` (an operator's explicit allow-list).
    """

    allow_insecure: bool = False
    allow_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any) -> AddressPolicy:
        """From ``allow_insecure_targets`` and ``allow_target_networks`` (if that exists)."""
        networks = getattr(settings, "allow_target_networks", ())
        return cls(
            allow_insecure=bool(settings.allow_insecure_targets),
            allow_networks=parse_networks(networks),
        )

    def allowed(self, ip: IPAddress | str) -> bool:
        """True when a connection to ``ip`` is permitted. Unparseable input is refused."""
        if self.allow_insecure:
            return True
        address = parse_ip(ip)
        if address is None:
            return False
        if self._in_allow_list(address):
            return True
        return not is_forbidden_address(address)

    def _in_allow_list(self, address: IPAddress) -> bool:
        if not self.allow_networks:
            return False
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)  # ::ffff:10.1.2.3 is 10.1.2.3
        return any(
            candidate.version == network.version and candidate in network
            for candidate in candidates
            for network in self.allow_networks
        )


class GuardedResolver(AbstractResolver):
    """A resolver (aiohttp's resolver interface) that returns only addresses the policy allows.

    Wraps ``inner`` (default: aiohttp's ``DefaultResolver``, created on first use so this
    object can be built outside an event loop). If every address of a host is refused,
    raises :class:`ForbiddenAddress`. :meth:`close` closes ``inner`` only if this object
    created it.
    """

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner
        self._owns_inner = inner is None

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = aiohttp.DefaultResolver()
        results = await self._inner.resolve(host, port, family)
        if self.policy.allow_insecure:
            return results
        if not results:
            # An empty answer is a resolution failure, not a refusal.
            raise OSError(errno.ENOENT, f"no address found for {host!r}")
        allowed = [r for r in results if self.policy.allowed(r["host"])]
        if not allowed:
            raise ForbiddenAddress(host, [r["host"] for r in results])
        return allowed

    async def close(self) -> None:
        if self._inner is not None and self._owns_inner:
            await self._inner.close()
            self._inner = None


def guarded_socket_factory(policy: AddressPolicy) -> Callable[[Any], socket.socket]:
    """A socket factory that refuses forbidden peer addresses.

    Called with an ``addrinfo`` tuple for every socket the client opens, with the exact
    address about to be connected, whether the host was a name or an IP literal: the last
    line of defence. (Also fits aiohttp's ``TCPConnector(socket_factory=...)``.)
    """

    def factory(addr_info: Any) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        if not policy.allowed(sockaddr[0]):
            raise ForbiddenAddress(str(sockaddr[0]), [str(sockaddr[0])])
        return socket.socket(family=family, type=type_, proto=proto)

    return factory
