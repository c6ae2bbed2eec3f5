"""Build the Faust application. Importing this module declares nothing by itself."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import faust
from faust.app.base import BootStrategy
from faust.types.auth import CredentialsT
from mode import ServiceT

from webhook_stream.api.routes.views import register_views
from webhook_stream.api.tenancy.quota import WriteQuota
from webhook_stream.core import kafka
from webhook_stream.core.kafka_auth import client_options
from webhook_stream.core.metrics import Metrics
from webhook_stream.core.settings import Settings
from webhook_stream.runtime import Runtime

__all__ = ["WebhookStreamApp", "create_app", "faust_credentials"]


class _Boot(BootStrategy):
    """Faust's services this app needs: its producer and web server, nothing of its own
    consumer. The consumer loops are the runtime's own, so Faust's consumer (with its
    thread, its group membership, fetch loop and heartbeats), its conductor, table manager
    and sensors would only burn CPU on the worker and the broker while idle (issue 34)."""

    enable_kafka_consumer = False
    enable_sensors = False


class WebhookStreamApp(faust.App):
    """A Faust app that hosts the :class:`Runtime` and the HTTP API.

    It declares no agents and no tables: the consumer loops are the runtime's own (see
    :mod:`webhook_stream.delivery.consumer` for why), so Faust's consumer is not started.
    """

    BootStrategy = _Boot

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings.app_id, **kwargs)
        self.ws_settings = settings
        self.ws_metrics = Metrics(
            settings.lag_interval,
            # Reads one record per lagging partition for its timestamp; small fetches suffice.
            lambda: kafka.tail_consumer(
                settings, background=True, max_partition_fetch_bytes=65_536
            ),
        )
        self.ws_write_quota = WriteQuota(settings.tenant_writes_per_s, settings.tenant_write_burst)
        self.runtime = Runtime(self, settings, self.ws_metrics, loop=None)

    def on_init_dependencies(self) -> Iterable[ServiceT]:
        deps = list(super().on_init_dependencies())
        if self.producer_only or self.client_only:
            return deps
        # Started first, stopped last.
        return [self.runtime, *deps]


def create_app(settings: Settings | None = None) -> WebhookStreamApp:
    """The worker application for ``settings`` (default: from the environment)."""
    settings = settings or Settings.from_env()
    app = WebhookStreamApp(
        settings,
        # Faust picks its transport by scheme: TLS comes from the credentials instead.
        broker="kafka://" + ";".join(settings.bootstrap_servers),
        broker_credentials=faust_credentials(client_options(settings)),
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_enabled=True,
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout,
        broker_rebalance_timeout=settings.rebalance_timeout,
        broker_heartbeat_interval=settings.heartbeat_interval,
        broker_commit_interval=settings.commit_interval,
        web_in_thread=False,
        # Faust's /router and /table views are open and show partition assignments and
        # table contents; this app has no tables and its API is the documented one.
        web_router_enabled=False,
        web_tables_enabled=False,
        logging_config=None,
    )
    register_views(app)
    return app


def faust_credentials(options: dict[str, Any]) -> CredentialsT | None:
    """:func:`~webhook_stream.core.kafka_auth.client_options` as Faust's ``broker_credentials``
    (Faust turns them back into the same aiokafka arguments for its own clients)."""
    protocol = options["security_protocol"]
    context = options.get("ssl_context")
    mechanism = options.get("sasl_mechanism")
    if mechanism == "OAUTHBEARER":
        return faust.OAuthCredentials(
            oauth_cb=options["sasl_oauth_token_provider"], ssl_context=context
        )
    if mechanism:
        return faust.SASLCredentials(
            username=options["sasl_plain_username"],
            password=options["sasl_plain_password"],
            ssl_context=context,
            mechanism=mechanism,
        )
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return None
