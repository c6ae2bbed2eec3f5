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
