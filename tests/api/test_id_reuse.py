"""An endpoint id deleted and created again is another endpoint: it starts with no history.

Real broker, real worker, real receivers. Tenant B's endpoint collects a success and a
dead letter; B deletes it; tenant A creates an endpoint with the same id. On every route
that shows history (attempts, one delivery, endpoint stats, overview, dead letters,
replay dry-runs) A, and the admin asking about the id, see nothing of B's. Then A's own
event, with the same event id as B's (so the same delivery id), shows A's record only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from tests.support import SECRETS_USED, TOKEN, Kafka, Receiver, Worker, event, eventually, uid
from webhook_stream.core.records import delivery_id_for


def _client(worker: Worker, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=worker.url, headers={"Authorization": f"Bearer {token}"}, timeout=15
    )


async def _create(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    r = await client.post("/subscriptions", json=body)
    assert r.status_code == 201, r.text
    SECRETS_USED.append(r.json()["secret"])
    return r.json()  # type: ignore[no-any-return]


async def _ok(client: httpx.AsyncClient, path: str, **params: Any) -> dict[str, Any]:
    """A 200 answer; the status routes answer 503 while partitions move, so poll."""

    async def answered() -> dict[str, Any] | None:
        r = await client.get(path, params=params)
        assert r.status_code in (200, 503), r.text
        return r.json() if r.status_code == 200 else None  # type: ignore[no-any-return]

    return await eventually(answered)  # type: ignore[no-any-return]


async def test_a_reused_endpoint_id_shows_nothing_of_the_earlier_endpoint(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    ta, tb = uid("tenant-a"), uid("tenant-b")
    tok_a = (await worker.issue_token(ta))["token"]
    tok_b = (await worker.issue_token(tb))["token"]
    ep = uid("ep_reuse")
    etype = uid("reuse") + ".created"
    topic = "events." + uid("reuse")
    path_b, path_a = "/" + uid("b"), "/" + uid("a")
    receiver.script[path_b] = lambda got: 200 if got.json["data"]["ok"] else 400
    since = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    a, b, admin = _client(worker, tok_a), _client(worker, tok_b), _client(worker, TOKEN)
    async with a, b, admin:
        # -- B's endpoint: one delivery succeeds, one is dead-lettered (400 is fatal).
        first = await _create(b, {"id": ep, "url": receiver.url(path_b), "event_types": [etype]})
        assert first["incarnation"], first
        evt_ok, evt_bad = uid("evt"), uid("evt")
        await kafka.send(topic, event(etype, {"ok": True}, id=evt_ok, tenant_id=tb))
        await kafka.send(topic, event(etype, {"ok": False}, id=evt_bad, tenant_id=tb))
        await receiver.wait_count(path_b, 2)
        shared, dead = delivery_id_for(evt_ok, ep), delivery_id_for(evt_bad, ep)

        async def b_history_complete() -> bool:
            attempts = (await _ok(b, f"/subscriptions/{ep}/attempts"))["items"]
            dls = (await _ok(b, "/deadletters", endpoint_id=ep))["items"]
            return len(attempts) == 2 and [d["delivery_id"] for d in dls] == [dead]

        await eventually(b_history_complete)
        stats = (await _ok(b, "/endpoint-stats", ids=ep))["items"][0]
        assert (stats["succeeded_last_hour"], stats["failed_last_hour"]) == (1, 1), stats
        assert (await _ok(b, "/overview"))["dead_letters"] == 1
        assert (await _ok(b, f"/deliveries/{dead}"))["status"] == "dead_lettered"

        # -- B deletes it; A creates an endpoint with the same id.
        r = await b.delete(f"/subscriptions/{ep}")
        assert r.status_code == 200, r.text
        second = await _create(a, {"id": ep, "url": receiver.url(path_a), "event_types": [etype]})
        assert second["incarnation"] and second["incarnation"] != first["incarnation"]

        async def nothing_of_b(client: httpx.AsyncClient, tenant: str | None) -> None:
            page = await _ok(client, f"/subscriptions/{ep}/attempts")
            assert all(x["event_id"] != evt_bad for x in page["items"]), page
            assert all(x["tenant_id"] != tb for x in page["items"]), page
            r = await client.get(f"/deliveries/{dead}")
            assert r.status_code == 404, r.text
            stats = (await _ok(client, "/endpoint-stats", ids=ep))["items"][0]
            assert stats["failed_last_hour"] == 0 and stats["dead_letters"] == 0, stats
            dls = (await _ok(client, "/deadletters", endpoint_id=ep))["items"]
            assert dls == [], dls
            if tenant is not None:
                overview = await _ok(client, "/overview", tenant_id=tenant)
                assert overview["dead_letters"] == 0, overview
                assert sum(m["failed"] for m in overview["minutes"]) == 0, overview
                assert (await _ok(client, "/deadletters"))["items"] == []
            r = await client.post(
                "/replay",
                json={"source": "deadletter", "endpoint_id": ep, "dry_run": True, "since": since},
            )
            assert r.status_code == 200, r.text
            assert r.json()["matched"] == 0, r.json()
            if tenant is not None:
                assert r.json()["scanned"] == 0, r.json()

        await nothing_of_b(a, ta)
        await nothing_of_b(admin, None)
        page = await _ok(a, f"/subscriptions/{ep}/attempts")
        assert page["items"] == [], page
        r = await a.get(f"/deliveries/{shared}")
        assert r.status_code == 404, r.text

        # -- A's own event, with B's event id: the same delivery id, A's record only.
        await kafka.send(topic, event(etype, {"ok": True, "a": 1}, id=evt_ok, tenant_id=ta))
        await receiver.wait_count(path_a, 1)

        async def a_sees_its_own() -> list[Any]:
            return (await _ok(a, f"/subscriptions/{ep}/attempts"))["items"]  # type: ignore[no-any-return]

        items = await eventually(a_sees_its_own)
        assert [(x["delivery_id"], x["tenant_id"]) for x in items] == [(shared, ta)], items
        mine = await _ok(a, f"/deliveries/{shared}")
        assert mine["status"] == "succeeded" and mine["incarnation"] == second["incarnation"]
        assert [x["tenant_id"] for x in mine["attempts"]] == [ta], mine
        stats = (await _ok(a, "/endpoint-stats", ids=ep))["items"][0]
        assert (stats["succeeded_last_hour"], stats["failed_last_hour"]) == (1, 0), stats
        await nothing_of_b(a, ta)
        # B sees nothing of A's either (another tenant's endpoint is as absent).
        assert (await b.get(f"/subscriptions/{ep}/attempts")).status_code == 404
        assert (await b.get(f"/deliveries/{shared}")).status_code == 404


async def test_replay_dry_runs_count_only_the_callers_records_and_hide_topics(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    ta, tb = uid("tenant-a"), uid("tenant-b")
    tok_a = (await worker.issue_token(ta))["token"]
    etype = uid("rc") + ".created"
    topic = "events." + uid("rc")
    async with _client(worker, tok_a) as a, _client(worker, TOKEN) as admin:
        await _create(a, {"url": receiver.url("/rc_a"), "event_types": [etype]})
        for n in range(3):
            await kafka.send(topic, event(etype, {"n": n}, id=uid("e"), tenant_id=tb))
        await kafka.send(topic, event(etype, {"n": 9}, id=uid("e"), tenant_id=ta))
        await receiver.wait_count("/rc_a", 1)
        since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
        body = {"source": "events", "topic": topic, "since": since, "dry_run": True}
        r = await a.post("/replay", json=body)
        assert r.status_code == 200, r.text
        assert (r.json()["scanned"], r.json()["matched"]) == (1, 1), r.json()
        # The admin's count is of the whole topic.
        r = await admin.post("/replay", json={**body, "tenant_id": tb})
        assert r.status_code == 200 and r.json()["scanned"] == 4, r.text
        # A topic that does not exist looks like an empty one to a tenant token.
        missing = {**body, "topic": "events." + uid("nosuch")}
        r = await a.post("/replay", json=missing)
        assert r.status_code == 200 and r.json()["scanned"] == 0, r.text
        r = await a.post("/replay", json={"source": "deadletter", "dry_run": True})
        assert r.status_code == 200 and r.json()["scanned"] == 0, r.text


async def test_the_earlier_endpoints_pending_retry_never_reaches_the_new_one(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    """Same tenant: its tenant check cannot tell the two endpoints apart, the incarnation does."""
    tb = uid("tenant-b")
    tok_b = (await worker.issue_token(tb))["token"]
    ep = uid("ep_retry_reuse")
    etype = uid("rr") + ".created"
    topic = "events." + uid("rr")
    path_old, path_new = "/" + uid("old"), "/" + uid("new")
    receiver.script[path_old] = 500
    async with _client(worker, tok_b) as b:
        await _create(
            b,
            {
                "id": ep,
                "url": receiver.url(path_old),
                "event_types": [etype],
                "retry_schedule": ["5s"],
                "max_attempts": 2,
            },
        )
        evt_old = uid("evt")
        await kafka.send(topic, event(etype, {"for": "old"}, id=evt_old, tenant_id=tb))
        await receiver.wait_count(path_old, 1)  # failed: its retry is due in 5 s
        assert (await b.delete(f"/subscriptions/{ep}")).status_code == 200
        await _create(b, {"id": ep, "url": receiver.url(path_new), "event_types": [etype]})
        # The retry comes due, finds another incarnation and is dead-lettered, not sent.
        found = await kafka.wait_records(
            "webhooks.deadletter",
            lambda r: orjson.loads(r.value)["delivery_id"] == delivery_id_for(evt_old, ep),
        )
        assert orjson.loads(found[0].value)["reason"] == "endpoint_missing"
        evt_new = uid("evt")
        await kafka.send(topic, event(etype, {"for": "new"}, id=evt_new, tenant_id=tb))
        got = await receiver.wait_count(path_new, 1)
        assert [r.json["id"] for r in got] == [evt_new]
        assert len(receiver.at(path_old)) == 1
