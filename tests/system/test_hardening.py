"""Defences: SSRF at delivery, rate limits, auto-disable, secrets at rest, hostile receivers."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import orjson
from aiohttp import web

from tests.support import Kafka, Receiver, Worker, event, eventually, json_of, uid
from webhook_stream import verify
from webhook_stream.broker import EmbeddedBroker
from webhook_stream.core.schemas import validation_errors
from webhook_stream.core.sealing import generate_key
from webhook_stream.subscriptions.model import generate_secret


async def test_ssrf_targets_are_refused_at_delivery_time(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    """With insecure targets off, private, loopback and plain-http URLs are fatal, and nothing
    reaches them, even when the subscription came straight from the topic."""
    w = Worker(
        own_broker.url, tmp_path / "w", env={"WEBHOOK_STREAM_ALLOW_INSECURE_TARGETS": "0"}
    ).start()
    try:
        await w.wait_ready()
        cases = {
            "ep_http": receiver.url("/plain"),  # http://
            "ep_loopback": f"https://127.0.0.1:{receiver.port}/x",  # literal
            "ep_localhost": f"https://localhost:{receiver.port}/x",  # name -> 127.0.0.1
            "ep_metadata": "https://169.254.169.254/latest/meta-data",  # cloud metadata
            "ep_mapped": f"https://[::ffff:127.0.0.1]:{receiver.port}/x",  # IPv4-mapped IPv6
        }
        for ep, url in cases.items():
            await own_kafka.send(
                "webhooks.subscriptions",
                {"id": ep, "url": url, "event_types": ["ssrf.x"], "secret": generate_secret()},
                key=ep,
            )
        async with w.api() as client:
            await eventually(lambda: _count(client, len(cases)))
            r = await client.post(
                "/subscriptions", json={"url": receiver.url(), "event_types": ["a"]}
            )
            assert r.status_code == 400 and r.json()["error"]["field"] == "url"
        await own_kafka.send("events.ssrf", event("ssrf.x", id=uid("e")))
        recs = await own_kafka.wait_records("webhooks.deadletter", lambda r: True, count=len(cases))
        reasons = {
            json_of(r)["endpoint_id"]: (json_of(r)["reason"], json_of(r)["last_error"])
            for r in recs
        }
        assert reasons["ep_http"] == ("invalid_target", "insecure_url")
        for ep in ("ep_loopback", "ep_localhost", "ep_metadata", "ep_mapped"):
            assert reasons[ep] == ("forbidden_address", "forbidden_address"), reasons
        assert receiver.requests == []
    finally:
        w.stop()


async def _count(client, n: int) -> bool:
    r = await client.get("/subscriptions", params={"limit": n})
    return len(r.json()["items"]) >= n


async def test_secrets_encrypted_at_rest_with_key_rotation(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    old_key, new_key = generate_key(), generate_key()
    w = Worker(own_broker.url, tmp_path / "w", env={"WEBHOOK_STREAM_SECRET_KEY": old_key}).start()
    try:
        await w.wait_ready()
        secret = (
            await w.create_subscription(id="ep", url=receiver.url("/enc"), event_types=["enc.x"])
        )["secret"]
        (stored,) = [
            r for r in await own_kafka.read_all("webhooks.subscriptions") if r.key == b"ep"
        ]
        assert secret.encode() not in stored.value
        assert base64.b64decode(secret.removeprefix("whsec_")) not in stored.value
        assert orjson.loads(stored.value)["secret"].startswith("enc:v1:")
        await own_kafka.send("events.enc", event("enc.x", id=uid("e")))
        (got,) = await receiver.wait_count("/enc", 1)
        verify(secret, got.headers, got.body)

        # Rotate the key: new first, old still accepted for reading.
        await w.terminate()
        w.env["WEBHOOK_STREAM_SECRET_KEY"] = f"{new_key},{old_key}"
        w.start()
        await w.wait_ready()
        await own_kafka.send("events.enc", event("enc.x", id=uid("e")))
        _, got = await receiver.wait_count("/enc", 2)
        verify(secret, got.headers, got.body)
        async with w.api() as client:
            rotated = (await client.post("/subscriptions/ep/rotate-secret")).json()["secret"]
        records = [r for r in await own_kafka.read_all("webhooks.subscriptions") if r.key == b"ep"]
        assert (
            rotated.encode() not in records[-1].value and secret.encode() not in records[-1].value
        )
        await own_kafka.send("events.enc", event("enc.x", id=uid("e")))
        _, _, got = await receiver.wait_count("/enc", 3)
        verify(rotated, got.headers, got.body)
        verify(secret, got.headers, got.body)  # still signing during the grace period
    finally:
        w.stop()
    for secret_value in (secret, rotated):
        assert secret_value not in w.log_text()


async def test_rate_limit_delays_without_blocking_others(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    etype = uid("rl") + ".x"
    await worker.create_subscription(
        id=uid("ep"), url=receiver.url("/limited"), event_types=[etype], rate_limit_per_s=5
    )
    await worker.create_subscription(id=uid("ep"), url=receiver.url("/free"), event_types=[etype])
    for i in range(15):
        await kafka.send("events.ratelimit", event(etype, {"i": i}, id=uid("e")), key="k")
    free = await receiver.wait_count("/free", 15, timeout=20)
    limited = await receiver.wait_count("/limited", 15, timeout=30)
    span = limited[-1].at - limited[0].at
    assert span >= (15 - 5) / 5 * 0.9, span  # burst of 5, then 5 per second
    assert span < 10, span
    assert free[-1].at - free[0].at < span  # the other endpoint was not held back
    assert [r.json["data"]["i"] for r in limited] == list(range(15))  # delayed, in order, none lost


async def test_410_disables_the_endpoint_until_patched(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    ep = uid("ep")
    etype = uid("gone") + ".x"
    receiver.script["/gone"] = 410
    await worker.create_subscription(id=ep, url=receiver.url("/gone"), event_types=[etype])
    await kafka.send("events.health", event(etype, id=uid("e")))
    (status,) = await kafka.wait_records(
        "webhooks.endpoint_status", lambda r: json_of(r)["endpoint_id"] == ep
    )
    assert json_of(status)["status"] == "disabled" and json_of(status)["reason"] == "gone"
    assert validation_errors("endpoint_status", json_of(status)) == []
    async with worker.api() as client:

        async def disabled() -> bool:
            return (await client.get(f"/subscriptions/{ep}")).json()["disabled"] is True

        await eventually(disabled)
        await kafka.send("events.health", event(etype, {"n": 2}, id=uid("e")))
        dls = await kafka.wait_records(
            "webhooks.deadletter", lambda r: json_of(r)["endpoint_id"] == ep, count=2
        )
        assert sorted(json_of(r)["reason"] for r in dls) == ["endpoint_disabled", "fatal_status"]
        assert len(receiver.at("/gone")) == 1
        receiver.script["/gone"] = 200
        r = await client.patch(f"/subscriptions/{ep}", json={"disabled": False})
        assert r.status_code == 200 and r.json()["disabled"] is False
    await kafka.send("events.health", event(etype, {"n": 3}, id=uid("e")))
    _, back = await receiver.wait_count("/gone", 2)
    assert back.json["data"] == {"n": 3}


async def test_consecutive_dead_letters_disable_the_endpoint(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    ep = uid("ep")
    etype = uid("dls") + ".x"
    receiver.script["/bad"] = 400
    await worker.create_subscription(id=ep, url=receiver.url("/bad"), event_types=[etype])
    for i in range(25):
        await kafka.send("events.health", event(etype, {"i": i}, id=uid("e")), key="k")
    (status,) = await kafka.wait_records(
        "webhooks.endpoint_status", lambda r: json_of(r)["endpoint_id"] == ep
    )
    assert json_of(status)["reason"] == "consecutive_dead_letters"
    assert json_of(status)["consecutive_failures"] == 20
    dls = await kafka.wait_records(
        "webhooks.deadletter", lambda r: json_of(r)["endpoint_id"] == ep, count=25
    )
    assert sum(json_of(r)["reason"] == "endpoint_disabled" for r in dls) >= 1
    assert len(receiver.at("/bad")) < 25


async def test_hostile_receivers_do_not_exhaust_memory_or_block_others(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    async def endless(req) -> web.StreamResponse:
        resp = web.StreamResponse(status=200)
        await resp.prepare(req.request)
        chunk = b"x" * 65536
        deadline = time.monotonic() + 20
        try:
            while time.monotonic() < deadline:  # bounded: at most 20 s of streaming
                await resp.write(chunk)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    async def drip(req) -> web.StreamResponse:
        resp = web.StreamResponse(status=200)
        await resp.prepare(req.request)
        try:
            for _ in range(40):
                await resp.write(b".")
                await asyncio.sleep(0.25)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    receiver.script["/endless"] = endless
    receiver.script["/drip"] = drip
    etype = uid("hostile") + ".x"
    ids = {p: uid("ep") for p in ("/endless", "/drip", "/normal")}
    for path, ep in ids.items():
        await worker.create_subscription(
            id=ep, url=receiver.url(path), event_types=[etype], timeout_s=2, max_attempts=1
        )
    rss_before = _rss_kb(worker)
    for i in range(3):
        await kafka.send("events.hostile", event(etype, {"i": i}, id=uid("e")), key="k")
    await receiver.wait_count("/normal", 3, timeout=10)
    attempts = await kafka.wait_records(
        "webhooks.attempts", lambda r: json_of(r)["endpoint_id"] == ids["/endless"], count=3
    )
    assert all(len(json_of(r)["response_body"]) == 1024 for r in attempts)
    drips = await kafka.wait_records(
        "webhooks.attempts",
        lambda r: json_of(r)["endpoint_id"] == ids["/drip"],
        count=1,
        timeout=30,
    )
    # The 200 counts as soon as it arrives; the dripping body is read for at most a second.
    assert json_of(drips[0])["status_code"] == 200 and json_of(drips[0])["duration_ms"] < 2000
    assert _rss_kb(worker) - rss_before < 100_000  # well under 100 MB grown


def _rss_kb(worker: Worker) -> int:
    assert worker.proc is not None
    for line in Path(f"/proc/{worker.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")
