"""Build the Faust application. Importing this module declares nothing by itself."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import faust
from mode import ServiceT

from . import api, delivery
from .faust_driver import Transport
from .metrics import Metrics
from .runtime import Runtime
from .settings import Settings

__all__ = ["WebhookStreamApp", "create_app"]


class WebhookStreamApp(faust.App):
    """A Faust app that starts the :class:`Runtime` before its consumer and stops it after."""

    def __init__(self, settings: Settings, **kwargs: object) -> None:
        super().__init__(settings.app_id, **kwargs)
        self.ws_settings = settings
        self.ws_metrics = Metrics()
        self.runtime = Runtime(self, settings, self.ws_metrics, loop=None)

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)

    async def _consumer_wait_empty(self, consumer: Any, logger: Any) -> None:
        # Replaces Faust's unbounded wait before it commits (shutdown, revocation): the
        # delivery path finishes what it took, bounded, so those acks make the commit.
        delivery = self.runtime.delivery
        if delivery is None:
            return
        timeout = self.ws_settings.shutdown_timeout
        if not self.should_stop:
            # A rebalance must finish within the group's rebalance timeout.
            timeout = min(timeout, self.ws_settings.rebalance_timeout * 0.8)
        logger.info("draining in-flight deliveries (up to %.0fs)...", timeout)
        await delivery.quiesce(timeout, final=self.should_stop)

    async def _on_partitions_assigned(self, assigned: Any, generation_id: int = 0) -> None:
        await super()._on_partitions_assigned(assigned, generation_id)
        self.runtime.app_assigned.set()

    def on_init_dependencies(self) -> Iterable[ServiceT]:
        deps = list(super().on_init_dependencies())
        if self.producer_only or self.client_only:
            return deps
        # Started first, stopped last: the delivery path outlives the consumer feeding it.
        return [self.runtime, *deps]


def create_app(settings: Settings | None = None) -> WebhookStreamApp:
    """The worker application for ``settings`` (default: from the environment)."""
    settings = settings or Settings.from_env()
    app = WebhookStreamApp(
        settings,
        broker=settings.broker,
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
        # The delivery path bounds and drains its own in-flight work (quiesce); Faust's
        # unbounded wait would hold a rebalance behind a queue of slow endpoints.
        stream_wait_empty=False,
        web_in_thread=False,
        logging_config=None,
    )
    delivery.register_agent(app, app.runtime.delivery_path)
    api.register_views(app)
    return app
