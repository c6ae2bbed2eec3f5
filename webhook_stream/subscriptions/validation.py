"""Validation of subscriptions: the one gate for the API and for ``webhooks.subscriptions``.

:func:`parse_subscription` turns decoded JSON into a
:class:`~webhook_stream.subscriptions.model.Subscription` or raises
:class:`~webhook_stream.core.errors.InvalidSubscription` naming the field;
:func:`parse_stored` does the same for a record of the compacted topic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeGuard, cast

import orjson

from webhook_stream.core.errors import InvalidSubscription
from webhook_stream.core.sealing import SecretBox, SecretKeyError
from webhook_stream.core.settings import parse_duration
from webhook_stream.http.urls import CONTROL, validate_url
from webhook_stream.subscriptions.filters import compile_filter
from webhook_stream.subscriptions.model import (
    MAX_PREVIOUS_SECRETS,
    Subscription,
    generate_secret,
    validate_secret,
)
from webhook_stream.subscriptions.receiver_auth import RECEIVER_FIELDS, receiver_fields
from webhook_stream.subscriptions.secrets import open_subscription_secrets
from webhook_stream.subscriptions.tenant_ids import tenant_id_problem

__all__ = [
    "MAX_HEADER_BYTES",
    "MAX_RETRY_SPAN_S",
    "MAX_RETRY_STEPS",
    "MIN_RATE_LIMIT_PER_S",
    "MIN_RETRY_STEP_S",
    "parse_stored",
    "parse_subscription",
]

# Limits of what one tenant may configure (README, Subscriptions): each is the worst
# value accepted, chosen so that it costs other tenants nothing (tests/isolation).
#: Slowest rate limit: one call per 100 s.
MIN_RATE_LIMIT_PER_S = 0.01
#: Retry steps of one endpoint, the shortest step, and the longest a delivery may be
#: retried (its schedule, with ``max_attempts`` repeating the last step).
MAX_RETRY_STEPS = 20
MIN_RETRY_STEP_S = 0.1
MAX_RETRY_SPAN_S = 30 * 86400.0
#: Custom headers of one endpoint together (names and values): every worker keeps them.
MAX_HEADER_BYTES = 16384
#: Entries of ``retry_status_codes``.
MAX_STATUS_CODES = 200

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
        "ordering",
        "previous_secrets",
        "created_at",
        "updated_at",
        "version",
        "incarnation",
        "filter",
        *RECEIVER_FIELDS,
    }
)

_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_EVENT_TYPE = re.compile(r"[A-Za-z0-9_.:/*?-]+")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")
# HTAB is the one control character a header value may hold (RFC 9110 field-value).
_BAD_HEADER_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
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
    sub = Subscription(
        id=_id(opt("id"), endpoint_id),
        url=validate_url(opt("url"), allow_insecure),
        event_types=_event_types(opt("event_types")),
        secret=generate_secret() if secret is None else validate_secret(secret, "secret"),
        tenant_id=_tenant_id(opt("tenant_id")),
        headers=_headers(opt("headers")),
        disabled=_bool(opt("disabled"), "disabled"),
        description=_opt_str(opt("description"), "description", 1024, free_text=True),
        timeout_s=_opt_number(opt("timeout_s"), "timeout_s", 60.0),
        max_attempts=_opt_int(opt("max_attempts"), "max_attempts", 1, 50),
        retry_schedule=None if retry_schedule is None else _retry_schedule(retry_schedule),
        retry_status_codes=_status_codes(opt("retry_status_codes")),
        rate_limit_per_s=_rate(opt("rate_limit_per_s")),
        max_in_flight=_opt_int(opt("max_in_flight"), "max_in_flight", 1, 100) or 1,
        ordering=_ordering(opt("ordering")),
        previous_secrets=_previous_secrets(opt("previous_secrets")),
        created_at=_opt_iso(opt("created_at"), "created_at"),
        updated_at=_opt_iso(opt("updated_at"), "updated_at"),
        version=_opt_int(opt("version"), "version", 0, 2**53) or 0,
        incarnation=_incarnation(opt("incarnation")),
        filter=compile_filter(opt("filter")),
        **receiver_fields(data, allow_insecure),
    )
    _check_retry_span(sub)
    return sub


def _rate(value: object) -> float | None:
    rate = _opt_number(value, "rate_limit_per_s", 100000.0)
    if rate is not None and rate < MIN_RATE_LIMIT_PER_S:
        raise InvalidSubscription(
            "rate_limit_per_s", f"must be at least {MIN_RATE_LIMIT_PER_S:g} (one call per 100 s)"
        )
    return rate


def _check_retry_span(sub: Subscription) -> None:
    schedule = sub.retry_schedule
    if schedule is None:
        return  # the operator's schedule (WEBHOOK_STREAM_RETRY_SCHEDULE)
    attempts = sub.max_attempts or len(schedule) + 1
    # A max_attempts beyond the schedule repeats its last step (dispatcher).
    steps = [schedule[min(n, len(schedule)) - 1] for n in range(1, attempts)]
    if sum(steps) > MAX_RETRY_SPAN_S:
        field = "max_attempts" if sub.max_attempts and attempts > len(schedule) + 1 else ""
        raise InvalidSubscription(
            field or "retry_schedule",
            f"retries would span {sum(steps) / 86400:.1f} days; at most 30 days",
        )


def _incarnation(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidSubscription("incarnation", "must be 1-128 characters of A-Z a-z 0-9 _ . : -")
    return value


ORDERINGS = ("best_effort", "strict")


def _ordering(value: object) -> str:
    if value is None:
        return "best_effort"
    if value not in ORDERINGS:
        raise InvalidSubscription("ordering", "must be 'strict' or 'best_effort'")
    return str(value)


def _printable(name: object) -> str:
    # Field names come from untrusted input and end up in responses and logs.
    return CONTROL.sub("?", str(name))[:128]


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
        try:
            header_value.encode("latin-1")  # what delivery sends (RFC 9110 field values)
        except UnicodeEncodeError:
            raise InvalidSubscription(
                f, "value must be Latin-1 text (delivery cannot send other characters)"
            ) from None
        out.append((name, header_value))
    if sum(len(n) + len(v.encode()) for n, v in out) > MAX_HEADER_BYTES:
        raise InvalidSubscription("headers", f"must total at most {MAX_HEADER_BYTES} bytes")
    return tuple(out)


def _tenant_id(value: object) -> str | None:
    tenant = _opt_str(value, "tenant_id", 128, free_text=False)
    if tenant is not None and (problem := tenant_id_problem(tenant)) is not None:
        raise InvalidSubscription("tenant_id", problem)
    return tenant


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
    if not free_text and CONTROL.search(value):
        raise InvalidSubscription(f, "must not contain control characters")
    return value


def _is_number(value: object) -> TypeGuard[float]:
    # bool is an int subclass; JSON true must not pass as 1.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _opt_number(value: object, f: str, maximum: float) -> float | None:
    if value is None:
        return None
    if not _is_number(value):
        raise InvalidSubscription(f, "must be a number")
    number = float(value)
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
    if not 1 <= len(value) <= MAX_RETRY_STEPS:
        raise InvalidSubscription(f, f"must have 1 to {MAX_RETRY_STEPS} steps")
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
        if not MIN_RETRY_STEP_S <= step <= 7 * 86400:
            raise InvalidSubscription(f"{f}[{i}]", "must be at least 100ms and at most 7 days")
        steps.append(step)
    return tuple(steps)


def _status_codes(value: object) -> frozenset[int]:
    f = "retry_status_codes"
    if value is None:
        return frozenset()
    if not isinstance(value, list | tuple):
        raise InvalidSubscription(f, "must be a list of status codes")
    if len(value) > MAX_STATUS_CODES:
        raise InvalidSubscription(f, f"must have at most {MAX_STATUS_CODES} entries")
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
        secret = validate_secret(item.get("secret"), f"{f}[{i}].secret")
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
        ts = float(value)
        if not 0 <= ts <= _MAX_TIMESTAMP:
            raise InvalidSubscription(f, "is out of range")
        return ts
    return _parse_iso(value, f).timestamp()


def _opt_iso(value: object, f: str) -> str | None:
    if value is None:
        return None
    _parse_iso(value, f)  # refuses anything but an ISO-8601 string
    return cast(str, value)


def parse_stored(
    raw: bytes | str, key: bytes | str | None = None, box: SecretBox | None = None
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
    if isinstance(data, Mapping) and data.get("signature_scheme", "hmac-sha256") not in (
        "hmac-sha256",
        None,
    ):
        if data.get("signing_key") is None:  # one made here would differ per worker
            raise InvalidSubscription("signing_key", "is required in the stored form")
    if isinstance(data, Mapping):
        try:
            data = open_subscription_secrets(data, box)
        except SecretKeyError as exc:
            raise InvalidSubscription("secret", str(exc)) from None
    endpoint_id = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    return parse_subscription(data, allow_insecure=True, endpoint_id=endpoint_id)
