"""Every field a tenant can set, at its worst accepted value and one step beyond.

The worst accepted value is what ``test_worst_settings.py`` runs against a real worker
beside another tenant; one step beyond must be refused naming the field (the API answers
that as 400 in the documented error shape).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.tls import client_identity
from webhook_stream.core.errors import InvalidSubscription
from webhook_stream.subscriptions.filters import MAX_FILTER_BYTES, MAX_FILTER_NODES
from webhook_stream.subscriptions.validation import (
    MAX_HEADER_BYTES,
    MIN_RATE_LIMIT_PER_S,
    parse_subscription,
)

BASE: dict[str, Any] = {
    "id": "ep_worst",
    "url": "https://hooks.example.com/x",
    "event_types": ["order.*"],
    "tenant_id": "acme",
}

_HEADERS_AT_LIMIT = {f"X-H{i}": "v" * 1000 for i in range(16)}
_HEADERS_AT_LIMIT["X-Last"] = "v" * (
    MAX_HEADER_BYTES - sum(len(n) + len(v) for n, v in _HEADERS_AT_LIMIT.items()) - len("X-Last")
)

_TLS = client_identity("worst")


def _filter_at_limits(extra: int) -> dict[str, Any]:
    """A filter with the most conditions, padded to the most bytes (plus ``extra``)."""
    conditions = {f"k{i}": {"$in": [i, "x"]} for i in range(MAX_FILTER_NODES // 2 - 2)}
    spec: dict[str, Any] = {"tenant_id": "acme", "data": {"$or": [conditions], "pad": ""}}
    size = len(orjson.dumps(spec))
    spec["data"]["pad"] = "p" * (MAX_FILTER_BYTES - size + extra)
    return spec


#: field -> (worst accepted value, the next value refused, the field the error names).
#: Fields of the body a tenant sets; the server's own (secret rotation, versions,
#: timestamps) are refused in PATCH bodies (api/routes/views.py) and not listed.
WORST: dict[str, tuple[Any, Any, str]] = {
    "id": ("e" * 128, "e" * 129, "id"),
    "url": ("https://hooks.example.com/" + "p" * 1900, "ftp://hooks.example.com/", "url"),
    "event_types": (["*"] * 1 + [f"t{i}.*" for i in range(99)], ["*"] * 101, "event_types"),
    "description": ("d" * 1024, "d" * 1025, "description"),
    "headers": (_HEADERS_AT_LIMIT, {**_HEADERS_AT_LIMIT, "X-More": "v"}, "headers"),
    "timeout_s": (60, 60.001, "timeout_s"),
    "max_attempts": (50, 51, "max_attempts"),
    "retry_schedule": (["100ms"] * 20, ["100ms"] * 21, "retry_schedule"),
    "retry_status_codes": (
        list(range(400, 600)),
        [*range(400, 600), 500],
        "retry_status_codes",
    ),
    "rate_limit_per_s": (MIN_RATE_LIMIT_PER_S, 0.0099, "rate_limit_per_s"),
    "max_in_flight": (100, 101, "max_in_flight"),
    "ordering": ("strict", "fifo", "ordering"),
    "disabled": (True, "yes", "disabled"),
    "signature_scheme": ("both", "rsa", "signature_scheme"),
    "auth": (
        {
            "type": "oauth2_client_credentials",
            "token_url": "https://auth.example.com/" + "t" * 2000,
            "client_id": "c" * 256,
            "client_secret": "s" * 1024,
            "scope": "a" * 1024,
            "audience": "b" * 2048,
            "client_auth": "body",
        },
        {"type": "basic", "username": "u", "password": "p" * 1025},
        "auth.password",
    ),
    "tls": (
        _TLS,
        {**_TLS, "client_cert": _TLS["client_cert"] + "x" * 65536},
        "tls.client_cert",
    ),
    "filter": (_filter_at_limits(0), _filter_at_limits(1), "filter"),
}


@pytest.mark.parametrize("name", sorted(WORST))
def test_the_worst_accepted_value_passes_and_one_step_beyond_is_refused(name: str) -> None:
    worst, beyond, field = WORST[name]
    sub = parse_subscription({**BASE, name: worst}, allow_insecure=False)
    assert sub.id == BASE["id"] or name == "id"
    with pytest.raises(InvalidSubscription) as refused:
        parse_subscription({**BASE, name: beyond}, allow_insecure=False)
    assert refused.value.field.split("[")[0] == field, refused.value


def test_every_settable_field_is_in_the_table() -> None:
    from webhook_stream.subscriptions import validation

    server_set = {
        "secret",
        "previous_secrets",
        "created_at",
        "updated_at",
        "version",
        "incarnation",
        "signing_key",
        "previous_signing_keys",
        "public_key",
    }
    assert set(WORST) | server_set | {"tenant_id"} == set(validation._FIELDS)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        # 20 steps of 7 days: 140 days of retries.
        ({"retry_schedule": ["7d"] * 20}, "retry_schedule"),
        # One 1-day step repeated by 50 attempts: 49 days.
        ({"retry_schedule": ["1d"], "max_attempts": 50}, "max_attempts"),
        ({"retry_schedule": ["50ms"]}, "retry_schedule"),
        ({"rate_limit_per_s": 1e-9}, "rate_limit_per_s"),
    ],
)
def test_absurd_retry_and_rate_settings_are_refused(extra: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSubscription) as refused:
        parse_subscription({**BASE, **extra}, allow_insecure=False)
    assert refused.value.field.split("[")[0] == field


def test_thirty_days_of_retries_is_the_most() -> None:
    ok = {"retry_schedule": ["1d"], "max_attempts": 31}  # 30 waits of a day
    assert parse_subscription({**BASE, **ok}, allow_insecure=False).max_attempts == 31
    with pytest.raises(InvalidSubscription):
        parse_subscription(
            {**BASE, "retry_schedule": ["1d"], "max_attempts": 32}, allow_insecure=False
        )
