"""Every rule on a webhook's target URL, at the three moments it is checked.

* At validation (:func:`validate_url`, the subscription gate): scheme, credentials, host
  syntax and, unless insecure targets are allowed, literal addresses and local names,
  refused with :class:`~webhook_stream.core.errors.InvalidSubscription` naming the field.
* At delivery (:func:`parse_target`, both clients): what the request needs, parsed once;
  :class:`~webhook_stream.http.errors.Refused` ``invalid_url`` or ``forbidden_address``.
* Before a request (:func:`check_url_host`, :func:`check_proxied_host`): IP literals the
  address policy refuses (they are never resolved); resolved names are checked at connect
  time (:mod:`webhook_stream.http.ssrf`).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from yarl import URL

from webhook_stream.core.errors import InvalidSubscription
from webhook_stream.http.errors import Refused, TransportError
from webhook_stream.http.ssrf import (
    AddressPolicy,
    ForbiddenAddress,
    IPAddress,
    is_forbidden_address,
    parse_ip,
)

__all__ = [
    "CONTROL",
    "Target",
    "check_proxied_host",
    "check_url_host",
    "parse_target",
    "validate_url",
]

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FORBIDDEN_NAME_SUFFIXES = (".localhost", ".local", ".internal")


# Said wherever the development switch would accept the URL: a newcomer running the worker
# without `make run` otherwise has no way to learn the setting's name.
_INSECURE_HINT = (
    " (for development and tests only, WEBHOOK_STREAM_ALLOW_INSECURE_TARGETS=1 allows "
    "http:// and local targets)"
)


def validate_url(value: object, allow_insecure: bool) -> str:
    f = "url"
    if not isinstance(value, str) or not value:
        raise InvalidSubscription(f, "must be an absolute https URL")
    if len(value) > 2048:
        raise InvalidSubscription(f, "must be at most 2048 characters")
    if any(ch.isspace() or ch == "\\" for ch in value) or CONTROL.search(value):
        raise InvalidSubscription(f, "must not contain whitespace, control characters or '\\'")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise InvalidSubscription(f, "is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidSubscription(f, "must be an absolute http(s) URL")
    # Stored with the scheme in lower case (``HTTPS://`` is https), as delivery reads it.
    value = scheme + value[len(parts.scheme) :]
    if scheme == "http" and not allow_insecure:
        raise InvalidSubscription(f, "must use https" + _INSECURE_HINT)
    if "@" in parts.netloc:
        raise InvalidSubscription(f, "must not contain credentials")
    if "#" in value:
        raise InvalidSubscription(f, "must not contain a fragment")
    if not parts.hostname:
        raise InvalidSubscription(f, "must have a host")
    if port == 0:
        raise InvalidSubscription(f, "port must be 1-65535")
    name, ip = _host(parts.hostname, bracketed="[" in parts.netloc)
    if allow_insecure:
        return value
    if ip is not None:
        if is_forbidden_address(ip):
            raise InvalidSubscription(
                f,
                "must not target a loopback, private, link-local, multicast or reserved address"
                " (WEBHOOK_STREAM_ALLOW_TARGET_NETWORKS lists private networks to allow; "
                + _INSECURE_HINT[2:],
            )
    elif name == "localhost" or name.endswith(_FORBIDDEN_NAME_SUFFIXES):
        raise InvalidSubscription(
            f, "must not target a local or internal host name" + _INSECURE_HINT
        )
    elif "." not in name:
        # A dotless name resolves through resolver search domains, i.e. to internal hosts.
        raise InvalidSubscription(f, "host must be a fully qualified domain name")
    return value


def _host(host: str, *, bracketed: bool) -> tuple[str, IPAddress | None]:
    """The host as normalised ASCII name and, when it is an IP literal, its address."""
    f = "url"
    if bracketed:
        try:
            return host, ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidSubscription(f, "has an invalid IPv6 address") from None
    try:
        # IDNA mapping first: full-width letters and digits normalise to ASCII, so
        # look-alikes of "localhost" or "127.0.0.1" are caught below.
        name = host.encode("idna").decode("ascii").lower().rstrip(".")
    except UnicodeError:
        raise InvalidSubscription(f, "host is not a valid domain name") from None
    try:
        return name, ipaddress.IPv4Address(name)
    except ValueError:
        pass
    try:
        # Resolvers accept inet_aton shorthands ("127.1", "0x7f000001", "2130706433").
        return name, ipaddress.IPv4Address(socket.inet_aton(name))
    except OSError:
        pass
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise InvalidSubscription(f, "host is not a valid domain name")
    return name, None


# -- at delivery ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """What one URL needs, parsed once: pool key, where to connect, the request's first lines."""

    key: tuple[str, int, bool]
    host: str
    port: int
    tls: bool
    literal: bool
    prefix: bytes


def parse_target(url: str, policy: AddressPolicy) -> Target:
    """What delivery needs of ``url``; :class:`Refused` (``invalid_url``, ``forbidden_address``)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Refused(TransportError.INVALID_URL) from None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in ("http", "https") or not host or "@" in parts.netloc or port == 0:
        raise Refused(TransportError.INVALID_URL)
    try:
        check_url_host(url, policy)
    except ForbiddenAddress:
        raise Refused(TransportError.FORBIDDEN_ADDRESS) from None
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is None and not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise Refused(TransportError.INVALID_URL) from None
    tls = scheme == "https"
    port = port or (443 if tls else 80)
    authority = f"[{host}]" if literal is not None and literal.version == 6 else host
    if port != (443 if tls else 80):
        authority = f"{authority}:{port}"
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    if not path.isascii():
        path = quote(path, safe="/%:@!$&'()*+,;=?-._~")
    prefix = f"POST {path} HTTP/1.1\r\nhost: {authority}\r\n".encode("ascii")
    return Target((host, port, tls), host, port, tls, literal is not None, prefix)


# -- before a request ------------------------------------------------------------------


def _literal_address(host: str) -> IPAddress | None:
    """``host`` as an IP address if any resolver would read it as one, else None."""
    address = parse_ip(host)
    if address is not None or ":" in host:
        return address
    try:
        # What getaddrinfo also reads as IPv4: 127.1, 2130706433, 0x7f000001, 0177.0.0.1,
        # a trailing dot. (Refused here rather than left to the resolver.)
        return ipaddress.IPv4Address(socket.inet_aton(host.rstrip(".")))
    except (OSError, ValueError):  # ValueError: embedded NUL or non-ASCII
        return None


def check_url_host(url: str | URL, policy: AddressPolicy) -> None:
    """Raise :class:`ForbiddenAddress` if ``url``'s host is an IP literal the policy refuses.

    Host names pass (the :class:`GuardedResolver` checks what they resolve to). Call it
    before a request: IP literals are never resolved.
    """
    if policy.allow_insecure:
        return
    host = URL(url).raw_host if isinstance(url, str) else url.raw_host
    if not host:
        return  # no host at all: the client refuses the URL itself (invalid_url)
    address = _literal_address(host)
    if address is not None:
        if not policy.allowed(address):
            raise ForbiddenAddress(host, [str(address)])
    elif ":" in host:
        # Looks like an IPv6 literal but is not one: refuse rather than guess.
        raise ForbiddenAddress(host, [host])


def check_proxied_host(url: str, policy: AddressPolicy) -> None:
    """:func:`check_url_host`, and refuse ``localhost`` names: what a proxy would resolve to
    loopback on its own host. Resolved names are the proxy's to check (README, Protection)."""
    check_url_host(url, policy)
    if policy.allow_insecure:
        return
    host = (URL(url).raw_host or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        raise ForbiddenAddress(host, [host])
