"""The routes the console reads, on the real broker and worker, scoped per tenant.

``GET /deadletters``, ``/endpoint-stats``, ``/overview``, ``/whoami``, the attempt log's
filters and cursor, replay of one dead letter, and ``/ui/`` itself. Every response is
checked against the worker's OpenAPI document.
"""

from __future__ import annotations

import httpx
import pytest

from tests.api.conformance import Conformance
from tests.support import SECRETS_USED, TOKEN, Receiver, Worker, eventually, uid


@pytest.fixture(scope="module")
async def conformance(worker: Worker) -> Conformance:
    async with httpx.AsyncClient(base_url=worker.url) as client:
        return Conformance((await client.get("/openapi.json")).json())


async def _create(client: httpx.AsyncClient, **body: object) -> str:
    r = await client.post("/subscriptions", json={"event_types": ["never.*"], **body})
    assert r.status_code == 201, r.text
    SECRETS_USED.append(r.json()["secret"])
    return str(r.json()["id"])


async def _status(client: httpx.AsyncClient, delivery: str, expected: str) -> None:
    async def reached() -> bool:
        r = await client.get(f"/deliveries/{delivery}")
        return r.status_code == 200 and r.json()["status"] == expected

    await eventually(reached, timeout=30, interval=0.2)


async def test_dead_letters_listed_per_tenant_paginated_filtered_and_replayed_one_by_one(
    worker: Worker, receiver: Receiver, conformance: Conformance
) -> None:
    ta, tb = uid("dla"), uid("dlb")
    tok_a = (await worker.issue_token(ta))["token"]
    tok_b = (await worker.issue_token(tb))["token"]
    path = "/" + uid("dlq")
    receiver.script[path] = 500
    admin = conformance.client(worker.url, TOKEN)
    a = conformance.client(worker.url, tok_a)
    b = conformance.client(worker.url, tok_b)
    async with admin, a, b:
        ep_a = await _create(a, url=receiver.url(path), max_attempts=1)
        ep_b = await _create(b, url=receiver.url(path), max_attempts=1)
        sent = []
        for _ in range(3):
            sent.append((await a.post(f"/subscriptions/{ep_a}/test")).json()["delivery_id"])
        sent_b = (await b.post(f"/subscriptions/{ep_b}/test")).json()["delivery_id"]
        for d in sent:
            await _status(a, d, "dead_lettered")
        await _status(b, sent_b, "dead_lettered")

        async def listed(client: httpx.AsyncClient, **params: object) -> list[dict]:
            r = await client.get("/deadletters", params=params)
            assert r.status_code == 200, r.text
            return r.json()["items"]

        # A tenant sees its own only; the admin sees both, and filters by tenant.
        mine = await eventually(lambda: _at_least(listed(a), 3))
        assert {d["delivery_id"] for d in mine} == set(sent)
        assert all(d["tenant_id"] == ta and d["endpoint_id"] == ep_a for d in mine)
        assert mine[0]["reason"] and mine[0]["last_status_code"] == 500
        assert mine[0]["event_type"] == "webhook.test"
        assert [d["delivery_id"] for d in await listed(b)] == [sent_b]
        assert {d["delivery_id"] for d in await listed(admin, tenant_id=ta)} == set(sent)
        assert sent_b in {d["delivery_id"] for d in await listed(admin, endpoint_id=ep_b)}
        # Naming another tenant is 403; another tenant's endpoint 404, as a missing one.
        r = await a.get("/deadletters", params={"tenant_id": tb})
        assert r.status_code == 403 and r.json()["error"]["field"] == "tenant_id"
        r = await a.get("/deadletters", params={"endpoint_id": ep_b})
        assert r.status_code == 404 and r.json()["error"]["field"] == "endpoint_id"

        # Newest first, pages of one, every dead letter once.
        seen, after = [], None
        while True:
            params = {"limit": 1, **({"after": after} if after else {})}
            r = await a.get("/deadletters", params=params)
            seen += r.json()["items"]
            after = r.json()["next"]
            if after is None:
                break
        assert [d["delivery_id"] for d in seen] == [d["delivery_id"] for d in mine]
        stamps = [d["dead_lettered_at"] for d in seen]
        assert stamps == sorted(stamps, reverse=True)
        # Time filters (ISO-8601 or an age), and a bad one names the field.
        assert await listed(a, since="1h") == mine
        assert await listed(a, until="2000-01-01T00:00:00Z") == []
        newest = seen[1]["dead_lettered_at"]
        assert await listed(a, since=newest) == [d for d in seen if d["dead_lettered_at"] >= newest]
        r = await a.get("/deadletters", params={"since": "soon"})
        assert r.status_code == 400 and r.json()["error"]["field"] == "since"

        # Replay one: that delivery only, delivered, and it leaves the list.
        receiver.script[path] = 200
        one = sent[1]
        r = await a.post(
            "/replay", json={"source": "deadletter", "delivery_id": one, "since": "10m"}
        )
        assert r.status_code == 200 and r.json()["requeued"] == 1, r.text
        await _status(a, one, "succeeded")
        left = await eventually(lambda: _exactly(listed(a), 2))
        assert {d["delivery_id"] for d in left} == {sent[0], sent[2]}
        r = await a.post("/replay", json={"source": "events", "delivery_id": one})
        assert r.status_code == 400 and r.json()["error"]["field"] == "delivery_id"
        # Another tenant's delivery id replays nothing for this tenant.
        r = await a.post("/replay", json={"source": "deadletter", "delivery_id": sent_b})
        assert r.status_code == 200 and r.json()["matched"] == 0


async def _at_least(coro: object, n: int) -> list | None:
    items = await coro  # type: ignore[misc]
    return items if len(items) >= n else None


async def _exactly(coro: object, n: int) -> list | None:
    items = await coro  # type: ignore[misc]
    return items if len(items) == n else None


async def test_endpoint_stats_overview_and_whoami_are_scoped(
    worker: Worker, receiver: Receiver, conformance: Conformance
) -> None:
    ta, tb = uid("sta"), uid("stb")
    tok_a = (await worker.issue_token(ta))["token"]
    tok_b = (await worker.issue_token(tb))["token"]
    ok_path, bad_path = "/" + uid("ok"), "/" + uid("bad")
    receiver.script[ok_path], receiver.script[bad_path] = 200, 503
    admin = conformance.client(worker.url, TOKEN)
    a = conformance.client(worker.url, tok_a)
    b = conformance.client(worker.url, tok_b)
    async with admin, a, b:
        assert (await a.get("/whoami")).json() == {"admin": False, "tenant_id": ta}
        assert (await admin.get("/whoami")).json() == {"admin": True, "tenant_id": None}
        good = await _create(a, url=receiver.url(ok_path))
        bad = await _create(a, url=receiver.url(bad_path), max_attempts=1)
        other = await _create(b, url=receiver.url(ok_path))
        ids = [(await a.post(f"/subscriptions/{good}/test")).json()["delivery_id"] for _ in "ab"]
        failed = (await a.post(f"/subscriptions/{bad}/test")).json()["delivery_id"]
        await b.post(f"/subscriptions/{other}/test")
        for d in ids:
            await _status(a, d, "succeeded")
        await _status(a, failed, "dead_lettered")

        async def stats() -> dict | None:
            r = await a.get("/endpoint-stats", params={"ids": f"{good},{bad},{other},nope"})
            items = {s["endpoint_id"]: s for s in r.json()["items"]}
            return items if items.get(bad, {}).get("dead_letters") == 1 else None

        items = await eventually(stats)
        assert set(items) == {good, bad}  # another tenant's and a missing one left out
        assert items[good]["succeeded_last_hour"] == 2 and items[good]["success_rate"] == 1
        assert items[good]["last_attempt"]["outcome"] == "succeeded"
        assert items[bad]["failed_last_hour"] == 1 and items[bad]["success_rate"] == 0
        assert items[bad]["last_attempt"]["status_code"] == 503
        for many in (",".join(f"e{i}" for i in range(101)), "e" * 4001):
            r = await a.get("/endpoint-stats", params={"ids": many})
            assert r.status_code == 400 and r.json()["error"]["field"] == "ids"

        # The overview of a tenant counts its own endpoints only; the admin's, everyone's.
        mine = (await a.get("/overview")).json()
        assert mine["tenant_id"] == ta
        assert mine["succeeded_last_hour"] == 2 and mine["failed_last_hour"] == 1
        assert mine["dead_letters"] == 1 and len(mine["minutes"]) == 60
        assert sum(m["succeeded"] for m in mine["minutes"]) == 2
        theirs = (await b.get("/overview")).json()
        assert theirs["dead_letters"] == 0 and theirs["failed_last_hour"] == 0
        everyone = (await admin.get("/overview")).json()
        assert everyone["succeeded_last_hour"] >= 3 and everyone["dead_letters"] >= 1
        scoped = (await admin.get("/overview", params={"tenant_id": ta})).json()
        assert scoped["tenant_id"] == ta and scoped["dead_letters"] == 1
        assert scoped["succeeded_last_hour"] == 2
        r = await a.get("/overview", params={"tenant_id": tb})
        assert r.status_code == 403


async def test_attempt_log_filters_by_time_and_pages_with_a_cursor(
    worker: Worker, receiver: Receiver, conformance: Conformance
) -> None:
    path = "/" + uid("log")
    receiver.script[path] = 200
    async with conformance.client(worker.url, TOKEN) as client:
        ep = await _create(client, url=receiver.url(path))
        sent = [(await client.post(f"/subscriptions/{ep}/test")).json() for _ in range(5)]
        for d in sent:
            await _status(client, d["delivery_id"], "succeeded")
        route = f"/subscriptions/{ep}/attempts"
        everything = (await client.get(route)).json()["items"]
        assert len(everything) == 5
        pages, after = [], None
        while True:
            r = await client.get(route, params={"limit": 2, **({"after": after} if after else {})})
            assert r.status_code == 200
            pages.append(r.json()["items"])
            after = r.json()["next"]
            if after is None:
                break
        assert [len(p) for p in pages] == [2, 2, 1]
        assert [a for p in pages for a in p] == everything
        times = [a["attempted_at"] for a in everything]
        assert times == sorted(times, reverse=True)
        assert (await client.get(route, params={"since": "1h"})).json()["items"] == everything
        assert (await client.get(route, params={"until": "2h"})).json()["items"] == []
        newest = (await client.get(route, params={"since": times[1]})).json()["items"]
        assert newest == [a for a in everything if a["attempted_at"] >= times[1]]
        assert len(newest) >= 2
        r = await client.get(route, params={"event_type": "webhook.test", "status": "succeeded"})
        assert len(r.json()["items"]) == 5
        assert (await client.get(route, params={"event_type": "other"})).json()["items"] == []
        for bad in ({"since": "yesterday"}, {"limit": "501"}, {"status": "nope"}):
            r = await client.get(route, params=bad)
            assert r.status_code == 400 and r.json()["error"]["field"] == next(iter(bad)), r.text


async def test_console_page_and_assets_are_served_with_a_strict_policy(worker: Worker) -> None:
    async with httpx.AsyncClient(base_url=worker.url) as client:
        page = await client.get("/ui/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "/ui/console.js" in page.text and "://" not in page.text
        for asset, media in (("console.js", "javascript"), ("console.css", "css")):
            r = await client.get(f"/ui/{asset}")
            assert r.status_code == 200 and media in r.headers["content-type"]
            assert "https://" not in r.text  # nothing fetched from elsewhere
        r = await client.get("/ui/..%2Fdocs.html")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = await client.get("/ui/index.html")
        assert r.status_code == 404
