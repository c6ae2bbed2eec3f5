"""Subscriptions (endpoints): the model, its validation, and the index used for fan-out.

A subscription arrives as JSON from the API or straight from the compacted
``webhooks.subscriptions`` topic; :func:`parse_subscription` is the single gate both go
through. :class:`SubscriptionIndex` answers "who gets this event?" without scanning every
subscription. Pure logic: nothing here talks to Kafka or the network.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import re
import secrets
import socket
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlsplit

import orjson

from .errors import InvalidSubscription
from .records import to_iso
from .secrets_at_rest import SecretBox, SecretKeyError, open_subscription_secrets
from .settings import format_duration, parse_duration

__all__ = [
    "SECRET_PREFIX",
    "Subscription",
    "SubscriptionIndex",
    "generate_secret",
    "is_forbidden_address",
    "parse_subscription",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
MAX_PREVIOUS_SECRETS = 10
_MAX_TIMESTAMP = 253402300799.0  # 9999-12-31T23:59:59Z, the most datetime can show

_FIELDS = frozenset(
    {
        "id",
        "url",
        "event_types",
        "tenant_id",
        "secret",
        "headers",
        "disabled",
        "description",
        "timeout_s",
        "max_attempts",
        "retry_schedule",
        "retry_status_codes",
        "rate_limit_per_s",
        "max_in_flight",
        "previous_secrets",
        "created_at",
        "updated_at",
    }
)

_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_EVENT_TYPE = re.compile(r"[A-Za-z0-9_.:/*?-]+")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
# HTAB is the one control character a header value may hold (RFC 9110 field-value).
_BAD_HEADER_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FORBIDDEN_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-type",
        "user-agent",
    }
)
_FORBIDDEN_NAME_SUFFIXES = (".localhost", ".local", ".internal")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def generate_secret() -> str:
    """A fresh signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _secret_key(secret: str) -> bytes:
    return base64.b64decode(secret[len(SECRET_PREFIX) :])


def _duration_text(seconds: float) -> str:
    text = format_duration(seconds)
    # format_duration rounds (``%g``); fall back to the exact value so the stored form
    # reads back to the same schedule.
    return text if parse_duration(text) == seconds else f"{seconds!r}s"


@dataclass(frozen=True, slots=True)
class Subscription:
    """One endpoint. Build it with :func:`parse_subscription`; the constructor trusts its input."""

    id: str
    url: str
    event_types: tuple[str, ...]
    secret: str = field(repr=False)
    tenant_id: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    disabled: bool = False
    description: str | None = None
    timeout_s: float | None = None
    max_attempts: int | None = None
    retry_schedule: tuple[float, ...] | None = None
    retry_status_codes: frozenset[int] = frozenset()
    rate_limit_per_s: float | None = None
    max_in_flight: int = 1
    #: ``(secret, expires_at unix seconds)``: rotated-out secrets still signing until expiry.
    previous_secrets: tuple[tuple[str, float], ...] = field(default=(), repr=False)
    created_at: str | None = None
    updated_at: str | None = None

    def to_dict(self, include_secrets: bool) -> dict[str, Any]:
        """JSON-ready form. With secrets: the stored form; without: what API listings show."""
        out: dict[str, Any] = {
            "id": self.id,
            "url": self.url,
            "event_types": list(self.event_types),
            "tenant_id": self.tenant_id,
        }
        if include_secrets:
            out["secret"] = self.secret
        out.update(
            headers=dict(self.headers),
            disabled=self.disabled,
            description=self.description,
            timeout_s=self.timeout_s,
            max_attempts=self.max_attempts,
            retry_schedule=(
                None
                if self.retry_schedule is None
                else [_duration_text(step) for step in self.retry_schedule]
            ),
            retry_status_codes=sorted(self.retry_status_codes),
            rate_limit_per_s=self.rate_limit_per_s,
            max_in_flight=self.max_in_flight,
        )
        if include_secrets:
            out["previous_secrets"] = [
                {"secret": secret, "expires_at": to_iso(expires_at)}
                for secret, expires_at in self.previous_secrets
            ]
        out["created_at"] = self.created_at
        out["updated_at"] = self.updated_at
        return out

    def signing_keys(self, now: float) -> list[bytes]:
        """HMAC keys to sign with: the current secret first, then unexpired previous ones."""
        keys = [_secret_key(self.secret)]
        keys.extend(_secret_key(s) for s, expires_at in self.previous_secrets if expires_at > now)
        return keys

    def rotate_secret(
        self, *, now: float, grace_s: float, new_secret: str | None = None
    ) -> Subscription:
        """A copy with a new secret; the current one keeps signing for ``grace_s`` seconds."""
        secret = generate_secret() if new_secret is None else _secret(new_secret, "secret")
        previous = [(self.secret, now + grace_s), *self.previous_secrets]
        kept = tuple((s, exp) for s, exp in previous if exp > now)[:MAX_PREVIOUS_SECRETS]
        return replace(self, secret=secret, previous_secrets=kept)

    @classmethod
    def from_stored(
        cls, raw: bytes | str, key: bytes | str | None = None, box: SecretBox | None = None
    ) -> Subscription:
        """Parse a record of ``webhooks.subscriptions`` (not a tombstone) keyed by endpoint id.

        Full validation, but the address policy is left to delivery time (the worker's
        ``allow_insecure_targets`` decides there). The secret is required: one generated
        here would differ per worker and be unknown to the receiver.
        """
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidSubscription("body", "is not valid JSON") from None
        if isinstance(data, Mapping) and data.get("secret") is None:
            raise InvalidSubscription("secret", "is required in the stored form")
        if isinstance(data, Mapping):
            try:
                data = open_subscription_secrets(data, box)
            except SecretKeyError as exc:
                raise InvalidSubscription("secret", str(exc)) from None
        endpoint_id = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        return parse_subscription(data, allow_insecure=True, endpoint_id=endpoint_id)


# -- validation ------------------------------------------------------------------------------


def parse_subscription(
    data: object, *, allow_insecure: bool, endpoint_id: str | None = None
) -> Subscription:
    """Validate ``data`` (decoded JSON) into a :class:`Subscription`.

    ``endpoint_id`` is the id the caller already knows (Kafka key, URL path); the body may
    omit ``id`` or must repeat it. Raises :class:`InvalidSubscription` naming the field.
    """
    if not isinstance(data, Mapping):
        raise InvalidSubscription("body", "must be a JSON object")
    for name in data:
        if name not in _FIELDS:
            raise InvalidSubscription(_printable(name), "unknown field")

    def opt(name: str) -> Any:
        return data.get(name)

    secret = opt("secret")
    retry_schedule = opt("retry_schedule")
    return Subscription(
        id=_id(opt("id"), endpoint_id),
        url=_url(opt("url"), allow_insecure),
        event_types=_event_types(opt("event_types")),
        secret=generate_secret() if secret is None else _secret(secret, "secret"),
        tenant_id=_opt_str(opt("tenant_id"), "tenant_id", 128, free_text=False),
        headers=_headers(opt("headers")),
        disabled=_bool(opt("disabled"), "disabled"),
        description=_opt_str(opt("description"), "description", 1024, free_text=True),
        timeout_s=_opt_number(opt("timeout_s"), "timeout_s", 60.0),
        max_attempts=_opt_int(opt("max_attempts"), "max_attempts", 1, 50),
        retry_schedule=None if retry_schedule is None else _retry_schedule(retry_schedule),
        retry_status_codes=_status_codes(opt("retry_status_codes")),
        rate_limit_per_s=_opt_number(opt("rate_limit_per_s"), "rate_limit_per_s", 100000.0),
        max_in_flight=_opt_int(opt("max_in_flight"), "max_in_flight", 1, 100) or 1,
        previous_secrets=_previous_secrets(opt("previous_secrets")),
        created_at=_opt_iso(opt("created_at"), "created_at"),
        updated_at=_opt_iso(opt("updated_at"), "updated_at"),
    )


def _printable(name: object) -> str:
    # Field names come from untrusted input and end up in responses and logs.
    return _CONTROL.sub("?", str(name))[:128]


def _id(value: object, endpoint_id: str | None) -> str:
    rule = "must be 1-128 characters of A-Z a-z 0-9 _ . : -"
    if endpoint_id is not None and not _ID.fullmatch(endpoint_id):
        raise InvalidSubscription("id", f"endpoint id {rule}")
    if value is None:
        if endpoint_id is None:
            raise InvalidSubscription("id", "is required")
        return endpoint_id
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidSubscription("id", rule)
    if endpoint_id is not None and value != endpoint_id:
        raise InvalidSubscription("id", "does not match the endpoint id")
    return value


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


def _url(value: object, allow_insecure: bool) -> str:
    f = "url"
    if not isinstance(value, str) or not value:
        raise InvalidSubscription(f, "must be an absolute https URL")
    if len(value) > 2048:
        raise InvalidSubscription(f, "must be at most 2048 characters")
    if any(ch.isspace() or ch == "\\" for ch in value) or _CONTROL.search(value):
        raise InvalidSubscription(f, "must not contain whitespace, control characters or '\\'")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise InvalidSubscription(f, "is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidSubscription(f, "must be an absolute http(s) URL")
    if scheme == "http" and not allow_insecure:
        raise InvalidSubscription(f, "must use https")
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
                f, "must not target a loopback, private, link-local, multicast or reserved address"
            )
    elif name == "localhost" or name.endswith(_FORBIDDEN_NAME_SUFFIXES):
        raise InvalidSubscription(f, "must not target a local or internal host name")
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


def _event_types(value: object) -> tuple[str, ...]:
    f = "event_types"
    if not isinstance(value, list | tuple):
        raise InvalidSubscription(f, "must be a list of event types or glob patterns")
    if not value:
        raise InvalidSubscription(f, "must not be empty")
    if len(value) > 100:
        raise InvalidSubscription(f, "must have at most 100 entries")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise InvalidSubscription(f"{f}[{i}]", "must be a non-empty string")
        if len(item) > 256:
            raise InvalidSubscription(f"{f}[{i}]", "must be at most 256 characters")
        if not _EVENT_TYPE.fullmatch(item):
            raise InvalidSubscription(
                f"{f}[{i}]", "may contain only A-Z a-z 0-9 _ . : / - and the wildcards * ?"
            )
    return tuple(dict.fromkeys(value))


def _secret(value: object, f: str) -> str:
    # Never echo the value: this message reaches API responses and logs.
    if not isinstance(value, str) or not value.startswith(SECRET_PREFIX):
        raise InvalidSubscription(f, "must be 'whsec_' followed by base64")
    try:
        key = base64.b64decode(value[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSubscription(f, "must be 'whsec_' followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise InvalidSubscription(f, "must decode to 24-64 bytes")
    return value


def _headers(value: object) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise InvalidSubscription("headers", "must be an object of header name to value")
    if len(value) > 50:
        raise InvalidSubscription("headers", "must have at most 50 entries")
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for name, header_value in value.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise InvalidSubscription("headers", f"invalid header name {_printable(name)!r}")
        f = f"headers.{name}"
        lower = name.lower()
        if lower in _FORBIDDEN_HEADERS or lower.startswith("webhook-"):
            raise InvalidSubscription(f, "is reserved (hop-by-hop or set by webhook-stream)")
        if lower in seen:
            raise InvalidSubscription(f, "is duplicated (header names are case-insensitive)")
        seen.add(lower)
        # Values may be credentials (Authorization): never echoed.
        if not isinstance(header_value, str):
            raise InvalidSubscription(f, "value must be a string")
        if len(header_value) > 4096:
            raise InvalidSubscription(f, "value must be at most 4096 characters")
        if _BAD_HEADER_VALUE.search(header_value):
            raise InvalidSubscription(f, "value must not contain CR, LF, NUL or control characters")
        out.append((name, header_value))
    return tuple(out)


def _bool(value: object, f: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidSubscription(f, "must be true or false")
    return value


def _opt_str(value: object, f: str, max_len: int, *, free_text: bool) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidSubscription(f, "must be a string")
    if not value and not free_text:
        raise InvalidSubscription(f, "must not be empty (omit it instead)")
    if len(value) > max_len:
        raise InvalidSubscription(f, f"must be at most {max_len} characters")
    if not free_text and _CONTROL.search(value):
        raise InvalidSubscription(f, "must not contain control characters")
    return value


def _is_number(value: object) -> bool:
    # bool is an int subclass; JSON true must not pass as 1.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _opt_number(value: object, f: str, maximum: float) -> float | None:
    if value is None:
        return None
    if not _is_number(value):
        raise InvalidSubscription(f, "must be a number")
    number = float(value)  # type: ignore[arg-type]
    if not 0 < number <= maximum:
        raise InvalidSubscription(f, f"must be > 0 and <= {maximum:g}")
    return number


def _opt_int(value: object, f: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSubscription(f, "must be an integer")
    if not low <= value <= high:
        raise InvalidSubscription(f, f"must be between {low} and {high}")
    return value


def _retry_schedule(value: object) -> tuple[float, ...]:
    f = "retry_schedule"
    if not isinstance(value, list | tuple):
        raise InvalidSubscription(f, "must be a list of delays such as '5s', '2m', '1h'")
    if not 1 <= len(value) <= 30:
        raise InvalidSubscription(f, "must have 1 to 30 steps")
    steps: list[float] = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            try:
                step = parse_duration(item)
            except ValueError:
                raise InvalidSubscription(f"{f}[{i}]", "is not a duration (e.g. 5s, 2m)") from None
        elif _is_number(item):
            step = float(item)
        else:
            raise InvalidSubscription(f"{f}[{i}]", "must be a duration string or seconds")
        # Millisecond precision, so the dict form ("250ms", "5s") reads back identically.
        step = round(step, 3)
        if not 0 < step <= 7 * 86400:
            raise InvalidSubscription(f"{f}[{i}]", "must be > 0 and at most 7 days")
        steps.append(step)
    return tuple(steps)


def _status_codes(value: object) -> frozenset[int]:
    f = "retry_status_codes"
    if value is None:
        return frozenset()
    if not isinstance(value, list | tuple):
        raise InvalidSubscription(f, "must be a list of status codes")
    for i, code in enumerate(value):
        if isinstance(code, bool) or not isinstance(code, int) or not 400 <= code <= 599:
            raise InvalidSubscription(f"{f}[{i}]", "must be an integer from 400 to 599")
    return frozenset(value)


def _previous_secrets(value: object) -> tuple[tuple[str, float], ...]:
    f = "previous_secrets"
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise InvalidSubscription(f, "must be a list of {secret, expires_at}")
    if len(value) > MAX_PREVIOUS_SECRETS:
        raise InvalidSubscription(f, f"must have at most {MAX_PREVIOUS_SECRETS} entries")
    out: list[tuple[str, float]] = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise InvalidSubscription(f"{f}[{i}]", "must be an object {secret, expires_at}")
        for name in item:
            if name not in ("secret", "expires_at"):
                raise InvalidSubscription(f"{f}[{i}].{_printable(name)}", "unknown field")
        secret = _secret(item.get("secret"), f"{f}[{i}].secret")
        out.append((secret, _timestamp(item.get("expires_at"), f"{f}[{i}].expires_at")))
    return tuple(out)


def _parse_iso(value: object, f: str) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidSubscription(f, "must be an ISO-8601 timestamp")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidSubscription(f, "must be an ISO-8601 timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _timestamp(value: object, f: str) -> float:
    if _is_number(value):
        ts = float(value)  # type: ignore[arg-type]
        if not 0 <= ts <= _MAX_TIMESTAMP:
            raise InvalidSubscription(f, "is out of range")
        return ts
    return _parse_iso(value, f).timestamp()


def _opt_iso(value: object, f: str) -> str | None:
    if value is None:
        return None
    _parse_iso(value, f)
    return value  # type: ignore[return-value]


# -- the index -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Bucket:
    """One tenant's patterns, each mapped to the ids of the subscriptions using it."""

    exact: dict[str, set[str]] = field(default_factory=dict)
    prefix: dict[str, set[str]] = field(default_factory=dict)
    globs: dict[str, set[str]] = field(default_factory=dict)

    def table(self, pattern: str) -> tuple[dict[str, set[str]], str]:
        if "*" not in pattern and "?" not in pattern:
            return self.exact, pattern
        head = pattern.rstrip("*")  # "order.**" == "order.*"; "*" is the empty prefix
        if "*" not in head and "?" not in head:
            return self.prefix, head
        return self.globs, pattern

    def __bool__(self) -> bool:
        return bool(self.exact or self.prefix or self.globs)


class SubscriptionIndex:
    """All known subscriptions, indexed by tenant and pattern for fan-out.

    ``match`` costs one dict lookup for exact types, ``len(event_type) + 1`` for
    ``prefix*`` patterns, and a scan of only the tenant's other glob patterns.
    """

    def __init__(self, subscriptions: Iterable[Subscription] = ()) -> None:
        self._subs: dict[str, Subscription] = {}
        self._tenants: dict[str | None, _Bucket] = {}
        for sub in subscriptions:
            self.put(sub)

    def put(self, sub: Subscription) -> Subscription | None:
        """Add or replace (by id); returns the replaced subscription."""
        old = self._subs.get(sub.id)
        if old is not None:
            self._unindex(old)
        self._subs[sub.id] = sub
        self._index(sub)
        return old

    def remove(self, endpoint_id: str) -> Subscription | None:
        old = self._subs.pop(endpoint_id, None)
        if old is not None:
            self._unindex(old)
        return old

    def get(self, endpoint_id: str) -> Subscription | None:
        return self._subs.get(endpoint_id)

    def all(self) -> list[Subscription]:
        """Every subscription (disabled ones too), sorted by id."""
        return [self._subs[key] for key in sorted(self._subs)]

    def __len__(self) -> int:
        return len(self._subs)

    def __iter__(self) -> Iterator[Subscription]:
        return iter(self.all())

    def __contains__(self, endpoint_id: object) -> bool:
        return endpoint_id in self._subs

    def match(self, event_type: str, tenant_id: str | None) -> list[Subscription]:
        """Subscriptions of exactly this tenant with a pattern matching the type, sorted
        by id. Tenants fail closed: ``None`` only matches ``None``. Disabled ones match
        too: the delivery path dead-letters them (``endpoint_disabled``), so a re-enabled
        endpoint can have them replayed."""
        bucket = self._tenants.get(tenant_id)
        if bucket is None:
            return []
        ids: set[str] = set()
        hit = bucket.exact.get(event_type)
        if hit:
            ids.update(hit)
        if bucket.prefix:
            for end in range(len(event_type) + 1):
                hit = bucket.prefix.get(event_type[:end])
                if hit:
                    ids.update(hit)
        for pattern, hit in bucket.globs.items():
            if fnmatchcase(event_type, pattern):
                ids.update(hit)
        return [self._subs[key] for key in sorted(ids)]

    def _index(self, sub: Subscription) -> None:
        bucket = self._tenants.get(sub.tenant_id)
        if bucket is None:
            bucket = self._tenants[sub.tenant_id] = _Bucket()
        for pattern in sub.event_types:
            table, key = bucket.table(pattern)
            table.setdefault(key, set()).add(sub.id)

    def _unindex(self, sub: Subscription) -> None:
        bucket = self._tenants.get(sub.tenant_id)
        if bucket is None:
            return
        for pattern in sub.event_types:
            table, key = bucket.table(pattern)
            ids = table.get(key)
            if ids is not None:
                ids.discard(sub.id)
                if not ids:
                    del table[key]
        if not bucket:
            del self._tenants[sub.tenant_id]
