"""No secret anywhere: every test here stands on its own (any order, any selection).

``test_no_secret_in_any_log_record_response_or_metric`` hands a worker of its own (own
broker, sealing key) its own signing secrets (given, generated, rotated), header values
(set on create and on PATCH), receiver credentials (an OAuth2 client secret and the tokens
issued with it, a Basic password, a client certificate's key, ed25519 private keys), a
tenant token and the API token; runs them through every
path that touches them (deliveries that succeed, retry, dead-letter and disable the
endpoint; a test event; rotation; refused input; writes decided across the request and
result topics; the attempt and delivery status routes), then searches what that produced:
the worker's log, every record on every topic (keys, values, headers), the metrics, and
every API response except the ones that hand a secret out once.

``test_no_header_value_or_sasl_password_anywhere`` does the same for header values on the
session worker, which runs *without* a sealing key, and for a SASL password.

``test_nothing_the_session_handed_out_leaked`` also searches whatever the rest of the
session produced (signing secrets and tenant tokens other tests were given, the admin
token): it checks more the more tests ran before it, and needs none of them.
"""

from __future__ import annotations

import base64
import contextlib
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer

from tests.oauth2_server import TokenServer
from tests.support import (
    SECRETS_USED,
    TENANT_TOKENS_USED,
    TOKEN,
    Kafka,
    Receiver,
    Worker,
    event,
    eventually,
    json_of,
    uid,
)
from tests.tls import make_client_pki
from webhook_stream.broker import EmbeddedBroker
from webhook_stream.core.sealing import SecretBox
from webhook_stream.subscriptions.model import generate_secret

#: Every topic of the session broker that is not expected to hold secrets in clear
#: (the session worker has no sealing key: webhooks.subscriptions holds them in clear).
TOPICS = (
    "webhooks.deliveries",
    "webhooks.retry.1s",
    "webhooks.retry.2s",
    "webhooks.deadletter",
    "webhooks.attempts",
    "webhooks.rejected",
    "webhooks.endpoint_status",
    "webhooks.endpoint_health",
    "webhooks.subscription_requests",
    "webhooks.subscription_results",
    "webhooks.tokens",
)


def needles(secrets: list[str], others: list[str]) -> list[bytes]:
    out = [o.encode() for o in others]
    for secret in secrets:
        body = secret.removeprefix("whsec_")
        out += [secret.encode(), body.encode(), base64.b64decode(body)]
    return out


async def every_record(bootstrap: str, kafka: Kafka) -> dict[str, list]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        topics = sorted(await consumer.topics())
    finally:
        await consumer.stop()
    return {t: await kafka.read_all(t) for t in topics}


async def test_no_secret_in_any_log_record_response_or_metric(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    sealing_key = SecretBox.generate_key()
    w = Worker(own_broker.url, tmp_path / "w", env={"WEBHOOK_STREAM_SECRET_KEY": sealing_key})
    w.start()
    given = generate_secret()
    bad_secret = "whsec_" + "A" * 20 + "!!"
    header_values = ["Bearer own-scan-header-value-1618", "own-scan-header-value-patched-1414"]
    receiver.script["/fail"] = 500
    receiver.script["/gone"] = 410
    etype = uid("sec") + ".x"
    ids = {p: uid("ep") for p in ("/ok", "/fail", "/gone")}
    secrets: list[str] = [given]
    responses: list[httpx.Response] = []
    receiver_secrets = ["scan-oauth2-client-secret-2236", "scan-basic-password-1732"]
    client_pki = make_client_pki("scan")
    stack = contextlib.AsyncExitStack()
    try:
        await w.wait_ready()
        async with w.api() as c:
            r = await c.post(
                "/subscriptions",
                json={
                    "id": ids["/ok"],
                    "url": receiver.url("/ok"),
                    "event_types": [etype],
                    "secret": given,
                    "headers": {"X-Team": "a", "Authorization": header_values[0]},
                },
            )
            assert r.status_code == 201 and r.json()["secret"] == given
            masked = r.json()["headers"]
            # A new header value, and the other sent back masked (kept): decided by the owner.
            r = await c.patch(
                f"/subscriptions/{ids['/ok']}",
                json={"headers": {**masked, "X-Key": header_values[1]}},
            )
            assert r.status_code == 200, r.text
            responses.append(r)
            tenant_token = (await w.issue_token("t-scan"))["token"]
            async with w.api() as as_tenant:
                as_tenant.headers["Authorization"] = f"Bearer {tenant_token}"
                r = await as_tenant.post(
                    "/subscriptions",
                    json={"url": receiver.url("/tenant"), "event_types": ["t.x"]},
                )
                assert r.status_code == 201 and r.json()["tenant_id"] == "t-scan", r.text
                secrets.append(r.json()["secret"])
                responses.append(
                    await as_tenant.patch(
                        f"/subscriptions/{r.json()['id']}",
                        json={"headers": {"X-Key": header_values[1]}},
                    )
                )
            for path in ("/fail", "/gone"):
                r = await c.post(
                    "/subscriptions",
                    json={
                        "id": ids[path],
                        "url": receiver.url(path),
                        "event_types": [etype],
                        "max_attempts": 2,
                    },
                )
                assert r.status_code == 201
                secrets.append(r.json()["secret"])
            rotated = await c.post(f"/subscriptions/{ids['/ok']}/rotate-secret")
            assert rotated.status_code == 200
            secrets.append(rotated.json()["secret"])
            # Refused input that carries a secret: the error must not echo it.
            responses.append(
                await c.post(
                    "/subscriptions",
                    json={"url": receiver.url(), "event_types": ["x"], "secret": bad_secret},
                )
            )
            responses.append(await c.patch(f"/subscriptions/{ids['/ok']}", json={"secret": given}))
            assert [r.status_code for r in responses[-2:]] == [400, 400]
            responses.append(await c.post(f"/subscriptions/{ids['/ok']}/test"))
            responses.append(
                await c.patch(f"/subscriptions/{ids['/fail']}", json={"description": "d"})
            )
            # Receivers that demand more: OAuth2 + a client certificate + ed25519, Basic.
            tokens = await TokenServer("scan-client", receiver_secrets[0]).start()
            stack.push_async_callback(tokens.stop)
            r = await c.post(
                "/subscriptions",
                json={
                    "id": "rx-oauth",
                    "url": receiver.url("/rx-oauth"),
                    "event_types": [etype],
                    "signature_scheme": "both",
                    "auth": {
                        "type": "oauth2_client_credentials",
                        "token_url": tokens.url,
                        "client_id": "scan-client",
                        "client_secret": receiver_secrets[0],
                    },
                    "tls": client_pki.endpoint_tls(),
                },
            )
            assert r.status_code == 201, r.text
            secrets.append(r.json()["secret"])
            read = (await c.get("/subscriptions/rx-oauth")).json()
            responses.append(
                await c.patch("/subscriptions/rx-oauth", json={k: read[k] for k in ("auth", "tls")})
            )
            assert responses[-1].status_code == 200, responses[-1].text
            rotated = await c.post("/subscriptions/rx-oauth/rotate-secret")
            secrets.append(rotated.json()["secret"])
            r = await c.post(
                "/subscriptions",
                json={
                    "id": "rx-basic",
                    "url": receiver.url("/rx-basic"),
                    "event_types": [etype],
                    "auth": {"type": "basic", "username": "scan", "password": receiver_secrets[1]},
                },
            )
            assert r.status_code == 201, r.text
            secrets.append(r.json()["secret"])
            await own_kafka.send("events.secrets", event(etype, {"n": 1}, id=uid("e")))
            await receiver.wait_count("/ok", 2, timeout=30)  # the event and the test event
            await receiver.wait_count("/rx-oauth", 1, timeout=30)
            await receiver.wait_count("/rx-basic", 1, timeout=30)
            receiver_secrets.extend(t["access_token"] for t in tokens.issued)
            await own_kafka.wait_records(
                "webhooks.deadletter",
                lambda r: json_of(r)["endpoint_id"] == ids["/fail"],
                timeout=30,
            )
            await own_kafka.wait_records(
                "webhooks.endpoint_status", lambda r: json_of(r)["endpoint_id"] == ids["/gone"]
            )
            delivery_id = receiver.at("/ok")[0].headers["webhook-id"]
            responses.append(await c.get("/subscriptions"))
            for ep in ids.values():
                responses.append(await c.get(f"/subscriptions/{ep}"))

                async def logged(ep: str = ep) -> httpx.Response | None:
                    r = await c.get(f"/subscriptions/{ep}/attempts")
                    return r if r.status_code == 200 and r.json()["items"] else None

                responses.append(await eventually(logged, timeout=30))
            responses.append(await c.get(f"/deliveries/{delivery_id}"))
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(w.url + "/metrics")).content
            responses.append(await client.get(w.url + "/health"))
    finally:
        w.stop()
        await stack.aclose()
    assert len(secrets) == 8 and len(receiver_secrets) >= 3  # and a token at least
    basic = base64.b64encode(f"scan:{receiver_secrets[1]}".encode()).decode()
    key_body = "".join(client_pki.key.splitlines()[1:-1])
    others = [TOKEN, sealing_key, bad_secret, tenant_token, *header_values, *receiver_secrets]
    # "whsk_": no ed25519 private key anywhere (sealed on webhooks.subscriptions).
    found = needles(secrets, [*others, basic, key_body, "whsk_"])
    log = w.log_text().encode()
    assert log
    records = await every_record(own_broker.bootstrap, own_kafka)
    for topic in ("webhooks.subscriptions", "webhooks.attempts", "webhooks.endpoint_health"):
        assert records.get(topic), topic
    requests = records.get("webhooks.subscription_requests", [])
    assert {json_of(r)["op"] for r in requests} >= {"create", "patch", "rotate", "disable"}
    assert records.get("webhooks.subscription_results")
    for needle in found:
        assert needle not in log
        assert needle not in metrics
        for r in responses:
            assert needle not in r.content, r.request.url
        for topic, recs in records.items():
            for rec in recs:
                raw = (rec.key or b"") + (rec.value or b"")
                raw += b"".join(v for _, v in rec.headers or ())
                assert needle not in raw, topic


async def test_nothing_the_session_handed_out_leaked(
    worker: Worker, kafka: Kafka, tmp_path_factory
) -> None:
    found = needles(list(SECRETS_USED), [TOKEN, *TENANT_TOKENS_USED])
    logs = list(Path(tmp_path_factory.getbasetemp()).rglob("worker-*.log"))
    assert logs  # the session worker's, at least
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
