"""For each field a tenant can set, its worst accepted value on one tenant's endpoints,
and each way a receiver can misbehave, while another tenant's deliveries are measured.

One real worker at the production budgets; the victim tenant ``vic`` has one endpoint on
a receiver of its own. Each row creates the attacker's endpoints, floods them, waits until
the attack is in place (the attacker's receiver is being called, or its deliveries are
being refused), then requires the victim's events within 5 s, and deletes the attacker.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.isolation.conftest import Iso
from tests.isolation.test_limits import WORST
from tests.support import Received, Receiver, eventually
from tests.tls import make_client_pki, make_pki, server_context
from webhook_stream.subscriptions.filters import MAX_FILTER_BYTES
from webhook_stream.subscriptions.model import generate_secret
from webhook_stream.subscriptions.validation import MIN_RATE_LIMIT_PER_S

#: Set when the module is done: hanging and dripping handlers end.
_release = asyncio.Event()
#: Receivers on other loopback addresses (other hosts: the per-host pool is not the bound).
_hosts: list[Receiver] = []


async def _hang(_: Received) -> int:
    await _release.wait()
    return 200


async def _drip(got: Received) -> web.StreamResponse:
    """200 at once, then a body of one byte every half second (never finished in time)."""
    assert got.request is not None
    resp = web.StreamResponse(status=200, headers={"content-length": "100000"})
    await resp.prepare(got.request)
    for _ in range(200):
        if _release.is_set():
            break
        await resp.write(b".")
        try:
            await asyncio.wait_for(_release.wait(), 0.5)  # the drip's pace, not a sync
        except TimeoutError:
            pass
    return resp


def _filter_at_limits_that_matches() -> dict[str, Any]:
    """The most conditions and bytes a filter may have, every one of them tried on each
    event: 125 alternatives that fail (absent paths), then one that holds."""
    alternatives: list[Any] = [{f"k{j}": {"$in": [j, "x"]}} for j in range(125)]
    spec: dict[str, Any] = {"data": {"$or": [*alternatives, {"i": {"$gte": 0}}]}}
    spec["data"]["pad"] = {"$neq": ""}
    spec["data"]["pad"]["$neq"] = "p" * (MAX_FILTER_BYTES - len(orjson.dumps(spec)))
    return spec


def _status(code: int, **headers: str) -> Callable[[Received], web.Response]:
    return lambda _: web.Response(status=code, headers=headers, text="no")


@dataclass
class Row:
    name: str
    #: Settings of each attacker endpoint (beyond id, url, event_types, tenant_id).
    settings: dict[str, Any]
    #: What the attacker's receiver does.
    script: Callable[[Received], Any] | int = 200
    endpoints: int = 1
    events: int = 300
    #: Attacker calls that show the attack is in place (0: wait for dead letters instead).
    calls: int = 1
    #: Each endpoint on a receiver of its own host (127.0.0.2, ...).
    own_hosts: bool = False
    #: The endpoints aim at the victim's receiver (its host and port), another path.
    victim_host: bool = False
    #: OAuth2 with the receiver's ``script`` as the token endpoint (the hook is never reached).
    token: bool = False
    #: Each endpoint presents a client certificate of its own (its own CA) over https to a
    #: receiver that requires one.
    mtls: bool = False


ROWS = [
    # -- fields, at their worst accepted value (tests/isolation/test_limits.py: WORST)
    # Ten endpoints x 500: on main they held 4,500 of the worker's 5,000 and it stopped.
    # Now the tenant holds 1,000: at least two endpoints' 500 each (which ones, and how
    # many calls hang, depends on how the partitions' records are read), the rest parks.
    Row("url: a hanging receiver, ten endpoints (tenant budget)", {}, _hang, 10, 500, 2),
    Row(
        "timeout_s 60 + max_in_flight 100: a hanging receiver called 100 at a time",
        {"timeout_s": 60, "max_in_flight": 100},
        _hang,
        endpoints=2,
        events=150,
        calls=8,  # half of HTTP_POOL_PER_HOST per tenant and host: the rest wait
    ),
    Row(
        "max_in_flight on sixteen hosts: 128 hanging calls wanted (tenant in-flight cap)",
        {"timeout_s": 60, "max_in_flight": 8},
        _hang,
        endpoints=16,
        events=50,
        calls=100,
        own_hosts=True,
    ),
    Row(
        "url: the other tenant's receiver host, a path that hangs (per-host share)",
        {"timeout_s": 60, "max_in_flight": 100},
        _hang,
        endpoints=2,
        events=100,
        calls=8,  # half of HTTP_POOL_PER_HOST (16): the victim keeps the other half
        victim_host=True,
    ),
    Row("rate_limit_per_s at the floor", {"rate_limit_per_s": MIN_RATE_LIMIT_PER_S}),
    Row(
        "max_attempts 50 on 20 steps of 100ms: a retry storm",
        {"max_attempts": 50, "retry_schedule": ["100ms"] * 20},
        500,
        calls=50,
    ),
    Row(
        "retry_status_codes: every 4xx/5xx retried",
        {"retry_status_codes": WORST["retry_status_codes"][0], "retry_schedule": ["100ms"]},
        404,
        calls=20,
    ),
    Row("ordering strict: a head that keeps failing", {"ordering": "strict"}, 500, calls=1),
    Row(
        "id, event_types, headers, description at their longest",
        {
            "id": "x" * 120,
            "event_types": WORST["event_types"][0],
            "headers": WORST["headers"][0],
            "description": WORST["description"][0],
        },
        calls=300,
    ),
    Row("disabled: every delivery refused", {"disabled": True}, calls=0),
    Row(
        "signature_scheme both: two signatures per request", {"signature_scheme": "both"}, calls=300
    ),
    Row(
        "filter: at its limits (256 conditions, 8 KiB), all tried on every event",
        {"filter": _filter_at_limits_that_matches()},
        calls=300,
    ),
    Row(
        "auth: an OAuth2 token endpoint that hangs, ten endpoints",
        {"timeout_s": 60},
        _hang,
        endpoints=10,
        # 900 deliveries: within the tenant's 1,000, so all ten endpoints are held whatever
        # the order their partitions are read in, and each wants its token at once.
        events=90,
        calls=8,  # one token request per endpoint, under the tenant's share of the host (8)
        token=True,
    ),
    Row(
        "tls: a client certificate of its own on each of ten endpoints, required",
        {},
        endpoints=10,
        events=90,  # within the tenant's 1,000: all ten deliver, each on its own identity
        calls=900,
        mtls=True,
    ),
    # -- receivers misbehaving
    Row(
        "receiver: 429 with Retry-After of 30 years",
        {},
        _status(429, **{"Retry-After": "999999999"}),
    ),
    Row("receiver: a slow-drip body", {}, _drip, calls=1),
    Row(
        "receiver: a 429 storm (Retry-After: 0)",
        {"retry_schedule": ["100ms"], "max_attempts": 50},
        _status(429, **{"Retry-After": "0"}),
        calls=50,
    ),
]


@pytest.fixture(scope="module", autouse=True)
async def _released_at_end(iso: Iso) -> Any:
    # Depends on iso: torn down first, so the worker stops with nothing left hanging.
    _release.clear()
    yield
    _release.set()
    for receiver in _hosts:
        await receiver.stop()


def _id(row: Row) -> str:
    name = row.name if row.name.startswith(("receiver", "url")) else row.name.split(":")[0]
    return re.sub(r"\W+", "_", name)[:48].strip("_")


@pytest.mark.parametrize("row", ROWS, ids=[_id(r) for r in ROWS])
async def test_worst_value_on_one_tenant_leaves_the_other_on_time(
    iso: Iso, row: Row, tmp_path: Path
) -> None:
    n = ROWS.index(row)
    tenant, path = f"atk{n}", f"/atk{n}"
    clients = [make_client_pki(f"atk{n}_{i}") for i in range(row.endpoints)] if row.mtls else []
    server_ca: str | None = None
    # Receivers of its own (a hanging one of an earlier row keeps its host's connections).
    if row.victim_host:
        shared = iso.victim
    else:
        tls = None
        if row.mtls:
            server = make_pki(tmp_path, f"atk{n}-server")
            server_ca = server.ca.read_text()
            tls = server_context(server, [client.ca for client in clients])
        shared = await Receiver(tls=tls).start()
        _hosts.append(shared)
    shared.script[path] = row.script
    ids, receivers = [], [shared]
    for i in range(row.endpoints):
        endpoint_id = row.settings.get("id", f"atk{n}") + f"_{i}"
        receiver = shared
        if row.own_hosts:
            receiver = await Receiver(host=f"127.0.0.{i + 2}").start()
            receiver.script[path] = row.script
            _hosts.append(receiver)
            receivers.append(receiver)
        ids.append(endpoint_id)
        settings = {**row.settings, "url": receiver.url(path)}
        if row.mtls:
            settings["tls"] = clients[i].endpoint_tls(server_ca)
        if row.token:
            settings["url"] = receiver.url(path + "/hook")
            settings["auth"] = {
                "type": "oauth2_client_credentials",
                "token_url": receiver.url(path),
                "client_id": "atk",
                "client_secret": generate_secret(),
            }
        await iso.create(
            **{
                "event_types": [f"atk{n}.*"],
                **settings,
                "id": endpoint_id,
                "tenant_id": tenant,
            }
        )

    def calls() -> int:
        return sum(len(r.at(path)) for r in receivers)

    dead = await iso.metric("webhook_deliveries_total", '{outcome="dead_lettered"}')
    await iso.flood(tenant, f"atk{n}.x", row.events)
    if row.calls:
        await eventually(lambda: calls() >= row.calls, timeout=30)
    else:

        async def refused() -> bool:
            now = await iso.metric("webhook_deliveries_total", '{outcome="dead_lettered"}')
            return now - dead >= 10

        await eventually(refused, timeout=30, interval=0.2)

    lat = await iso.victim_latencies(5)
    print(f"{row.name}: victim {max(lat) * 1000:.0f} ms max")
    assert max(lat) < 5.0, (row.name, lat)
    if row.own_hosts:
        # Sixteen endpoints want 128 calls at once (8 each, one host each); the tenant
        # gets MAX_IN_FLIGHT_PER_TENANT (100), and none of them has ended yet.
        assert calls() == 100, calls()
    if row.victim_host or row.token:
        # Ten token requests (or 200 calls) wanted on one host: the tenant's share is 8.
        assert calls() == 8, calls()
    for endpoint_id in ids:
        await iso.delete(endpoint_id)


async def test_refused_values_answer_400_naming_the_field(iso: Iso) -> None:
    base = {"url": iso.attacker.url("/x"), "event_types": ["a.*"], "tenant_id": "atk_bad"}
    cases = {
        "rate_limit_per_s": {"rate_limit_per_s": 1e-9},
        "retry_schedule": {"retry_schedule": ["7d"] * 20},
        "max_attempts": {"retry_schedule": ["1d"], "max_attempts": 50},
        "headers": {"headers": {f"X-{i}": "v" * 4000 for i in range(5)}},
    }
    async with iso.worker.api() as client:
        for field, body in cases.items():
            r = await client.post("/subscriptions", json={**base, **body})
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert error["code"] == "invalid" and error["field"].startswith(field), error
            assert error["message"]


async def test_a_tenant_at_max_endpoints_per_tenant_gets_409(iso: Iso) -> None:
    limit = 1000  # the production default of WEBHOOK_STREAM_MAX_ENDPOINTS_PER_TENANT
    before = (await iso.health())["subscriptions"]
    for i in range(limit):  # produced straight to the topic: the count is the table's
        sub = {
            "id": f"many_{i}",
            "url": "https://hooks.example.com/x",
            "event_types": ["many.*"],
            "tenant_id": "many",
            "secret": generate_secret(),
        }
        await iso.kafka.send("webhooks.subscriptions", sub, key=sub["id"])

    async def loaded() -> bool:
        return (await iso.health())["subscriptions"] >= before + limit

    await eventually(loaded, timeout=30, interval=0.3)
    body = {"url": iso.attacker.url("/x"), "event_types": ["many.*"], "tenant_id": "many"}
    async with iso.worker.api() as client:
        r = await client.post("/subscriptions", json=body)
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "limit_exceeded"
        assert r.json()["error"]["field"] == "tenant_id"
        # Another tenant is not counted against it.
        r = await client.post("/subscriptions", json={**body, "tenant_id": "few"})
        assert r.status_code == 201, r.text
        await client.delete(f"/subscriptions/{r.json()['id']}")
        r = await client.delete("/subscriptions/many_0")
        assert r.status_code in (200, 202), r.text
        r = await client.post("/subscriptions", json=body)  # room again
        assert r.status_code == 201, r.text
