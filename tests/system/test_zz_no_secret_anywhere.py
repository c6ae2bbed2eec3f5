"""Last in the session (files run in name order): search everything the run produced.

Every signing secret and tenant token handed out by the API during the session, the
admin token and the egress proxy's password (tests/system/test_egress_proxy.py) must not
appear in any worker's log, in any record on the shared broker (keys, values, headers), or
in the metrics output.
"""

from __future__ import annotations

import base64
from pathlib import Path

import httpx

from tests.support import (
    PROXY_PASSWORD,
    PROXY_USER,
    SECRETS_USED,
    TENANT_TOKENS_USED,
    TOKEN,
    Kafka,
    Worker,
)

TOPICS = (
    "webhooks.deliveries",
    "webhooks.retry.1s",
    "webhooks.retry.2s",
    "webhooks.deadletter",
    "webhooks.attempts",
    "webhooks.rejected",
    "webhooks.endpoint_status",
    "webhooks.tokens",
)


def needles() -> list[bytes]:
    proxy_auth = base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode())
    out = [TOKEN.encode(), PROXY_PASSWORD.encode(), proxy_auth]
    out += [t.encode() for t in TENANT_TOKENS_USED]
    for secret in SECRETS_USED:
        key = base64.b64decode(secret.removeprefix("whsec_"))
        out += [secret.encode(), secret.removeprefix("whsec_").encode(), key]
    return out


async def test_no_secret_in_any_log_record_or_metric(
    worker: Worker, kafka: Kafka, tmp_path_factory
) -> None:
    assert len(SECRETS_USED) >= 5, "the other tests created subscriptions through the API"
    found = needles()
    logs = list(Path(tmp_path_factory.getbasetemp()).rglob("worker-*.log"))
    assert logs
    for log in logs:
        text = log.read_bytes()
        for needle in found:
            assert needle not in text, log
    for topic in TOPICS:
        for rec in await kafka.read_all(topic):
            raw = (rec.key or b"") + (rec.value or b"") + b"".join(v for _, v in rec.headers or ())
            for needle in found:
                assert needle not in raw, topic
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(worker.url + "/metrics")).content
    for needle in found:
        assert needle not in metrics


HEADER_VALUE = "Bearer scan-header-value-please-ignore-3141"
SASL_PASSWORD = "scan-sasl-password-please-ignore-2718"


async def test_no_header_value_or_sasl_password_anywhere(
    worker: Worker, kafka: Kafka, broker, tmp_path: Path, tmp_path_factory
) -> None:
    """Header values and the SASL password: not in logs, records, metrics, API responses."""
    import asyncio
    import os
    import subprocess
    import sys

    from tests.core.test_kafka_auth import PASSWORD as KAFKA_AUTH_PASSWORD
    from tests.support import Receiver, event, eventually, uid
    from tests.system.test_header_secrets_and_reseal import AUTH, AUTH_2

    receiver = await Receiver().start()
    try:
        etype = uid("scan")
        ok = await worker.create_subscription(
            url=receiver.url("/ok"), event_types=[etype], headers={"Authorization": HEADER_VALUE}
        )
        failing = await worker.create_subscription(
            url=receiver.url("/fail"),
            event_types=[etype],
            headers={"X-Api-Key": HEADER_VALUE},
            max_attempts=1,
        )
        receiver.script["/fail"] = 500
        await kafka.send(f"events.{etype}", event(etype, {"n": 1}))
        got = await receiver.wait_count("/ok", 1)
        assert got[0].headers["Authorization"] == HEADER_VALUE  # delivered in full
        await kafka.wait_records(
            "webhooks.deadletter", lambda r: failing["id"].encode() in (r.value or b"")
        )
        responses = []
        async with worker.api() as api:
            listing, after = b"", None
            for _ in range(100):  # every page of the list, wherever our ids sort
                params = {"limit": 500, **({"after": after} if after else {})}
                reply = await api.get("/subscriptions", params=params)
                listing += reply.content
                after = reply.json()["next"]
                if not after:
                    break
            responses.append(listing)
            responses.append((await api.get(f"/subscriptions/{ok['id']}")).content)
            responses.append((await api.get(f"/subscriptions/{failing['id']}/attempts")).content)
            responses.append(
                (await api.patch(f"/subscriptions/{ok['id']}", json={"description": "x"})).content
            )
    finally:
        await receiver.stop()
    assert b"****3141" in responses[0]

    # A worker and a command with a SASL password (Tansu refuses SASL here): they stop,
    # and say why, without the password.
    env = {
        "WEBHOOK_STREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "WEBHOOK_STREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "WEBHOOK_STREAM_KAFKA_SASL_USERNAME": "scan",
        "WEBHOOK_STREAM_KAFKA_SASL_PASSWORD": SASL_PASSWORD,
    }
    sasl_worker = Worker(broker.url, tmp_path / "sasl", env=env).start()
    try:
        await eventually(lambda: sasl_worker.proc.poll() is not None, timeout=60, interval=0.2)
    finally:
        sasl_worker.stop()
    assert "authentication failure" in sasl_worker.log_text()
    cli = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "webhook_stream.cli", "topics"],
        env={**os.environ, "WEBHOOK_STREAM_BROKER": broker.url, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 2 and "authentication" in cli.stderr

    found = [s.encode() for s in (HEADER_VALUE, SASL_PASSWORD, KAFKA_AUTH_PASSWORD, AUTH, AUTH_2)]
    logs = list(Path(tmp_path_factory.getbasetemp()).rglob("worker-*.log"))
    assert sasl_worker.log_path in logs
    for log in logs:
        text = log.read_bytes()
        for needle in found:
            assert needle not in text, log
    for text in (cli.stdout, cli.stderr):
        assert SASL_PASSWORD not in text
    # The session worker runs without WEBHOOK_STREAM_SECRET_KEY, so webhooks.subscriptions
    # holds header values in clear (like signing secrets); every other topic must not.
    for topic in TOPICS:
        for rec in await kafka.read_all(topic):
            raw = (rec.key or b"") + (rec.value or b"") + b"".join(v for _, v in rec.headers or ())
            for needle in found:
                assert needle not in raw, topic
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(worker.url + "/metrics")).content
    for body in (metrics, *responses):
        for needle in found:
            assert needle not in body
