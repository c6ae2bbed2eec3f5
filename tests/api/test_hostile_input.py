"""Hostile input on every route: a 4xx in the one error shape, never a 5xx or a traceback.

Property-based (hypothesis) against the real worker: each route of the worker's own
OpenAPI document, its path and query parameters, ``Authorization``, ``If-Match``,
``Content-Type`` and the body filled with hostile bytes, sent over a raw socket (no client
library tidies them up). Then the worker's log must hold no traceback, and the status
view's pending-answer map must be empty again.
"""

from __future__ import annotations

import base64
import json
import re
import socket
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import TOKEN, Receiver, Worker, eventually, uid

_HOSTILE = [
    b"\xff",
    b"\xff\xfe\x00",
    b"\x00",
    b"\xc3\x28",
    "\u2028".encode(),
    "\u200b".encode(),
    b"%",
    b"9" * 40,
    b"-" + b"9" * 40,
    b"1e999",
    b"NaN",
    b"..",
    b"'\"",
    b"{}",
    b"A" * 5000,
    base64.urlsafe_b64encode(b"9" * 30 + b":" + b"9" * 30).rstrip(b"="),
    base64.urlsafe_b64encode(b"1:" + b"9" * 25).rstrip(b"="),
    base64.urlsafe_b64encode(b"\xff\xfe").rstrip(b"="),
    base64.urlsafe_b64encode(b"999999999999999|x").rstrip(b"="),
]

hostile = st.one_of(st.sampled_from(_HOSTILE), st.binary(max_size=60))
json_value = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=30),
        st.sampled_from(["HTTPS://example.com/x", "a\u2028b", "t\u200bx", "\x00", "whsec_x"]),
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
_BODY_KEYS = [
    "id",
    "url",
    "event_types",
    "tenant_id",
    "headers",
    "secret",
    "timeout_s",
    "max_attempts",
    "retry_schedule",
    "rate_limit_per_s",
    "source",
    "topic",
    "since",
    "until",
    "dry_run",
    "endpoint_id",
    "delivery_id",
    "description",
    "expires_in",
    "schema",
]
body = st.one_of(
    st.binary(max_size=200),
    st.dictionaries(st.sampled_from(_BODY_KEYS) | st.text(max_size=10), json_value, max_size=6).map(
        lambda d: json.dumps(d).encode()
    ),
)


def _header_safe(value: bytes) -> bytes:
    """A header value the request framing survives: no CR, LF (request smuggling is not
    what is tested here)."""
    return value.replace(b"\r", b"").replace(b"\n", b"")


def _path_safe(value: bytes) -> str:
    """A path segment: every byte percent-encoded (a '/' would be another route)."""
    return quote(value.replace(b"/", b""), safe="") or "x"


def raw_request(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, payload


Operation = tuple[str, str, list[str], bool]


def _operations(document: dict[str, Any]) -> list[Operation]:
    """(method, path template, query parameter names, management route?) of every route."""
    out = []
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            query = [p["name"] for p in op.get("parameters", []) if p.get("in") == "query"]
            out.append((method.upper(), path, query, bool(op.get("security"))))
    return out


def _check(status: int, headers: dict[str, str], payload: bytes, what: str, managed: bool) -> None:
    assert status < 500 or status == 503, f"{status} for {what}: {payload[:300]!r}"
    if not managed:  # open routes (health, documents, console files): no 5xx is the rule
        return
    if status == 503:  # only the documented "retry" answer
        assert "retry-after" in headers, what
    if status >= 400 and headers.get("content-type", "").startswith("application/json"):
        error = orjson.loads(payload)["error"]
        assert error["code"] and error["message"], what
        if status == 401:
            assert headers.get("www-authenticate", "").startswith("Bearer"), what
    elif status >= 400:
        # Only the HTTP parser itself answers in another shape: a request it cannot read.
        assert status == 400, f"{status} {headers} for {what}: {payload[:300]!r}"


async def test_hostile_input_on_every_route_gets_a_4xx_never_a_5xx_or_a_traceback(
    worker: Worker, receiver: Receiver
) -> None:
    known = uid("ep_fuzz")
    await worker.create_subscription(id=known, url=receiver.url("/fuzz"), event_types=["fz.*"])
    async with httpx.AsyncClient(base_url=worker.url) as client:
        operations = _operations((await client.get("/openapi.json")).json())
    assert len(operations) > 15
    log_from = len(worker.log_text())

    @settings(
        max_examples=250,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(
        op=st.sampled_from(operations),
        param=st.one_of(st.just(known.encode()), hostile),
        query=st.lists(st.tuples(st.integers(0, 20), hostile), max_size=4),
        auth=st.one_of(
            st.just(f"Bearer {TOKEN}".encode()),
            hostile.map(lambda h: b"Bearer " + h),
            hostile,
        ),
        if_match=st.none() | hostile,
        content_type=st.sampled_from([b"application/json", b"text/plain"]) | hostile,
        payload=body,
    )
    def one(
        op: Operation,
        param: bytes,
        query: list[tuple[int, bytes]],
        auth: bytes,
        if_match: bytes | None,
        content_type: bytes,
        payload: bytes,
    ) -> None:
        method, template, names, managed = op
        path = re.sub(r"\{[^}]+\}", lambda _: _path_safe(param), template)
        if names and query:
            pairs = [f"{names[i % len(names)]}={quote(v, safe='')}" for i, v in query]
            path += "?" + "&".join(pairs)
        lines = [
            f"{method} {path} HTTP/1.1".encode(),
            f"Host: 127.0.0.1:{worker.port}".encode(),
            b"Connection: close",
            b"Authorization: " + _header_safe(auth),
            b"Content-Type: " + _header_safe(content_type),
            f"Content-Length: {len(payload)}".encode(),
        ]
        if if_match is not None:
            lines.append(b"If-Match: " + _header_safe(if_match))
        request = b"\r\n".join(lines) + b"\r\n\r\n" + payload
        status, headers, answer = raw_request(worker.port, request)
        _check(status, headers, answer, f"{method} {path[:200]}", managed)

    one()
    log = worker.log_text()[log_from:]
    assert "Traceback" not in log, log[-4000:]
    assert " failed again: " not in log, log[-4000:]


async def test_a_bad_attempts_cursor_is_a_400_and_leaves_nothing_pending(
    worker: Worker, receiver: Receiver
) -> None:
    known = uid("ep_cursor")
    await worker.create_subscription(id=known, url=receiver.url("/cur"), event_types=["cu.*"])
    over_64_bits = base64.urlsafe_b64encode(b"1:" + b"9" * 25).decode().rstrip("=")
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=worker.url, headers=bearer, timeout=15) as client:
        for _ in range(50):
            r = await client.get(f"/subscriptions/{known}/attempts", params={"after": over_64_bits})
            assert r.status_code == 400, r.text
            assert r.json()["error"]["field"] == "after"
        # A good page still answers (the status view is alive), then nothing waits.
        r = await client.get(f"/subscriptions/{known}/attempts")
        assert r.status_code in (200, 503), r.text

        async def nothing_pending() -> bool:
            text = (await client.get("/metrics")).text
            found = re.search(r"^webhook_status_queries_pending (\S+)$", text, re.M)
            assert found is not None, "the metric is missing"
            return float(found.group(1)) == 0

        await eventually(nothing_pending)


async def test_a_bearer_token_with_bytes_outside_ascii_is_a_401_with_a_challenge(
    worker: Worker,
) -> None:
    log_from = len(worker.log_text())
    for value in (b"\xff", b"Bearer \xff", b"Bearer abc\xff\xfe", b"Bearer \xc3\xa9t\xc3\xa9"):
        request = (
            b"GET /subscriptions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Authorization: " + value + b"\r\n\r\n"
        )
        status, headers, payload = raw_request(worker.port, request)
        assert status == 401, (status, payload)
        assert headers["www-authenticate"] == 'Bearer realm="webhook-stream"'
        assert orjson.loads(payload)["error"]["code"] == "unauthorized"
    assert "Traceback" not in worker.log_text()[log_from:]
