"""ed25519 (``v1a``) signatures on a real worker, checked by an independent implementation.

The receiver here never uses webhook-stream's ``verify()``: it checks the Standard Webhooks
``v1a`` entries with the ``cryptography`` package directly, through a key rotation whose
grace period (4 s here) ends while the test watches.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.support import Kafka, Received, Receiver, Worker, event, eventually, uid
from webhook_stream import verify
from webhook_stream.broker import EmbeddedBroker
from webhook_stream.core.sealing import SecretBox

pytestmark = pytest.mark.integration

GRACE_S = 4


def v1a_verifies(public_key: str, got: Received) -> bool:
    """Standard Webhooks v1a, by hand: ed25519 over ``id.timestamp.body``."""
    assert public_key.startswith("whpk_")
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key[len("whpk_") :]))
    content = f"{got.headers['webhook-id']}.{got.headers['webhook-timestamp']}.".encode()
    for entry in got.headers["webhook-signature"].split():
        version, _, value = entry.partition(",")
        if version == "v1a":
            try:
                key.verify(base64.b64decode(value), content + got.body)
                return True
            except InvalidSignature:
                continue
    return False


def versions(got: Received) -> list[str]:
    return [entry.split(",")[0] for entry in got.headers["webhook-signature"].split()]


async def test_v1a_through_a_rotation_checked_without_our_helper(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    env = {
        "WEBHOOK_STREAM_SECRET_ROTATION_GRACE": f"{GRACE_S}s",
        "WEBHOOK_STREAM_SECRET_KEY": SecretBox.generate_key(),
    }
    w = Worker(own_broker.url, tmp_path / "w", env=env).start()
    private_keys_seen: list[str] = []
    try:
        await w.wait_ready()
        sub = await w.create_subscription(
            id="ed", url=receiver.url("/ed"), event_types=["ed.x"], signature_scheme="ed25519"
        )
        old_key = sub["public_key"]
        assert old_key.startswith("whpk_") and len(base64.b64decode(old_key[5:])) == 32
        assert sub["signature_scheme"] == "ed25519" and "signing_key" not in sub
        async with w.api() as c:
            read = (await c.get("/subscriptions/ed")).json()
        assert read["public_key"] == old_key and "signing_key" not in read

        await own_kafka.send("events.ed", event("ed.x", id=uid("e")))
        (first,) = await receiver.wait_count("/ed", 1)
        assert versions(first) == ["v1a"]  # ed25519 only: no HMAC signature
        assert v1a_verifies(old_key, first)

        async with w.api() as c:
            r = await c.post("/subscriptions/ed/rotate-secret")
        assert r.status_code == 200, r.text
        new_key, new_secret = r.json()["public_key"], r.json()["secret"]
        assert new_key != old_key
        rotated_at = time.time()

        # Within the grace period both keys sign: a receiver on either verifies.
        await own_kafka.send("events.ed", event("ed.x", id=uid("e")))
        second = (await receiver.wait_count("/ed", 2))[1]
        assert versions(second) == ["v1a", "v1a"]
        assert v1a_verifies(old_key, second) and v1a_verifies(new_key, second)
        verify(new_key, second.headers, second.body)  # and our helper agrees
        verify(old_key, second.headers, second.body)

        # After it, only the new key signs.
        await eventually(lambda: time.time() > rotated_at + GRACE_S + 1, timeout=GRACE_S + 5)
        await own_kafka.send("events.ed", event("ed.x", id=uid("e")))
        third = (await receiver.wait_count("/ed", 3))[2]
        assert versions(third) == ["v1a"]
        assert v1a_verifies(new_key, third) and not v1a_verifies(old_key, third)

        # "both" during a migration: v1 with the secret and v1a with the key.
        async with w.api() as c:
            r = await c.patch("/subscriptions/ed", json={"signature_scheme": "both"})
        assert r.status_code == 200, r.text
        assert r.json()["public_key"] == new_key
        await own_kafka.send("events.ed", event("ed.x", id=uid("e")))
        fourth = (await receiver.wait_count("/ed", 4))[3]
        assert sorted(versions(fourth)) == ["v1", "v1a"]
        assert v1a_verifies(new_key, fourth)
        verify(new_secret, fourth.headers, fourth.body)

        # The private keys are sealed on the topic and never in the log or any other record.
        for rec in await own_kafka.read_all("webhooks.subscriptions"):
            doc = rec.value or b""
            assert b"whsk_" not in doc, "a private key in clear on webhooks.subscriptions"
            private_keys_seen.append(doc.decode(errors="replace"))
        assert "whsk_" not in w.log_text()
        for topic in ("webhooks.attempts", "webhooks.deliveries", "webhooks.subscription_requests"):
            for rec in await own_kafka.read_all(topic):
                raw = (rec.key or b"") + (rec.value or b"")
                assert b"whsk_" not in raw, topic
    finally:
        w.stop()
    assert private_keys_seen


async def test_a_bad_scheme_is_a_400_naming_the_field(worker: Worker) -> None:
    async with worker.api() as c:
        r = await c.post(
            "/subscriptions",
            json={"url": "http://127.0.0.1:9/x", "event_types": ["a"], "signature_scheme": "rsa"},
        )
        assert r.status_code == 400 and r.json()["error"]["field"] == "signature_scheme"
        r = await c.post(
            "/subscriptions",
            json={"url": "http://127.0.0.1:9/x", "event_types": ["a"], "signing_key": "whsk_AAA"},
        )
        assert r.status_code == 400 and r.json()["error"]["field"] == "signing_key"
        assert "whsk_AAA" not in r.text
