"""A thin extension of Faust's aiokafka driver: a configurable fetch wait.

Faust hardcodes ``fetch_max_wait_ms=1500`` for its consumer. A broker that does not
answer a fetch early when data arrives (Tansu, measured: about 0.7 s mean added per hop)
then adds up to 1.5 s to every delivery. This driver applies ``fetch_max_wait`` from
settings; nothing else changes.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as driver

__all__ = ["Transport"]


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        settings = getattr(self.app, "ws_settings", None)
        if settings is not None:
            # Read by AIOKafkaConsumer.start() when it builds its fetcher.
            consumer._fetch_max_wait_ms = int(settings.fetch_max_wait * 1000)
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(driver.Transport):
    """``kafka://`` transport whose consumer honours ``WEBHOOK_STREAM_FETCH_MAX_WAIT``."""

    Consumer = _Consumer
