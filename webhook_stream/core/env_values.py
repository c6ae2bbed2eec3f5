"""Values of ``WEBHOOK_STREAM_*`` variables: durations, schedules, networks, secrets,
proxy URLs, and the conversion of one raw string by its setting's name and default.
Pure parsing, shared by :mod:`webhook_stream.core.settings` and the API's validation."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str) -> float:
    """Parse ``500ms``, ``5s``, ``2m``, ``1h``, ``3d`` or a bare number of seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 5s, 2m, 1h)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def format_duration(seconds: float) -> str:
    """The inverse of :func:`parse_duration`, used in retry topic names (``30s``, ``2m``)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and float(seconds / size).is_integer():
            return f"{int(seconds // size)}{unit}"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return f"{seconds:g}s"


def parse_schedule(text: str) -> tuple[float, ...]:
    """Parse a comma-separated retry schedule such as ``5s,30s,2m``."""
    steps = tuple(parse_duration(part) for part in text.split(",") if part.strip())
    if any(step <= 0 for step in steps):
        raise ValueError("retry delays must be positive")
    return steps


def parse_networks(text: str | Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse an allow-list such as ``"10.1.0.0/16, 192.168.5.7, fd12::/64"``.

    Single addresses become one-address networks; host bits are allowed
    (``10.1.2.3/16`` means ``10.1.0.0/16``). Raises :class:`ValueError` naming the entry.
    """
    parts = text.split(",") if isinstance(text, str) else list(text)
    networks: list[IPNetwork] = []
    for part in parts:
        entry = part.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {entry!r}") from None
    return tuple(networks)


class Secret(str):
    """A string that never shows its value in ``repr`` (settings are logged at start-up)."""

    def __repr__(self) -> str:
        return "Secret('**********')" if self else "Secret('')"


class ProxyURL(str):
    """A proxy URL whose ``repr`` and :attr:`redacted` hide the password (logged at start-up)."""

    @property
    def redacted(self) -> str:
        scheme, sep, rest = self.partition("://")
        userinfo, at, hostport = rest.rpartition("@")
        if not sep or not at:
            return str(self)
        user = userinfo.partition(":")[0]
        return f"{scheme}://{user}:****@{hostport}"

    def __repr__(self) -> str:
        return f"ProxyURL({self.redacted!r})"


def parse_proxy_url(text: str) -> ProxyURL:
    """``http://[user:password@]host:port`` (or ``https://``); errors never show the password."""
    value = ProxyURL(text.strip())
    if not value:
        return value
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(f"not a proxy URL: {value.redacted!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"use http://host:port or https://host:port, not {value.redacted!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or port == 0:
        raise ValueError(f"a proxy URL is scheme://host:port only, not {value.redacted!r}")
    return value


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {text!r} (use 1 or 0)")


def parse_csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def convert(name: str, raw: str, default: object) -> object:
    if name in ("kafka_security_protocol", "kafka_sasl_mechanism"):
        return raw.strip().upper()
    if name in ("compression", "validate_events"):
        return raw.strip().lower()
    if name in ("kafka_sasl_password", "schema_registry_password"):
        return Secret(raw.rstrip("\r\n"))  # a password may hold spaces
    if name in ("api_token", "secret_key"):
        return Secret(raw.strip())
    if name == "egress_proxy":
        return parse_proxy_url(raw)
    if name == "egress_no_proxy":
        return tuple(host.lower().lstrip("*").lstrip(".") for host in parse_csv(raw))
    if name == "retry_schedule":
        return parse_schedule(raw)
    if isinstance(default, bool):
        return parse_bool(raw)
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw) if name == "retry_jitter" else parse_duration(raw)
    if isinstance(default, tuple):
        return parse_csv(raw)
    return raw
