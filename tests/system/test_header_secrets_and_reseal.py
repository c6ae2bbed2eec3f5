"""Header values end to end (sealed on the topic, masked by the API, delivered in full), and
``webhook-stream reseal`` rotating ``WEBHOOK_STREAM_SECRET_KEY`` so the old key can go."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from tests.support import Kafka, Receiver, Worker, event, uid
from webhook_stream import verify
from webhook_stream.broker import EmbeddedBroker
from webhook_stream.core.sealing import generate_key

AUTH = "Bearer header-secret-please-ignore-4242-tail"
AUTH_2 = "Bearer header-secret-two-please-ignore-5151-next"


def reseal(broker: EmbeddedBroker, key: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WEBHOOK_STREAM_BROKER": broker.url, "WEBHOOK_STREAM_SECRET_KEY": key}
    env["WEBHOOK_STREAM_PARTITIONS"] = "4"
    return subprocess.run(
        [sys.executable, "-m", "webhook_stream.cli", "reseal"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_header_values_are_secret_settable_and_replaceable(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    worker = Worker(own_broker.url, tmp_path, env={"WEBHOOK_STREAM_SECRET_KEY": generate_key()})
    worker.start()
    try:
        await worker.wait_ready()
        etype = uid("hdr")
        created = await worker.create_subscription(
            url=receiver.url("/hdr"),
            event_types=[etype],
            headers={"Authorization": AUTH, "X-Team": "a"},
        )
        assert created["headers"] == {"Authorization": "****tail", "X-Team": "****"}
        ep = created["id"]
        async with worker.api() as api:
            one = (await api.get(f"/subscriptions/{ep}")).json()
            listed = (await api.get("/subscriptions")).json()["items"]
        assert one["headers"] == created["headers"]
        assert AUTH not in str(listed) and "****tail" in str(listed)
        stored = [
            r for r in await own_kafka.read_all("webhooks.subscriptions") if r.key == ep.encode()
        ]
        assert stored and AUTH.encode() not in stored[-1].value and b"enc:v1:" in stored[-1].value

        await own_kafka.send("events.hdr", event(etype, {"n": 1}))
        got = await receiver.wait_count("/hdr", 1)
        assert got[0].headers["Authorization"] == AUTH and got[0].headers["X-Team"] == "a"

        async with worker.api() as api:
            # What a read returned, sent back with one change: the masked value is kept.
            r = await api.patch(
                f"/subscriptions/{ep}", json={"headers": {**one["headers"], "X-Team": "b"}}
            )
            assert r.status_code == 200, r.text
            assert r.json()["headers"] == {"Authorization": "****tail", "X-Team": "****"}
            # A mask that is not the current value's is refused, naming the header.
            r = await api.patch(f"/subscriptions/{ep}", json={"headers": {"X-New": "****"}})
            assert r.status_code == 400 and r.json()["error"]["field"] == "headers.X-New", r.text
        await own_kafka.send("events.hdr", event(etype, {"n": 2}))
        got = await receiver.wait_count("/hdr", 2)
        assert got[1].headers["Authorization"] == AUTH and got[1].headers["X-Team"] == "b"

        async with worker.api() as api:
            r = await api.patch(f"/subscriptions/{ep}", json={"headers": {"Authorization": AUTH_2}})
            assert r.status_code == 200 and r.json()["headers"] == {"Authorization": "****next"}
        await own_kafka.send("events.hdr", event(etype, {"n": 3}))
        got = await receiver.wait_count("/hdr", 3)
        assert got[2].headers["Authorization"] == AUTH_2 and "X-Team" not in got[2].headers
    finally:
        worker.stop()
    assert AUTH not in worker.log_text() and AUTH_2 not in worker.log_text()


async def test_reseal_lets_the_old_key_be_dropped(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    old, new = generate_key(), generate_key()
    first = Worker(own_broker.url, tmp_path / "a", env={"WEBHOOK_STREAM_SECRET_KEY": old})
    first.start()
    etype = uid("rot")
    try:
        await first.wait_ready()
        made = [
            await first.create_subscription(
                url=receiver.url(f"/rot{i}"), event_types=[etype], headers={"Authorization": AUTH}
            )
            for i in range(3)
        ]
    finally:
        assert await first.terminate() == 0

    wrong = await asyncio.to_thread(reseal, own_broker, generate_key())
    assert wrong.returncode == 1 and "could not be opened" in wrong.stdout, wrong.stdout
    rotated = await asyncio.to_thread(reseal, own_broker, f"{new},{old}")
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    assert "3 endpoints, re-sealed 3" in rotated.stdout and "can be removed" in rotated.stdout

    second = Worker(own_broker.url, tmp_path / "b", env={"WEBHOOK_STREAM_SECRET_KEY": new})
    second.start()
    try:
        await second.wait_ready()
        async with second.api() as api:
            ids = {s["id"] for s in (await api.get("/subscriptions")).json()["items"]}
        assert {m["id"] for m in made} <= ids
        await own_kafka.send("events.rot", event(etype, {"n": 1}))
        for i, m in enumerate(made):
            got = (await receiver.wait_count(f"/rot{i}", 1))[0]
            assert got.headers["Authorization"] == AUTH
            verify(m["secret"], got.headers, got.body)
    finally:
        second.stop()
    # The superseded records sealed with the dropped key are not reported as errors.
    assert "refused" not in second.log_text(), second.log_tail()
    rejected = await own_kafka.read_all("webhooks.rejected")
    assert not [r for r in rejected if b"invalid_subscription" in (r.value or b"")]
