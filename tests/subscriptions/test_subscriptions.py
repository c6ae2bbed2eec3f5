from __future__ import annotations

import base64
import ipaddress
import json
import random
from fnmatch import fnmatchcase
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from webhook_stream.core.errors import InvalidSubscription
from webhook_stream.http.ssrf import is_forbidden_address
from webhook_stream.subscriptions import index as index_module
from webhook_stream.subscriptions.index import SubscriptionIndex
from webhook_stream.subscriptions.model import Subscription, generate_secret
from webhook_stream.subscriptions.validation import parse_stored, parse_subscription

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"o" * 32).decode()
EXPIRED_SECRET = "whsec_" + base64.b64encode(b"e" * 32).decode()
MARKER = "TOPSECRETMARKER"


def body(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "ep_1",
        "url": "https://example.com/hooks",
        "event_types": ["order.*"],
        "secret": SECRET,
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not DROP}


DROP = object()


def sub(id: str, types: tuple[str, ...], tenant: str | None = None, **kw: Any) -> Subscription:
    return Subscription(
        id=id, url="https://example.com/", event_types=types, secret=SECRET, tenant_id=tenant, **kw
    )


# -- validation ------------------------------------------------------------------------------

INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("unknown field", {"colour": "red"}, "colour"),
    ("id missing", {"id": DROP}, "id"),
    ("id empty", {"id": ""}, "id"),
    ("id too long", {"id": "a" * 129}, "id"),
    ("id bad char", {"id": "ep 1"}, "id"),
    ("id slash", {"id": "ep/1"}, "id"),
    ("id trailing newline", {"id": "ep_1\n"}, "id"),
    ("id not str", {"id": 5}, "id"),
    ("url missing", {"url": DROP}, "url"),
    ("url not str", {"url": 1}, "url"),
    ("url relative", {"url": "/hooks"}, "url"),
    ("url ftp", {"url": "ftp://example.com/"}, "url"),
    ("url http", {"url": "http://example.com/"}, "url"),
    ("url userinfo", {"url": "https://user:pw@example.com/"}, "url"),
    ("url user only", {"url": "https://user@example.com/"}, "url"),
    ("url fragment", {"url": "https://example.com/#x"}, "url"),
    ("url no host", {"url": "https:///path"}, "url"),
    ("url too long", {"url": "https://example.com/" + "a" * 2040}, "url"),
    ("url space", {"url": "https://example.com/a b"}, "url"),
    ("url newline", {"url": "https://example.com/\r\nX: y"}, "url"),
    ("url backslash", {"url": "https://example.com\\@10.0.0.1/"}, "url"),
    ("url bad port", {"url": "https://example.com:99999/"}, "url"),
    ("url port 0", {"url": "https://example.com:0/"}, "url"),
    ("url bad ipv6", {"url": "https://[::1/"}, "url"),
    ("url bad host", {"url": "https://exa%6dple.com/"}, "url"),
    ("url loopback", {"url": "https://127.0.0.1/"}, "url"),
    ("url loopback short", {"url": "https://127.1/"}, "url"),
    ("url loopback int", {"url": "https://2130706433/"}, "url"),
    ("url loopback hex", {"url": "https://0x7f000001/"}, "url"),
    ("url loopback fullwidth", {"url": "https://\uff11\uff12\uff17.0.0.1/"}, "url"),
    ("url private 10", {"url": "https://10.1.2.3/"}, "url"),
    ("url private 192", {"url": "https://192.168.1.1:8443/"}, "url"),
    ("url cgnat", {"url": "https://100.64.0.1/"}, "url"),
    ("url metadata", {"url": "https://169.254.169.254/latest"}, "url"),
    ("url multicast", {"url": "https://224.0.0.1/"}, "url"),
    ("url unspecified", {"url": "https://0.0.0.0/"}, "url"),
    ("url reserved", {"url": "https://240.0.0.1/"}, "url"),
    ("url v6 loopback", {"url": "https://[::1]/"}, "url"),
    ("url v6 mapped", {"url": "https://[::ffff:127.0.0.1]/"}, "url"),
    ("url v6 mapped private", {"url": "https://[::ffff:10.0.0.1]/"}, "url"),
    ("url v6 ula metadata", {"url": "https://[fd00:ec2::254]/"}, "url"),
    ("url v6 link-local", {"url": "https://[fe80::1]/"}, "url"),
    ("url v6 6to4 loopback", {"url": "https://[2002:7f00:1::]/"}, "url"),
    ("url localhost", {"url": "https://localhost/"}, "url"),
    ("url localhost dot", {"url": "https://LOCALHOST./"}, "url"),
    (
        "url localhost fullwidth",
        {"url": "https://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/"},
        "url",
    ),
    ("url sub.localhost", {"url": "https://app.localhost/"}, "url"),
    ("url .local", {"url": "https://printer.local/"}, "url"),
    ("url .internal", {"url": "https://metadata.google.internal/"}, "url"),
    ("url dotless", {"url": "https://redis/"}, "url"),
    ("event_types missing", {"event_types": DROP}, "event_types"),
    ("event_types string", {"event_types": "order.*"}, "event_types"),
    ("event_types empty", {"event_types": []}, "event_types"),
    ("event_types too many", {"event_types": [f"t{i}" for i in range(101)]}, "event_types"),
    ("event_types empty item", {"event_types": ["a", ""]}, "event_types[1]"),
    ("event_types non-str", {"event_types": ["a", "b", 3]}, "event_types[2]"),
    ("event_types space", {"event_types": ["order created"]}, "event_types[0]"),
    ("event_types bracket", {"event_types": ["order.[ab]"]}, "event_types[0]"),
    ("event_types too long", {"event_types": ["a" * 257]}, "event_types[0]"),
    ("tenant empty", {"tenant_id": ""}, "tenant_id"),
    ("tenant too long", {"tenant_id": "t" * 129}, "tenant_id"),
    ("tenant not str", {"tenant_id": 7}, "tenant_id"),
    ("tenant control", {"tenant_id": "a\nb"}, "tenant_id"),
    ("secret no prefix", {"secret": base64.b64encode(b"k" * 32).decode()}, "secret"),
    ("secret not base64", {"secret": "whsec_!!!!"}, "secret"),
    ("secret short", {"secret": "whsec_" + base64.b64encode(b"k" * 23).decode()}, "secret"),
    ("secret long", {"secret": "whsec_" + base64.b64encode(b"k" * 65).decode()}, "secret"),
    ("secret not str", {"secret": 123}, "secret"),
    ("headers list", {"headers": [["X-A", "b"]]}, "headers"),
    ("headers bad name", {"headers": {"X A": "b"}}, "headers"),
    ("headers name crlf", {"headers": {"X-A\r\n": "b"}}, "headers"),
    ("headers value crlf", {"headers": {"X-A": "b\r\nX-Evil: 1"}}, "headers.X-A"),
    ("headers value lf", {"headers": {"X-A": "b\nc"}}, "headers.X-A"),
    ("headers value nul", {"headers": {"X-A": "b\x00"}}, "headers.X-A"),
    ("headers value not str", {"headers": {"X-A": 1}}, "headers.X-A"),
    ("headers value too long", {"headers": {"X-A": "v" * 4097}}, "headers.X-A"),
    ("headers connection", {"headers": {"Connection": "close"}}, "headers.Connection"),
    ("headers keep-alive", {"headers": {"Keep-Alive": "1"}}, "headers.Keep-Alive"),
    ("headers te", {"headers": {"TE": "trailers"}}, "headers.TE"),
    ("headers trailer", {"headers": {"Trailer": "x"}}, "headers.Trailer"),
    (
        "headers transfer-encoding",
        {"headers": {"transfer-encoding": "x"}},
        "headers.transfer-encoding",
    ),
    ("headers upgrade", {"headers": {"Upgrade": "h2c"}}, "headers.Upgrade"),
    (
        "headers proxy-auth",
        {"headers": {"Proxy-Authorization": "x"}},
        "headers.Proxy-Authorization",
    ),
    ("headers host", {"headers": {"Host": "evil"}}, "headers.Host"),
    ("headers content-length", {"headers": {"Content-Length": "1"}}, "headers.Content-Length"),
    ("headers content-type", {"headers": {"Content-Type": "x"}}, "headers.Content-Type"),
    ("headers user-agent", {"headers": {"User-Agent": "x"}}, "headers.User-Agent"),
    ("headers webhook-", {"headers": {"Webhook-Signature": "x"}}, "headers.Webhook-Signature"),
    ("headers WEBHOOK-", {"headers": {"WEBHOOK-ID": "x"}}, "headers.WEBHOOK-ID"),
    ("headers duplicate", {"headers": {"X-A": "1", "x-a": "2"}}, "headers.x-a"),
    ("headers too many", {"headers": {f"X-{i}": "v" for i in range(51)}}, "headers"),
    ("disabled int", {"disabled": 1}, "disabled"),
    ("disabled str", {"disabled": "false"}, "disabled"),
    ("description not str", {"description": 5}, "description"),
    ("description too long", {"description": "d" * 1025}, "description"),
    ("timeout zero", {"timeout_s": 0}, "timeout_s"),
    ("timeout over", {"timeout_s": 60.5}, "timeout_s"),
    ("timeout bool", {"timeout_s": True}, "timeout_s"),
    ("timeout str", {"timeout_s": "5"}, "timeout_s"),
    ("timeout nan", {"timeout_s": float("nan")}, "timeout_s"),
    ("max_attempts zero", {"max_attempts": 0}, "max_attempts"),
    ("max_attempts 51", {"max_attempts": 51}, "max_attempts"),
    ("max_attempts float", {"max_attempts": 3.0}, "max_attempts"),
    ("max_attempts bool", {"max_attempts": True}, "max_attempts"),
    ("retry_schedule str", {"retry_schedule": "5s,1m"}, "retry_schedule"),
    ("retry_schedule empty", {"retry_schedule": []}, "retry_schedule"),
    ("retry_schedule too long", {"retry_schedule": ["1s"] * 31}, "retry_schedule"),
    ("retry_schedule bad", {"retry_schedule": ["5s", "soon"]}, "retry_schedule[1]"),
    ("retry_schedule zero", {"retry_schedule": ["0s"]}, "retry_schedule[0]"),
    ("retry_schedule negative", {"retry_schedule": [5, -1]}, "retry_schedule[1]"),
    ("retry_schedule 8d", {"retry_schedule": ["8d"]}, "retry_schedule[0]"),
    ("retry_schedule bool", {"retry_schedule": [True]}, "retry_schedule[0]"),
    ("retry_status_codes int", {"retry_status_codes": 409}, "retry_status_codes"),
    ("retry_status_codes 399", {"retry_status_codes": [409, 399]}, "retry_status_codes[1]"),
    ("retry_status_codes 600", {"retry_status_codes": [600]}, "retry_status_codes[0]"),
    ("retry_status_codes str", {"retry_status_codes": ["409"]}, "retry_status_codes[0]"),
    ("rate_limit zero", {"rate_limit_per_s": 0}, "rate_limit_per_s"),
    ("rate_limit over", {"rate_limit_per_s": 100001}, "rate_limit_per_s"),
    ("rate_limit bool", {"rate_limit_per_s": True}, "rate_limit_per_s"),
    ("max_in_flight zero", {"max_in_flight": 0}, "max_in_flight"),
    ("max_in_flight 101", {"max_in_flight": 101}, "max_in_flight"),
    ("max_in_flight bool", {"max_in_flight": True}, "max_in_flight"),
    ("ordering unknown", {"ordering": "fifo"}, "ordering"),
    ("ordering bool", {"ordering": True}, "ordering"),
    ("previous_secrets obj", {"previous_secrets": {}}, "previous_secrets"),
    (
        "previous_secrets bad secret",
        {"previous_secrets": [{"secret": "whsec_x", "expires_at": 1}]},
        "previous_secrets[0].secret",
    ),
    (
        "previous_secrets bad expiry",
        {"previous_secrets": [{"secret": OLD_SECRET, "expires_at": "tomorrow"}]},
        "previous_secrets[0].expires_at",
    ),
    (
        "previous_secrets extra key",
        {"previous_secrets": [{"secret": OLD_SECRET, "expires_at": 1, "x": 1}]},
        "previous_secrets[0].x",
    ),
    ("created_at bad", {"created_at": "yesterday"}, "created_at"),
    ("updated_at number", {"updated_at": 5}, "updated_at"),
]


@pytest.mark.parametrize(
    ("overrides", "field"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_field_is_named(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSubscription) as info:
        parse_subscription(body(**overrides), allow_insecure=False)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


@pytest.mark.parametrize("data", [None, [], "x", 1])
def test_body_must_be_object(data: object) -> None:
    with pytest.raises(InvalidSubscription) as info:
        parse_subscription(data, allow_insecure=True)
    assert info.value.field == "body"


VALID_URLS = [
    "https://example.com/hooks",
    "https://example.com:8443/a/b?x=1&y=2",
    "HTTPS://Example.COM/",
    "https://example.com./",
    "https://b\u00fccher.de/",
    "https://93.184.216.34/",
    "https://[2606:4700::1111]/",
]


@pytest.mark.parametrize("url", VALID_URLS)
def test_valid_urls(url: str) -> None:
    # Stored as delivery reads it: the scheme in lower case (HTTPS://... is https://...).
    scheme, rest = url.split(":", 1)
    assert (
        parse_subscription(body(url=url), allow_insecure=False).url == scheme.lower() + ":" + rest
    )


INSECURE_ONLY = [
    "http://example.com/",
    "http://localhost:8080/hook",
    "https://127.0.0.1/",
    "http://[::1]:9000/",
    "http://10.0.0.5/",
    "http://receiver/",
    "http://app.internal/",
]


@pytest.mark.parametrize("url", INSECURE_ONLY)
def test_allow_insecure(url: str) -> None:
    with pytest.raises(InvalidSubscription):
        parse_subscription(body(url=url), allow_insecure=False)
    assert parse_subscription(body(url=url), allow_insecure=True).url == url


@pytest.mark.parametrize(
    "url", ["https://u:p@localhost/", "http://localhost/#f", "file:///etc/passwd"]
)
def test_insecure_still_checks_syntax(url: str) -> None:
    with pytest.raises(InvalidSubscription) as info:
        parse_subscription(body(url=url), allow_insecure=True)
    assert info.value.field == "url"


@pytest.mark.parametrize(
    ("address", "forbidden"),
    [
        ("127.0.0.1", True),
        ("10.0.0.1", True),
        ("172.16.0.1", True),
        ("192.168.0.1", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),
        ("224.0.0.251", True),
        ("0.0.0.0", True),
        ("255.255.255.255", True),
        ("::1", True),
        ("::", True),
        ("fe80::1", True),
        ("fd00:ec2::254", True),
        ("ff02::1", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:169.254.169.254", True),
        ("2002:a00:1::", True),
        ("64:ff9b::7f00:1", True),
        ("8.8.8.8", False),
        ("93.184.216.34", False),
        ("2606:4700::1111", False),
    ],
)
def test_is_forbidden_address(address: str, forbidden: bool) -> None:
    assert is_forbidden_address(ipaddress.ip_address(address)) is forbidden


def test_id_from_endpoint_id() -> None:
    assert parse_subscription(body(id=DROP), allow_insecure=False, endpoint_id="ep_k").id == "ep_k"
    assert parse_subscription(body(), allow_insecure=False, endpoint_id="ep_1").id == "ep_1"
    for endpoint_id in ("ep_other", "bad id"):
        with pytest.raises(InvalidSubscription) as info:
            parse_subscription(body(), allow_insecure=False, endpoint_id=endpoint_id)
        assert info.value.field == "id"


def test_full_subscription_parses() -> None:
    s = parse_subscription(
        body(
            tenant_id="acme",
            event_types=["order.*", "invoice.paid", "order.*"],
            headers={"X-Team": "a", "Authorization": "Bearer t\tx"},
            disabled=True,
            description="orders",
            timeout_s=5,
            max_attempts=3,
            retry_schedule=["5s", "2m", 30, "250ms"],
            retry_status_codes=[409, 423],
            rate_limit_per_s=10,
            max_in_flight=4,
            previous_secrets=[{"secret": OLD_SECRET, "expires_at": "2030-01-01T00:00:00Z"}],
            created_at="2026-01-01T00:00:00Z",
            updated_at=None,
        ),
        allow_insecure=False,
    )
    assert s.event_types == ("order.*", "invoice.paid")
    assert s.headers == (("X-Team", "a"), ("Authorization", "Bearer t\tx"))
    assert s.timeout_s == 5.0 and isinstance(s.timeout_s, float)
    assert s.retry_schedule == (5.0, 120.0, 30.0, 0.25)
    assert s.retry_status_codes == frozenset({409, 423})
    assert s.previous_secrets == ((OLD_SECRET, 1893456000.0),)
    assert s.max_in_flight == 4 and s.disabled and s.updated_at is None


def test_defaults() -> None:
    s = parse_subscription(body(), allow_insecure=False)
    assert s.max_in_flight == 1
    assert s.disabled is False
    assert s.headers == () and s.previous_secrets == ()
    assert s.retry_schedule is None and s.retry_status_codes == frozenset()
    assert s.tenant_id is None


# -- secrets ---------------------------------------------------------------------------------


def test_generate_secret() -> None:
    first, second = generate_secret(), generate_secret()
    assert first != second
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first[6:], validate=True)) == 32


def test_missing_secret_is_generated() -> None:
    a = parse_subscription(body(secret=DROP), allow_insecure=False)
    b = parse_subscription(body(secret=None), allow_insecure=False)
    assert a.secret.startswith("whsec_") and a.secret != b.secret
    assert len(a.signing_keys(0)[0]) == 32


@pytest.mark.parametrize(
    "overrides",
    [
        {"secret": f"whsec_{MARKER}!"},
        {"secret": MARKER},
        {"secret": "whsec_" + base64.b64encode(MARKER.encode()).decode()},
        {"previous_secrets": [{"secret": f"whsec_{MARKER}", "expires_at": 1}]},
        {"headers": {"Authorization": f"Bearer {MARKER}\r\n"}},
    ],
)
def test_error_never_contains_secret(overrides: dict[str, Any]) -> None:
    with pytest.raises(InvalidSubscription) as info:
        parse_subscription(body(**overrides), allow_insecure=False)
    encoded = base64.b64encode(MARKER.encode()).decode()
    for text in (str(info.value), repr(info.value), info.value.message, info.value.field):
        assert MARKER not in text and encoded not in text
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_repr_hides_secrets() -> None:
    s = sub("ep", ("a",), previous_secrets=((OLD_SECRET, 1.0),))
    assert SECRET not in repr(s) and OLD_SECRET not in repr(s)


def test_to_dict_without_secrets() -> None:
    s = sub("ep", ("a",), previous_secrets=((OLD_SECRET, 2e9),))
    public = s.to_dict(include_secrets=False)
    assert "secret" not in public and "previous_secrets" not in public
    text = json.dumps(public)
    key_b64 = SECRET[6:]
    assert key_b64[:8] not in text and OLD_SECRET[6:][:8] not in text
    assert s.to_dict(include_secrets=True)["secret"] == SECRET


def test_to_dict_round_trip() -> None:
    original = parse_subscription(
        body(
            tenant_id="acme",
            headers={"X-A": "1"},
            timeout_s=2.5,
            max_attempts=4,
            retry_schedule=["250ms", "5s", "90s", "1.5s", "3h", "100000.5"],
            retry_status_codes=[409],
            rate_limit_per_s=3,
            previous_secrets=[{"secret": OLD_SECRET, "expires_at": 1_900_000_000.5}],
            created_at="2026-01-01T00:00:00.000Z",
        ),
        allow_insecure=False,
    )
    stored = original.to_dict(include_secrets=True)
    assert stored["retry_schedule"][:5] == ["250ms", "5s", "90s", "1.5s", "3h"]
    assert stored["previous_secrets"] == [
        {"secret": OLD_SECRET, "expires_at": "2030-03-17T17:46:40.500Z"}
    ]
    again = parse_subscription(json.loads(json.dumps(stored)), allow_insecure=False)
    assert again == original


def test_signing_keys() -> None:
    s = sub("ep", ("a",), previous_secrets=((OLD_SECRET, 200.0), (EXPIRED_SECRET, 50.0)))
    assert s.signing_keys(100.0) == [b"k" * 32, b"o" * 32]
    assert s.signing_keys(200.0) == [b"k" * 32]
    assert s.signing_keys(10.0) == [b"k" * 32, b"o" * 32, b"e" * 32]


def test_rotate_secret() -> None:
    s = sub("ep", ("a",), previous_secrets=((EXPIRED_SECRET, 50.0),))
    rotated = s.rotate_secret(now=100.0, grace_s=3600)
    assert rotated.secret != SECRET and rotated.secret.startswith("whsec_")
    assert rotated.previous_secrets == ((SECRET, 3700.0),)
    assert rotated.signing_keys(100.0)[1] == b"k" * 32
    with pytest.raises(InvalidSubscription):
        s.rotate_secret(now=0, grace_s=1, new_secret="whsec_short")


# -- the stored form -------------------------------------------------------------------------


def test_from_stored() -> None:
    raw = orjson.dumps(body(url="http://localhost:9000/h", id=DROP))
    s = parse_stored(raw, b"ep_1")
    assert s.id == "ep_1" and s.url == "http://localhost:9000/h"
    assert parse_stored(orjson.dumps(s.to_dict(include_secrets=True)), "ep_1") == s


@pytest.mark.parametrize(
    ("raw", "key", "field"),
    [
        (b"{not json", b"ep_1", "body"),
        (b"[]", b"ep_1", "body"),
        (orjson.dumps(body()), b"ep_2", "id"),
        (orjson.dumps(body(secret=DROP)), b"ep_1", "secret"),
        (orjson.dumps(body(extra=1)), b"ep_1", "extra"),
    ],
)
def test_from_stored_invalid(raw: bytes, key: bytes, field: str) -> None:
    with pytest.raises(InvalidSubscription) as info:
        parse_stored(raw, key)
    assert info.value.field == field


# -- the index -------------------------------------------------------------------------------


def ids(subs: list[Subscription]) -> list[str]:
    return [s.id for s in subs]


@pytest.mark.parametrize(
    ("patterns", "event_type", "matches"),
    [
        (("order.created",), "order.created", True),
        (("order.created",), "order.created.v2", False),
        (("order.created",), "Order.created", False),
        (("order.*",), "order.created", True),
        (("order.*",), "order.created.v2", True),
        (("order.*",), "order.", True),
        (("order.*",), "order", False),
        (("order.*",), "orders.created", False),
        (("order*",), "orders.created", True),
        (("*",), "anything.at.all", True),
        (("**",), "x", True),
        (("order.?",), "order.a", True),
        (("order.?",), "order.ab", False),
        (("*.created",), "order.created", True),
        (("*.created",), "order.deleted", False),
        (("order.*.v2",), "order.created.v2", True),
        (("a?c*",), "abcdef", True),
        (("x", "y.*"), "y.z", True),
        (("x", "y.*"), "z", False),
    ],
)
def test_match_patterns(patterns: tuple[str, ...], event_type: str, matches: bool) -> None:
    index = SubscriptionIndex([sub("ep", patterns)])
    assert ids(index.match(event_type, None)) == (["ep"] if matches else [])
    assert any(fnmatchcase(event_type, p) for p in patterns) is matches  # the reference


@pytest.mark.parametrize(
    ("sub_tenant", "event_tenant", "matches"),
    [
        (None, None, True),
        ("acme", "acme", True),
        ("acme", None, False),
        (None, "acme", False),
        ("acme", "other", False),
    ],
)
def test_tenant_fails_closed(
    sub_tenant: str | None, event_tenant: str | None, matches: bool
) -> None:
    index = SubscriptionIndex([sub("ep", ("*",), sub_tenant)])
    assert ids(index.match("a.b", event_tenant)) == (["ep"] if matches else [])


def test_match_sorted_without_duplicates() -> None:
    index = SubscriptionIndex(
        [
            sub("c", ("order.created", "order.*", "*", "o?der.*")),
            sub("a", ("order.*",)),
            sub("b", ("invoice.*",)),
        ]
    )
    assert ids(index.match("order.created", None)) == ["a", "c"]


def test_disabled_still_matched_so_delivery_can_dead_letter_it() -> None:
    index = SubscriptionIndex([sub("ep", ("*",), disabled=True)])
    assert ids(index.match("x", None)) == ["ep"]
    assert len(index) == 1 and index.get("ep") is not None


def test_update_reindexes() -> None:
    index = SubscriptionIndex()
    assert index.put(sub("ep", ("order.*", "a?"), "acme")) is None
    old = index.put(sub("ep", ("invoice.paid",), "other"))
    assert old is not None and old.tenant_id == "acme"
    assert index.match("order.created", "acme") == []
    assert index.match("ab", "acme") == []
    assert ids(index.match("invoice.paid", "other")) == ["ep"]
    assert len(index) == 1
    assert index._tenants.keys() == {"other"}


def test_remove() -> None:
    index = SubscriptionIndex([sub("a", ("x",)), sub("b", ("x", "y*"))])
    removed = index.remove("b")
    assert removed is not None and removed.id == "b"
    assert index.remove("b") is None
    assert ids(index.match("x", None)) == ["a"]
    assert index.match("yz", None) == []
    assert "b" not in index and "a" in index
    assert ids(index.all()) == ["a"] == [s.id for s in index]
    index.remove("a")
    assert len(index) == 0 and index._tenants == {}


def test_index_against_brute_force() -> None:
    rng = random.Random(7)
    tenants = [None, "acme", "globex", "initech"]
    words = ["order", "invoice", "user", "payment"]
    actions = ["created", "updated", "deleted", "paid"]
    shapes = [
        lambda w, a: f"{w}.{a}",
        lambda w, a: f"{w}.*",
        lambda w, a: f"{w}*",
        lambda w, a: "*",
        lambda w, a: f"*.{a}",
        lambda w, a: f"{w}.?{a[1:]}",
        lambda w, a: f"{w}.{a}.v?",
    ]
    subs = []
    for i in range(10_000):
        n = rng.randint(1, 3)
        patterns = tuple(
            rng.choice(shapes)(rng.choice(words), rng.choice(actions)) for _ in range(n)
        )
        subs.append(sub(f"ep_{i:05d}", patterns, rng.choice(tenants), disabled=i % 97 == 0))
    index = SubscriptionIndex(subs)
    # Churn: updates and removals must leave no stale entries behind.
    for i in range(0, 10_000, 13):
        subs[i] = sub(subs[i].id, ("user.deleted",), rng.choice(tenants))
        index.put(subs[i])
    live = {s.id: s for s in subs}
    for i in range(0, 10_000, 17):
        index.remove(f"ep_{i:05d}")
        live.pop(f"ep_{i:05d}", None)
    assert len(index) == len(live)

    event_types = [f"{w}.{a}" for w in words for a in actions]
    event_types += ["order.created.v2", "orders", "other.thing", "", "user.deleted"]
    for tenant in [*tenants, "nobody"]:
        for event_type in event_types:
            expected = sorted(
                s.id
                for s in live.values()
                if s.tenant_id == tenant and any(fnmatchcase(event_type, p) for p in s.event_types)
            )
            assert ids(index.match(event_type, tenant)) == expected, (tenant, event_type)


# -- glob routing against fnmatchcase -------------------------------------------------------

_glob_chars = st.sampled_from(list("ab.-:/*?"))  # what validation lets through
_type_chars = st.sampled_from(list("ab.-[]!^*?"))


@hyp_settings(max_examples=400, deadline=None)
@given(
    patterns=st.lists(st.text(_glob_chars, max_size=8), min_size=1, max_size=12),
    types=st.lists(st.text(_type_chars, max_size=8), min_size=1, max_size=12),
)
def test_glob_routing_is_exactly_fnmatchcase(patterns: list[str], types: list[str]) -> None:
    """Whatever the patterns (stars and question marks anywhere, repeated, adjacent),
    the index picks exactly the subscriptions ``fnmatchcase`` would."""
    subs = [sub(f"ep{i}", (p,)) for i, p in enumerate(patterns) if p]
    index = SubscriptionIndex(subs)
    for event_type in types:
        want = sorted(s.id for s in subs if fnmatchcase(event_type, s.event_types[0]))
        assert [s.id for s in index.match(event_type, None)] == want, event_type
    for s in subs[::2]:
        index.remove(s.id)  # unindexing leaves the rest exact
    for event_type in types:
        want = sorted(s.id for s in subs[1::2] if fnmatchcase(event_type, s.event_types[0]))
        assert [s.id for s in index.match(event_type, None)] == want, event_type


def test_routing_tries_few_globs_among_50000_non_prefix_globs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Routing cost is flat: an event is tested against the globs that share its literal
    head or tail, not against all 50,000 (fnmatch one by one took seconds per event past its
    32,768-entry cache). The time itself is bench row 6d's job."""
    subs = [sub(f"ep{i}", (f"svc{i}.*.created", f"*.thing{i}")) for i in range(25_000)]
    index = SubscriptionIndex(subs)
    tried: list[str] = []
    real_test = index_module._test

    def counting(group: Any, pattern: str, event_type: str) -> bool:
        tried.append(pattern)
        return real_test(group, pattern, event_type)

    monkeypatch.setattr(index_module, "_test", counting)
    for i in range(0, 25_000, 250):
        tried.clear()
        assert [s.id for s in index.match(f"svc{i}.order.created", None)] == [f"ep{i}"]
        assert len(tried) <= 3, tried
        tried.clear()
        assert [s.id for s in index.match(f"x.thing{i}", None)] == [f"ep{i}"]
        assert len(tried) <= 3, tried


def test_ordering_defaults_to_best_effort_and_strict_round_trips() -> None:
    base = {"url": "https://example.com/h", "event_types": ["a"]}
    s = parse_subscription(base, allow_insecure=False, endpoint_id="ep_o")
    assert s.ordering == "best_effort" and not s.strict
    strict = parse_subscription(
        {**base, "ordering": "strict", "max_in_flight": 8}, allow_insecure=False, endpoint_id="ep_o"
    )
    assert strict.strict and strict.max_in_flight == 8 and strict.lane_width == 1
    assert strict.to_dict(include_secrets=False)["ordering"] == "strict"
    assert parse_stored(orjson.dumps(strict.to_dict(include_secrets=True)), "ep_o") == strict


def test_a_refused_insecure_target_names_the_setting_that_allows_it() -> None:
    """An http:// or local URL in production mode says which switch allows it in development
    (a newcomer running the worker by hand got only "must use https")."""
    from webhook_stream.http.urls import validate_url

    for url in ("http://example.com/in", "https://127.0.0.1/in", "https://localhost/in"):
        with pytest.raises(InvalidSubscription) as refused:
            validate_url(url, allow_insecure=False)
        assert "WEBHOOK_STREAM_ALLOW_INSECURE_TARGETS=1" in str(refused.value), url
