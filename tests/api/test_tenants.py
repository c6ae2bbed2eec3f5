"""Tenant tokens on the real broker: each tenant sees only its own, on every route.

Every response here is checked against the worker's OpenAPI document (:class:`Conformance`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from tests.api.conformance import Conformance
from tests.support import (
    SECRETS_USED,
    TENANT_TOKENS_USED,
    TOKEN,
    Kafka,
    Receiver,
    Worker,
    event,
    eventually,
    uid,
)
from webhook_stream.core.schemas import validation_errors
from webhook_stream.core.settings import Settings
from webhook_stream.core.topics import plan


@pytest.fixture(scope="module")
async def conformance(worker: Worker) -> Conformance:
    async with httpx.AsyncClient(base_url=worker.url) as client:
        return Conformance((await client.get("/openapi.json")).json())


def code(r: httpx.Response) -> str:
    return r.json()["error"]["code"]


async def test_two_tenants_each_see_only_their_own_on_every_route(
    worker: Worker, kafka: Kafka, receiver: Receiver, conformance: Conformance
) -> None:
    ta, tb = uid("tenant-a"), uid("tenant-b")
    tok_a = (await worker.issue_token(ta, description="console"))["token"]
    tok_b = (await worker.issue_token(tb))["token"]
    assert tok_a.startswith("wst_") and tok_a != tok_b
    etype = uid("ten") + ".created"
    admin = conformance.client(worker.url, TOKEN)
    a = conformance.client(worker.url, tok_a)
    b = conformance.client(worker.url, tok_b)
    async with admin, a, b:
        # Create: the tenant is filled in; naming another tenant is 403.
        r = await a.post(
            "/subscriptions", json={"url": receiver.url("/ta"), "event_types": [etype]}
        )
        assert r.status_code == 201 and r.json()["tenant_id"] == ta, r.text
        ep_a = r.json()["id"]
        SECRETS_USED.append(r.json()["secret"])
        r = await a.post(
            "/subscriptions",
            json={"url": receiver.url(), "event_types": [etype], "tenant_id": tb},
        )
        assert r.status_code == 403 and r.json()["error"]["field"] == "tenant_id"
        r = await b.post(
            "/subscriptions",
            json={"url": receiver.url("/tb"), "event_types": [etype], "tenant_id": tb},
        )
        assert r.status_code == 201
        ep_b = r.json()["id"]
        SECRETS_USED.append(r.json()["secret"])

        # List: only its own; filtering by another tenant is 403; admin sees both.
        items = (await a.get("/subscriptions")).json()["items"]
        assert [s["id"] for s in items] == [ep_a]
        assert (await a.get("/subscriptions", params={"tenant_id": tb})).status_code == 403
        assert [
            s["id"]
            for s in (await a.get("/subscriptions", params={"tenant_id": ta})).json()["items"]
        ] == [ep_a]
        everyone = {s["id"] for s in await worker.list_subscriptions(admin)}
        assert {ep_a, ep_b} <= everyone
        only_b = (await admin.get("/subscriptions", params={"tenant_id": tb})).json()["items"]
        assert [s["id"] for s in only_b] == [ep_b]

        # Another tenant's endpoint: 404 on every route, indistinguishable from none.
        for method, path in [
            ("GET", f"/subscriptions/{ep_b}"),
            ("PATCH", f"/subscriptions/{ep_b}"),
            ("DELETE", f"/subscriptions/{ep_b}"),
            ("POST", f"/subscriptions/{ep_b}/rotate-secret"),
            ("POST", f"/subscriptions/{ep_b}/test"),
            ("GET", f"/subscriptions/{ep_b}/attempts"),
        ]:
            json_body = {"description": "x"} if method == "PATCH" else None
            theirs = await a.request(method, path, json=json_body)
            missing = await a.request(method, path.replace(ep_b, "ep_missing"), json=json_body)
            assert theirs.status_code == 404 == missing.status_code, (method, path, theirs.text)
            assert code(theirs) == "not_found"
            assert theirs.text.replace(ep_b, "?") == missing.text.replace("ep_missing", "?")
        assert (await b.get(f"/subscriptions/{ep_b}")).json()["description"] is None
        # Ids are one namespace: another tenant's id is taken like its own, and says no more.
        body = {"url": receiver.url("/ta"), "event_types": [etype]}
        theirs = await a.post("/subscriptions", json={**body, "id": ep_b})
        mine = await a.post("/subscriptions", json={**body, "id": ep_a})
        assert theirs.status_code == 409 == mine.status_code, theirs.text
        assert theirs.text.replace(ep_b, "?") == mine.text.replace(ep_a, "?")

        # Its own: read, change; tenant_id cannot change (400 naming it), not even by admin.
        assert (await a.get(f"/subscriptions/{ep_a}")).status_code == 200
        r = await a.patch(f"/subscriptions/{ep_a}", json={"description": "mine", "tenant_id": ta})
        assert r.status_code == 200 and r.json()["description"] == "mine"
        for client in (a, admin):
            r = await client.patch(f"/subscriptions/{ep_a}", json={"tenant_id": tb})
            assert r.status_code == 400 and r.json()["error"]["field"] == "tenant_id", r.text
        assert (await admin.get(f"/subscriptions/{ep_a}")).json()["tenant_id"] == ta

        # Deliveries: its own test event's status is visible to it and the admin only.
        r = await a.post(f"/subscriptions/{ep_a}/test")
        assert r.status_code == 202
        delivery = r.json()["delivery_id"]

        async def delivered() -> bool:
            r = await a.get(f"/deliveries/{delivery}")
            return r.status_code == 200 and r.json()["status"] == "succeeded"

        await eventually(delivered)
        assert (await b.get(f"/deliveries/{delivery}")).status_code == 404
        assert (await admin.get(f"/deliveries/{delivery}")).status_code == 200
        attempts = (await a.get(f"/subscriptions/{ep_a}/attempts")).json()["items"]
        assert [x["delivery_id"] for x in attempts] == [delivery]

        # Replay: limited to its own tenant and endpoints.
        topic = "events." + uid("tenants")
        await kafka.send(topic, event(etype, {"n": 1}, id=uid("e"), tenant_id=ta))
        await kafka.send(topic, event(etype, {"n": 2}, id=uid("e"), tenant_id=tb))
        await receiver.wait_count("/ta", 2)
        await receiver.wait_count("/tb", 1)
        since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
        replay = {"source": "events", "topic": topic, "since": since, "dry_run": True}
        r = await a.post("/replay", json=replay)
        assert r.status_code == 200 and r.json()["matched"] == 1, r.text
        r = await a.post("/replay", json={**replay, "tenant_id": tb})
        assert r.status_code == 403 and r.json()["error"]["field"] == "tenant_id"
        r = await a.post("/replay", json={**replay, "endpoint_id": ep_b})
        assert r.status_code == 404 and r.json()["error"]["field"] == "endpoint_id"
        r = await a.post("/replay", json={"source": "deadletter", "dry_run": True})
        assert r.status_code == 200 and r.json()["matched"] == 0
        # The admin replays across tenants only when it names one (or an endpoint).
        assert (await admin.post("/replay", json=replay)).status_code == 400
        r = await admin.post("/replay", json={**replay, "tenant_id": tb})
        assert r.status_code == 200 and r.json()["matched"] == 1

        # Admin-only routes: 403 for a tenant token, even on its own tenant.
        for method, path in [
            ("GET", f"/tenants/{ta}/tokens"),
            ("POST", f"/tenants/{ta}/tokens"),
            ("DELETE", f"/tenants/{ta}/tokens/tok_x"),
            ("GET", f"/tenants/{tb}/tokens"),
        ]:
            r = await a.request(method, path)
            assert r.status_code == 403 and code(r) == "forbidden", (method, path)

        # Deleting another tenant's endpoint did nothing; its own goes.
        assert (await b.get(f"/subscriptions/{ep_b}")).status_code == 200
        assert (await a.delete(f"/subscriptions/{ep_a}")).status_code == 200
        assert (await admin.get(f"/subscriptions/{ep_a}")).status_code == 404
    assert conformance.checked > 40


async def test_token_routes_list_without_secret_paginate_and_revoke(
    worker: Worker, kafka: Kafka, receiver: Receiver, conformance: Conformance
) -> None:
    tenant = uid("tenant")
    issued = [await worker.issue_token(tenant, description=f"n{i}") for i in range(3)]
    async with conformance.client(worker.url, TOKEN) as admin:
        page1 = (await admin.get(f"/tenants/{tenant}/tokens", params={"limit": 2})).json()
        assert len(page1["items"]) == 2 and page1["next"]
        page2 = (
            await admin.get(
                f"/tenants/{tenant}/tokens", params={"limit": 2, "after": page1["next"]}
            )
        ).json()
        assert len(page2["items"]) == 1 and page2["next"] is None
        listed = page1["items"] + page2["items"]
        assert sorted(t["id"] for t in listed) == sorted(t["id"] for t in issued)
        text = orjson.dumps(listed).decode()
        assert "token" not in {k for t in listed for k in t} and "sha256" not in text
        for t in issued:
            assert t["token"] not in text
        r = await admin.get(f"/tenants/{tenant}/tokens", params={"after": "!!"})
        assert r.status_code == 400 and r.json()["error"]["field"] == "after"
        r = await admin.get(f"/tenants/{tenant}/tokens", params={"limit": 501})
        assert r.status_code == 400 and r.json()["error"]["field"] == "limit"
        r = await admin.post(
            f"/tenants/{tenant}/tokens", json={"expires_at": "2001-01-01T00:00:00Z"}
        )
        assert r.status_code == 400 and r.json()["error"]["field"] == "expires_at"
        r = await admin.post(f"/tenants/{tenant}/tokens", json={"scope": "all"})
        assert r.status_code == 400 and r.json()["error"]["field"] == "scope"
        # Another tenant's token id under this tenant is 404; revocation is immediate here.
        other = await worker.issue_token(uid("other"))
        assert (await admin.delete(f"/tenants/{tenant}/tokens/{other['id']}")).status_code == 404
        victim = issued[0]
        async with conformance.client(worker.url, victim["token"]) as c:
            assert (await c.get("/subscriptions")).status_code == 200
            r = await admin.delete(f"/tenants/{tenant}/tokens/{victim['id']}")
            assert r.status_code == 200 and r.json()["revoked"] is True
            r = await c.get("/subscriptions")
            assert r.status_code == 401 and code(r) == "unauthorized"
        assert (await admin.delete(f"/tenants/{tenant}/tokens/{victim['id']}")).status_code == 404
    # Stored: only the SHA-256, in the documented record shape.
    records = await kafka.read_all("webhooks.tokens")
    ours = [r for r in records if r.key and r.key.decode() in {t["id"] for t in issued}]
    assert ours and any(r.value is None for r in ours)
    for rec in ours:
        assert all(t["token"].encode() not in (rec.value or b"") for t in issued)
        if rec.value is not None:
            assert validation_errors("tenant_token", orjson.loads(rec.value)) == []


async def test_an_expired_token_is_refused(worker: Worker) -> None:
    expires = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    token = (await worker.issue_token(uid("tenant"), expires_at=expires))["token"]
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=worker.url, headers=headers) as c:
        assert (await c.get("/subscriptions")).status_code == 200

        async def refused() -> bool:
            return (await c.get("/subscriptions")).status_code == 401

        await eventually(refused, timeout=10)


async def test_revocation_takes_effect_on_a_second_worker_within_10s(
    broker, worker: Worker, tmp_path: Path
) -> None:
    tenant = uid("tenant")
    issued = await worker.issue_token(tenant)
    second = Worker(broker.url, tmp_path / "second").start()
    try:
        await second.wait_ready()
        headers = {"Authorization": f"Bearer {issued['token']}"}
        async with httpx.AsyncClient(base_url=second.url, headers=headers, timeout=5) as c:
            # The second worker read the token from the compacted topic at start-up.
            assert (await c.get("/subscriptions")).status_code == 200
            async with worker.api() as admin:
                r = await admin.delete(f"/tenants/{tenant}/tokens/{issued['id']}")
            assert r.status_code == 200
            revoked_at = time.monotonic()

            async def refused() -> bool:
                return (await c.get("/subscriptions")).status_code == 401

            await eventually(refused, timeout=10)
            took = time.monotonic() - revoked_at
        assert took < 10, took
        print(f"revocation visible on the second worker after {took:.2f}s")
        for token in TENANT_TOKENS_USED:
            assert token not in second.log_text()
    finally:
        second.stop()


async def test_no_tenant_token_in_logs_records_or_metrics(
    worker: Worker, kafka: Kafka, tmp_path_factory
) -> None:
    assert len(TENANT_TOKENS_USED) >= 5, "run with the other tenant tests"
    logs = list(Path(tmp_path_factory.getbasetemp()).rglob("worker-*.log"))
    assert logs
    for log in logs:
        text = log.read_text(errors="replace")
        for token in TENANT_TOKENS_USED:
            assert token not in text, log
    # Every topic the app owns (the shared worker's retry schedule is 1s,2s).
    topics = [spec.name for spec in plan(Settings(retry_schedule=(1.0, 2.0)))]
    assert "webhooks.tokens" in topics and "webhooks.subscriptions" in topics
    for topic in topics:
        for rec in await kafka.read_all(topic):
            raw = (rec.key or b"") + (rec.value or b"") + b"".join(v for _, v in rec.headers or ())
            for token in TENANT_TOKENS_USED:
                assert token.encode() not in raw, topic
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(worker.url + "/metrics")).text
    for token in TENANT_TOKENS_USED:
        assert token not in metrics
