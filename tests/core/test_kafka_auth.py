"""Every Kafka client the worker and the CLI create is built with the security settings.

Tansu 0.6.0 refuses SASL unless started with ``--authentication``, and then no SCRAM user
can be created in its memory store (``tansu user create`` gets an early EOF), so a
successful SASL login cannot be tested here: the configuration is proven by inspection
(this file) and the refusal end to end (``test_sasl_refusal_stops_the_worker``).
"""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

import webhook_stream
from tests.support import Worker, eventually
from webhook_stream.application import create_app
from webhook_stream.broker import EmbeddedBroker, free_port
from webhook_stream.core import kafka
from webhook_stream.core.errors import ConfigError
from webhook_stream.core.kafka_auth import client_options
from webhook_stream.core.settings import Settings

PASSWORD = "sasl-password-please-ignore-7788"
CLIENTS = ("AIOKafkaConsumer", "AdaptiveConsumer", "AIOKafkaProducer", "AIOKafkaAdminClient")


def sasl_settings(tmp_path: Path, mechanism: str = "SCRAM-SHA-512") -> Settings:
    from tests.tls import make_pki

    pki = make_pki(tmp_path)
    return Settings.from_env(
        {
            "WEBHOOK_STREAM_BROKER": "kafka://b1:9096;b2:9096",
            "WEBHOOK_STREAM_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "WEBHOOK_STREAM_KAFKA_SSL_CAFILE": str(pki.ca),
            "WEBHOOK_STREAM_KAFKA_SASL_MECHANISM": mechanism,
            "WEBHOOK_STREAM_KAFKA_SASL_USERNAME": "alice",
            "WEBHOOK_STREAM_KAFKA_SASL_PASSWORD": PASSWORD,
        }
    )


def assert_secured(client: object) -> None:
    inner = getattr(client, "_client", None) or client._sender.client  # type: ignore[attr-defined]
    assert inner._security_protocol == "SASL_SSL"
    assert inner._sasl_mechanism == "SCRAM-SHA-512"
    assert inner._sasl_plain_username == "alice"
    assert inner._sasl_plain_password == PASSWORD
    assert inner._ssl_context is not None
    assert sorted(h[:2] for h in inner.hosts) == [("b1", 9096), ("b2", 9096)]


async def test_every_factory_builds_secured_clients(tmp_path: Path) -> None:
    settings = sasl_settings(tmp_path)
    clients = [
        kafka.producer(settings),
        kafka.group_consumer(settings, "x"),
        kafka.tail_consumer(settings, background=True),
    ]
    try:
        for client in clients:
            assert_secured(client)
    finally:
        for client in clients:
            await client.stop()
    assert client_options(settings)["ssl_context"].verify_mode.name == "CERT_REQUIRED"


def test_every_client_in_the_package_is_built_through_connection() -> None:
    """No AIOKafka* client is constructed anywhere without ``**connection(settings)``."""
    root = Path(webhook_stream.__file__).parent
    sites = 0
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name not in CLIENTS:
                continue
            sites += 1
            spread = [k.value for k in node.keywords if k.arg is None]
            assert any(
                isinstance(v, ast.Call) and getattr(v.func, "id", "") == "connection"
                for v in spread
            ), f"{path.name}:{node.lineno} builds {name} without **connection(settings)"
    assert sites >= 6  # producer, group, tail, committed, commit_as, topic admin


def test_the_faust_app_gets_the_same_credentials(tmp_path: Path) -> None:
    settings = sasl_settings(tmp_path)
    app = create_app(settings)
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials, app.conf.ssl_context)
    ours = client_options(settings)
    for key in ("security_protocol", "sasl_mechanism", "sasl_plain_username"):
        assert auth[key] == ours[key]
    assert auth["sasl_plain_password"] == PASSWORD
    assert auth["ssl_context"] is not None
    assert str(app.conf.broker[0]) == "kafka://b1:9096"


def test_kafka_ssl_url_means_ssl_and_faust_gets_kafka_scheme(tmp_path: Path) -> None:
    settings = Settings(broker="kafka+ssl://h:9093")
    assert settings.security_protocol == "SSL"
    assert settings.bootstrap_servers == ["h:9093"]
    assert client_options(settings)["ssl_context"] is not None
    app = create_app(settings)
    assert str(app.conf.broker[0]) == "kafka://h:9093"
    assert credentials_to_aiokafka_auth(app.conf.broker_credentials)["security_protocol"] == "SSL"


def test_oauthbearer_uses_the_token_provider_hook(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "WEBHOOK_STREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "WEBHOOK_STREAM_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
            "WEBHOOK_STREAM_KAFKA_SASL_OAUTH_TOKEN_PROVIDER": "tests.core.tokens:provider",
        }
    )
    options = client_options(settings)
    assert options["sasl_mechanism"] == "OAUTHBEARER"
    token = asyncio.run(options["sasl_oauth_token_provider"].token())
    assert token == "test-oauth-token"
    producer_auth = credentials_to_aiokafka_auth(create_app(settings).conf.broker_credentials)
    assert producer_auth["sasl_oauth_token_provider"] is options["sasl_oauth_token_provider"]


def test_password_is_masked_in_settings_repr(tmp_path: Path) -> None:
    settings = sasl_settings(tmp_path)
    assert PASSWORD not in repr(settings)
    assert "kafka_sasl_password=Secret('**********')" in repr(settings)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_MECHANISM"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI"},
            "KAFKA_SASL_MECHANISM",
        ),
        ({"KAFKA_SASL_MECHANISM": "PLAIN"}, "KAFKA_SECURITY_PROTOCOL"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN"},
            "KAFKA_SASL_USERNAME",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "OAUTHBEARER"},
            "KAFKA_SASL_OAUTH_TOKEN_PROVIDER",
        ),
        ({"KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "KAFKA_SSL_CAFILE"),
        ({"KAFKA_SSL_CERTFILE": "/etc/hostname"}, "KAFKA_SSL_CERTFILE"),
    ],
)
def test_bad_security_settings_are_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env({f"WEBHOOK_STREAM_{k}": v for k, v in env.items()})


@pytest.mark.integration
async def test_sasl_refusal_stops_the_worker(tmp_path: Path) -> None:
    """Against Tansu with ``--authentication`` (no users): a SCRAM login is refused."""
    with EmbeddedBroker(
        port=free_port(), log_file=tmp_path / "tansu.log", authentication=True
    ) as broker:
        env = {
            "WEBHOOK_STREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "WEBHOOK_STREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "WEBHOOK_STREAM_KAFKA_SASL_USERNAME": "alice",
            "WEBHOOK_STREAM_KAFKA_SASL_PASSWORD": PASSWORD,
        }
        worker = Worker(broker.url, tmp_path / "w", env=env).start()
        try:
            assert worker.proc is not None
            await eventually(lambda: worker.proc.poll() is not None, timeout=60, interval=0.2)
            assert worker.proc.returncode != 0
            log = worker.log_text()
            assert "authentication failure" in log and "KAFKA_SASL_PASSWORD" not in log
            assert "..._PASSWORD" in log and PASSWORD not in log, worker.log_tail()
        finally:
            worker.stop()


async def test_preflight_passes_plaintext_and_leaves_unreachable_servers_to_the_clients(
    broker: EmbeddedBroker,
) -> None:
    from webhook_stream.core.kafka_auth import preflight

    await preflight(Settings(broker=broker.url))
    closed = free_port()
    await preflight(Settings(broker=f"kafka://127.0.0.1:{closed};{broker.bootstrap}"))
    await preflight(Settings(broker=f"kafka://127.0.0.1:{closed}"), timeout=2)  # no raise
