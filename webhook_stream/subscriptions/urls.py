"""URL checks of a subscription: scheme, credentials, host syntax and, unless insecure
targets are allowed, literal addresses and local names refused at validation time.

Delivery checks the resolved address again (:mod:`webhook_stream.http.ssrf`).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

from webhook_stream.core.errors import InvalidSubscription
from webhook_stream.http.ssrf import IPAddress, is_forbidden_address

__all__ = ["CONTROL", "validate_url"]

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
