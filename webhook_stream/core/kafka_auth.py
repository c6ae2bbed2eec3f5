"""How every Kafka client connects: TLS, SASL, and a check that fails fast and clearly.

:func:`client_options` is the one place security settings become aiokafka arguments; every
factory in :mod:`webhook_stream.core.kafka`, the topic admin and the Faust app's own
clients (``application.py``) take it. :func:`preflight` opens one connection before a
worker or a command starts its clients: aiokafka logs a TLS or SASL failure and retries
forever, so without it a wrong CA or password is a worker that never gets ready.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import ssl
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError

from webhook_stream.core.errors import KafkaSecurityError
from webhook_stream.core.settings import PREFIX, Settings

__all__ = ["client_options", "preflight", "ssl_context"]

log = logging.getLogger(__name__)


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for ``SSL``/``SASL_SSL`` (None for the plaintext protocols)."""
    if settings.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    try:
        context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
        if settings.kafka_ssl_certfile:
            context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise KafkaSecurityError(
            f"certificate files unusable ({PREFIX}KAFKA_SSL_CAFILE/CERTFILE/KEYFILE): "
            f"{exc.strerror or exc}"
        ) from None
    return context


@functools.cache
def _token_provider(spec: str) -> Any:
    module, _, name = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise KafkaSecurityError(
            f"{PREFIX}KAFKA_SASL_OAUTH_TOKEN_PROVIDER: cannot load {spec!r}: {exc}"
        ) from None
    return factory()


def client_options(settings: Settings) -> dict[str, Any]:
    """The security arguments of an aiokafka client (consumer, producer or admin)."""
    options: dict[str, Any] = {"security_protocol": settings.security_protocol}
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    mechanism = settings.kafka_sasl_mechanism
    if mechanism:
        options["sasl_mechanism"] = mechanism
        if mechanism == "OAUTHBEARER":
            options["sasl_oauth_token_provider"] = _token_provider(
                settings.kafka_sasl_oauth_token_provider
            )
        else:
            options["sasl_plain_username"] = settings.kafka_sasl_username
            # aiokafka wants a plain str; Secret is one, and keeps its repr masked.
            options["sasl_plain_password"] = settings.kafka_sasl_password
    return options


def _cause(exc: BaseException) -> str | None:
    """``certificate``/``TLS``/``authentication`` for a security failure, else None."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "certificate"
    if isinstance(exc, ssl.SSLError):
        return "TLS"
    name = type(exc).__name__
    if "Sasl" in name or "Authentication" in name or isinstance(exc, KeyError | ValueError):
        # aiokafka's SCRAM client fails with KeyError/ValueError on a refused exchange.
        return "authentication"
    return None


async def preflight(settings: Settings, timeout: float = 20.0) -> None:
    """Connect to one bootstrap server with the security settings, or explain why not.

    Raises :class:`KafkaSecurityError` naming the cause (certificate, TLS, authentication)
    when every server refuses for such a reason. Unreachable servers are left to the
    clients (they retry: a broker may be starting).
    """
    options = client_options(settings)
    failures: list[str] = []
    for server in settings.bootstrap_servers:
        host, port = _host_port(server)
        try:
            conn = await asyncio.wait_for(
                create_conn(host, port, request_timeout_ms=int(timeout * 1000), **options),
                timeout,
            )
        except (OSError, KafkaError, KeyError, ValueError, TimeoutError) as exc:
            cause = _cause(exc)
            if cause is None:
                log.warning("Kafka %s not reachable yet: %s", server, exc)
            else:
                failures.append(f"{cause} failure at {server}: {_describe(exc)}")
            continue
        conn.close()
        return
    if failures:
        raise KafkaSecurityError(
            "cannot connect to Kafka (security protocol "
            f"{settings.security_protocol}): " + "; ".join(failures) + _hint(failures[0])
        )


def _host_port(server: str) -> tuple[str, int]:
    host, sep, port = server.rpartition(":")
    if not sep or not port.isdigit() or host.endswith(":"):  # no port (IPv6 without [])
        return server.strip("[]"), 9092
    return host.strip("[]"), int(port)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message or exc.reason}"
    if isinstance(exc, KeyError | ValueError):
        return (
            "the broker ended the SCRAM exchange without a server proof "
            "(unknown user or wrong password)"
        )
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, ssl.SSLError) else text


def _hint(failure: str) -> str:
    if failure.startswith("certificate"):
        return (
            f" (check {PREFIX}KAFKA_SSL_CAFILE: it must hold the CA that signed the "
            "broker's certificate)"
        )
    if failure.startswith("authentication"):
        return (
            f" (check {PREFIX}KAFKA_SASL_MECHANISM, ..._USERNAME and ..._PASSWORD; "
            "the password is not shown)"
        )
    return ""
