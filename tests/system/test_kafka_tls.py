"""Kafka over TLS for real: the embedded broker behind a TLS terminator with a test CA.

The broker advertises the terminator's port, so every connection a client opens (the
bootstrap one and those to the advertised broker) goes through TLS. A client that does
not trust the CA is refused, and the worker and the CLI stop with the cause named.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.support import Receiver, Worker, event, eventually, uid
from tests.tls import Pki, TlsProxy, make_pki
from webhook_stream.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration  # starts brokers and workers itself


class TlsBroker:
    def __init__(self, broker: EmbeddedBroker, proxy: TlsProxy, pki: Pki) -> None:
        self.broker, self.proxy, self.pki = broker, proxy, pki

    @property
    def url(self) -> str:
        return f"kafka+ssl://{self.proxy.bootstrap}"

    def env(self, cafile: Path | None = None) -> dict[str, str]:
        return {
            "WEBHOOK_STREAM_BROKER": self.url,
            "WEBHOOK_STREAM_KAFKA_SSL_CAFILE": str(cafile or self.pki.ca),
        }


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[TlsBroker]:
    pki = make_pki(tmp_path / "pki")
    tls_port = free_port()
    broker = EmbeddedBroker(
        port=free_port(), log_file=tmp_path / "tansu.log", advertised=f"127.0.0.1:{tls_port}"
    ).start()
    proxy = TlsProxy(pki, ("127.0.0.1", broker.port), tls_port).start()
    try:
        yield TlsBroker(broker, proxy, pki)
    finally:
        proxy.stop()
        broker.stop()


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook_stream.cli", *args],
        env={**os.environ, "WEBHOOK_STREAM_PARTITIONS": "4", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_worker_and_cli_deliver_over_tls(tls_broker: TlsBroker, tmp_path: Path) -> None:
    topics = await asyncio.to_thread(run_cli, "topics", env=tls_broker.env())
    assert topics.returncode == 0, topics.stderr
    assert "created" in topics.stdout
    receiver = await Receiver().start()
    worker = Worker(tls_broker.url, tmp_path / "w", env=tls_broker.env()).start()
    producer = AIOKafkaProducer(
        bootstrap_servers=tls_broker.proxy.bootstrap,
        security_protocol="SSL",
        ssl_context=ssl.create_default_context(cafile=str(tls_broker.pki.ca)),
    )
    try:
        await worker.wait_ready(timeout=90)
        etype = uid("tls")
        await worker.create_subscription(url=receiver.url("/tls"), event_types=[etype])
        await producer.start()
        await producer.send_and_wait("events.tls", orjson.dumps(event(etype, {"n": 1})))
        got = await receiver.wait_count("/tls", 1, timeout=60)
        assert got[0].json["data"] == {"n": 1}
        # `webhook-stream send` (the tour's producer) writes through TLS too, with the key.
        sent = await asyncio.to_thread(
            run_cli,
            "send",
            "events.tls",
            "--key",
            "k-tls",
            orjson.dumps(event(etype, {"n": 2})).decode(),
            env=tls_broker.env(),
        )
        assert sent.returncode == 0, sent.stderr
        assert "sent to events.tls" in sent.stdout
        got = await receiver.wait_count("/tls", 2, timeout=60)
        assert got[1].json["data"] == {"n": 2}
        # The replay command reads and writes through TLS too.
        replay = await asyncio.to_thread(
            run_cli, "replay", "deadletter", "--dry-run", env=tls_broker.env()
        )
        assert replay.returncode == 0, replay.stderr
        assert "scanned" in replay.stdout
    finally:
        await producer.stop()
        worker.stop()
        await receiver.stop()
    assert tls_broker.proxy.connections >= 3


async def test_wrong_ca_is_refused_with_a_clear_error(
    tls_broker: TlsBroker, tmp_path: Path
) -> None:
    other = make_pki(tmp_path / "other", name="other")
    env = tls_broker.env(cafile=other.ca)
    cli = await asyncio.to_thread(run_cli, "topics", env=env)
    assert cli.returncode == 2
    assert "certificate" in cli.stderr and "KAFKA_SSL_CAFILE" in cli.stderr, cli.stderr
    assert "Traceback" not in cli.stderr
    sent = await asyncio.to_thread(run_cli, "send", "events.tls", '{"type": "a.b"}', env=env)
    assert sent.returncode == 2 and "Traceback" not in sent.stderr
    assert "certificate" in sent.stderr and "KAFKA_SSL_CAFILE" in sent.stderr, sent.stderr
    worker = Worker(tls_broker.url, tmp_path / "w", env=env).start()
    try:
        assert worker.proc is not None
        await eventually(lambda: worker.proc.poll() is not None, timeout=60, interval=0.2)
        assert worker.proc.returncode != 0
        log = worker.log_text()
        assert "certificate verify failed" in log and "KAFKA_SSL_CAFILE" in log, worker.log_tail()
    finally:
        worker.stop()
