"""The management API over real HTTP, replay end to end, metrics, and secrets kept out."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import httpx
import orjson

from tests.support import (
    SECRETS_USED,
    TOKEN,
    Kafka,
    Receiver,
    Worker,
    event,
    eventually,
    uid,
)
from webhook_stream import verify
from webhook_stream.core.errors import WebhookStreamError
from webhook_stream.core.schemas import validation_errors

SEEN_SECRETS: list[str] = []


async def create(worker: Worker, **sub: object) -> dict:
    body = await worker.create_subscription(**sub)
    SEEN_SECRETS.append(body["secret"])
    return body


async def test_auth_is_required_and_constant(worker: Worker) -> None:
    async with httpx.AsyncClient(base_url=worker.url) as client:
        assert (await client.get("/subscriptions")).status_code == 401
        r = await client.get("/subscriptions", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and TOKEN not in r.text
        r = await client.get("/subscriptions", headers={"Authorization": TOKEN})
        assert r.status_code == 401
        assert (await client.get("/health")).status_code == 200
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        for name in (
            "webhook_deliveries_total",
            "webhook_attempt_duration_seconds_bucket",
            "webhook_end_to_end_seconds_bucket",
            "webhook_events_total",
            "webhook_in_flight",
        ):
            assert name in metrics.text


async def test_without_a_configured_token_management_refuses(broker, tmp_path) -> None:
    w = Worker(broker.url, tmp_path / "notoken", env={"WEBHOOK_STREAM_API_TOKEN": ""}).start()
    try:
        await w.wait_ready()
        async with w.api() as client:
            r = await client.get("/subscriptions")
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "api_disabled"
        assert "WEBHOOK_STREAM_API_TOKEN" in r.json()["error"]["message"]
    finally:
        w.stop()


async def test_validation_errors_name_the_field(worker: Worker, receiver: Receiver) -> None:
    good = {"url": receiver.url(), "event_types": ["a.*"]}
    cases = [
        ({**good, "url": "ftp://example.com/x"}, "url"),
        ({"url": receiver.url()}, "event_types"),
        ({**good, "event_types": []}, "event_types"),
        ({**good, "event_types": ["a b"]}, "event_types[0]"),
        ({**good, "headers": {"X-A": "a\r\nb"}}, "headers.X-A"),
        ({**good, "headers": {"webhook-id": "x"}}, "headers.webhook-id"),
        ({**good, "headers": {"Connection": "close"}}, "headers.Connection"),
        ({**good, "timeout_s": 0}, "timeout_s"),
        ({**good, "max_in_flight": 0}, "max_in_flight"),
        ({**good, "secret": "whsec_short"}, "secret"),
        ({**good, "bogus": 1}, "bogus"),
    ]
    async with worker.api() as client:
        for body, field in cases:
            r = await client.post("/subscriptions", json=body)
            assert r.status_code == 400, (body, r.text)
            assert r.json()["error"]["field"] == field, (body, r.json())
            assert r.json()["error"]["code"] == "invalid"
        r = await client.post("/subscriptions", content=b"{nope")
        assert r.status_code == 400 and r.json()["error"]["field"] == "body"
        assert "whsec_short" not in r.text


async def test_crud_and_secret_shown_once(worker: Worker, kafka: Kafka, receiver: Receiver) -> None:
    ep = uid("ep")
    created = await create(
        worker, id=ep, url=receiver.url("/crud"), event_types=["crud.*"], description="mine"
    )
    assert created["secret"].startswith("whsec_")
    async with worker.api() as client:
        got = (await client.get(f"/subscriptions/{ep}")).json()
        assert got["id"] == ep and got["description"] == "mine"
        assert "secret" not in got and created["secret"] not in str(got)
        listing = (await client.get("/subscriptions")).text
        assert created["secret"] not in listing and ep in listing
        assert (
            await client.post(
                "/subscriptions", json={"id": ep, "url": receiver.url(), "event_types": ["x"]}
            )
        ).status_code == 409
        r = await client.patch(f"/subscriptions/{ep}", json={"url": receiver.url("/crud2")})
        assert r.status_code == 200 and r.json()["url"] == receiver.url("/crud2")
        r = await client.patch(f"/subscriptions/{ep}", json={"url": "nope"})
        assert r.json()["error"]["field"] == "url"
        assert (await client.patch(f"/subscriptions/{ep}", json={"secret": "x"})).status_code == 400
        assert (await client.get(f"/subscriptions/{ep}")).json()["url"] == receiver.url("/crud2")
        # What the API wrote to the compacted topic conforms to schemas/subscription.avsc.
        stored = [r for r in await kafka.read_all("webhooks.subscriptions") if r.key == ep.encode()]
        assert len(stored) == 2
        for rec in stored:
            assert validation_errors("subscription", orjson.loads(rec.value)) == []
        assert (await client.delete(f"/subscriptions/{ep}")).status_code == 200
        assert (await client.get(f"/subscriptions/{ep}")).status_code == 404
        assert (await client.delete(f"/subscriptions/{ep}")).status_code == 404
        assert (await client.patch(f"/subscriptions/{ep}", json={})).status_code == 404


async def test_rotation_signs_with_both_secrets(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    ep = uid("ep")
    etype = uid("rot") + ".x"
    old = (await create(worker, id=ep, url=receiver.url("/rot"), event_types=[etype]))["secret"]
    async with worker.api() as client:
        r = await client.post(f"/subscriptions/{ep}/rotate-secret")
    assert r.status_code == 200
    new = r.json()["secret"]
    SEEN_SECRETS.append(new)
    SECRETS_USED.append(new)
    assert new != old and "secret" not in (await worker.api().get(f"/subscriptions/{ep}")).json()
    await kafka.send("events.api", event(etype, id=uid("e")))
    (got,) = await receiver.wait_count("/rot", 1)
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    verify(old, got.headers, got.body)
    verify(new, got.headers, got.body)
    try:
        verify("whsec_" + "A" * 43 + "=", got.headers, got.body)
        raise AssertionError("a wrong secret verified")
    except WebhookStreamError:
        pass


async def test_test_event_attempts_and_delivery_status(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    ep = uid("ep")
    calls = {"n": 0}

    def flaky(_req: object) -> int:
        calls["n"] += 1
        return 500 if calls["n"] == 1 else 200

    receiver.script["/t"] = flaky
    secret = (await create(worker, id=ep, url=receiver.url("/t"), event_types=["never.*"]))[
        "secret"
    ]
    async with worker.api() as client:
        r = await client.post(f"/subscriptions/{ep}/test")
        assert r.status_code == 202
        delivery_id = r.json()["delivery_id"]
        _, second = await receiver.wait_count("/t", 2, timeout=20)
        assert second.json["type"] == "webhook.test"
        verify(secret, second.headers, second.body)

        async def status_is(expected: str) -> dict | None:
            r = await client.get(f"/deliveries/{delivery_id}")
            return r.json() if r.status_code == 200 and r.json()["status"] == expected else None

        status = await eventually(lambda: status_is("succeeded"))
        assert [a["status_code"] for a in status["attempts"]] == [500, 200]
        page = (await client.get(f"/subscriptions/{ep}/attempts")).json()
        assert [a["attempt"] for a in page["items"]] == [2, 1]  # newest first
        assert page["next"] is None
        retried = (
            await client.get(f"/subscriptions/{ep}/attempts", params={"status": "retrying"})
        ).json()
        assert [a["status_code"] for a in retried["items"]] == [500]
        # Pages of one: the cursor walks the log newest first and ends with next = null.
        first = (await client.get(f"/subscriptions/{ep}/attempts", params={"limit": "1"})).json()
        assert [a["attempt"] for a in first["items"]] == [2] and first["next"]
        second = (
            await client.get(
                f"/subscriptions/{ep}/attempts", params={"limit": "1", "after": first["next"]}
            )
        ).json()
        assert [a["attempt"] for a in second["items"]] == [1] and second["next"] is None
        # Time and type filters: attempted_at in [since, until], exact event type.
        at = page["items"][1]["attempted_at"]
        since = (await client.get(f"/subscriptions/{ep}/attempts", params={"since": at})).json()
        assert len(since["items"]) == 2
        until = (await client.get(f"/subscriptions/{ep}/attempts", params={"until": at})).json()
        assert [a["attempt"] for a in until["items"]] == [1]
        typed = (
            await client.get(f"/subscriptions/{ep}/attempts", params={"event_type": "other"})
        ).json()
        assert typed["items"] == []
        for params, field in [
            ({"limit": "x"}, "limit"),
            ({"limit": "0"}, "limit"),
            ({"limit": "501"}, "limit"),
            ({"status": "bogus"}, "status"),
            ({"since": "yesterday"}, "since"),
            ({"after": "not-a-cursor"}, "after"),
        ]:
            r = await client.get(f"/subscriptions/{ep}/attempts", params=params)
            assert r.status_code == 400, params
            assert r.json()["error"]["field"] == field and r.json()["error"]["code"]
        # The delivery's endpoint as a hint routes straight to the owner.
        hinted = await client.get(f"/deliveries/{delivery_id}", params={"endpoint_id": ep})
        assert hinted.status_code == 200 and hinted.json()["status"] == "succeeded"
        wrong = await client.get(f"/deliveries/{delivery_id}", params={"endpoint_id": "ep_other"})
        assert wrong.status_code == 404
        assert (await client.get("/deliveries/msg_nope")).status_code == 404
        assert (await client.post("/subscriptions/nope/test")).status_code == 404


async def test_replay_deadletter_end_to_end(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    ep = uid("ep")
    etype = uid("dl") + ".x"
    receiver.script["/dl"] = 400
    await create(worker, id=ep, url=receiver.url("/dl"), event_types=[etype])
    await kafka.send("events.api", event(etype, {"n": 1}, id=uid("e")))
    (failed,) = await receiver.wait_count("/dl", 1)
    async with worker.api() as client:

        async def dead() -> bool:
            r = await client.get(f"/deliveries/{failed.headers['webhook-id']}")
            return r.status_code == 200 and r.json()["status"] == "dead_lettered"

        await eventually(dead)
        receiver.script["/dl"] = 200  # the receiver is fixed
        r = await client.post(
            "/replay", json={"source": "deadletter", "endpoint_id": ep, "dry_run": True}
        )
        assert r.json()["matched"] == 1 and r.json()["requeued"] == 0
        r = await client.post("/replay", json={"source": "deadletter", "endpoint_id": ep})
        assert r.status_code == 200 and r.json()["requeued"] == 1, r.text
        _, replayed = await receiver.wait_count("/dl", 2)
        assert replayed.headers["webhook-id"] == failed.headers["webhook-id"]

        async def succeeded() -> bool:
            r = await client.get(f"/deliveries/{failed.headers['webhook-id']}")
            return r.json()["status"] == "succeeded"

        await eventually(succeeded)
        # The attempt log numbers on across the replay: #1 failed (400, fatal), #2 succeeded.
        r = await client.get(f"/subscriptions/{ep}/attempts")
        numbers = [(a["attempt"], a["outcome"]) for a in r.json()["items"]]
        assert sorted(numbers) == [(1, "failed"), (2, "succeeded")], numbers
        # Safe to run twice: the delivery has succeeded since, so nothing is re-sent.
        r = await client.post("/replay", json={"source": "deadletter", "endpoint_id": ep})
        assert r.json()["requeued"] == 0 and r.json()["skipped_succeeded"] == 1
        r = await client.post("/replay", json={"source": "bogus"})
        assert r.json()["error"]["field"] == "source"


async def test_replay_events_time_range_to_one_endpoint_via_cli(
    worker: Worker, kafka: Kafka, receiver: Receiver, broker
) -> None:
    etype = uid("rep") + ".x"
    a, b = uid("epa"), uid("epb")
    await create(worker, id=a, url=receiver.url("/a"), event_types=[etype])
    await create(worker, id=b, url=receiver.url("/b"), event_types=[etype])
    topic = "events." + uid("replay")
    before = time.time()
    await kafka.send(topic, event(etype, {"n": 1}, id=uid("e")))
    await kafka.send(topic, event(etype, {"n": 2}, id=uid("e")))
    await receiver.wait_count("/a", 2, timeout=30)
    await receiver.wait_count("/b", 2, timeout=30)
    env = {**os.environ, "WEBHOOK_STREAM_BROKER": broker.url}
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(before - 1)) + "Z"
    proc = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "webhook_stream.cli",
            "replay",
            "events",
            "--topic",
            topic,
            "--since",
            since,
            "--endpoint",
            a,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "scanned 2, matched 2, re-queued 2" in proc.stdout, proc.stdout
    got = await receiver.wait_count("/a", 4, timeout=30)
    assert sorted(r.json["data"]["n"] for r in got) == [1, 1, 2, 2]
    assert got[0].headers["webhook-id"] in {r.headers["webhook-id"] for r in got[2:]}
    assert len(receiver.at("/b")) == 2


async def test_no_secret_in_the_worker_log(worker: Worker) -> None:
    log = worker.log_text()
    assert SEEN_SECRETS, "run with the other API tests"
    for secret in SEEN_SECRETS:
        assert secret not in log
        assert secret.removeprefix("whsec_") not in log
    assert TOKEN not in log


async def test_unknown_route_wrong_method_and_huge_body_answer_the_json_error_shape(
    worker: Worker,
) -> None:
    """aiohttp's own refusals used to be plain text (``404: Not Found``, ``405``, a 413
    page); every answer of the API is the documented ``{"error": {...}}`` shape."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=worker.url, headers=auth, timeout=30) as client:
        missing = await client.get("/no-such-route")
        wrong = await client.put("/health")
        huge = await client.post(
            "/subscriptions",
            content=b'{"url": "' + b"x" * (10 * 1024 * 1024) + b'"}',
            headers={"Content-Type": "application/json"},
        )
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert wrong.status_code == 405 and "GET" in wrong.headers["Allow"]
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    assert huge.status_code == 413
    assert huge.json()["error"]["code"] == "too_large"
    for r in (missing, wrong, huge):
        assert r.headers["Content-Type"].startswith("application/json")


async def test_a_single_worker_owns_every_endpoint_in_the_flow_block(
    worker: Worker, receiver: Receiver
) -> None:
    """One worker holds every deliveries partition: ``flow.owned`` is true for a
    best-effort endpoint it has never delivered to (it was false for every such endpoint)."""
    sub = await create(worker, url=receiver.url("/flow"), event_types=["flow.owned"])
    async with httpx.AsyncClient(
        base_url=worker.url, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as client:
        r = await client.get(f"/subscriptions/{sub['id']}")
    assert r.status_code == 200
    flow = r.json()["flow"]
    assert (flow["owned"], flow["blocked_by"], flow["parked"]) == (True, None, 0), flow
