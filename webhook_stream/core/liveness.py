"""Is the broker still there? A worker that cannot reach it for long stops, non-zero.

aiokafka's consumers retry a lost broker forever, quietly, and its producer fails each
send only after ``request_timeout_ms``: a worker cut off from Kafka would look alive to
its orchestrator and do nothing. :class:`BrokerWatch` asks the cluster for its metadata
every few seconds; after ``broker_unavailable_timeout`` without an answer it calls
``on_lost``, and the runtime stops the worker with exit status 1 so it is restarted.
Nothing is lost: offsets are only ever committed past finished work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaProducer

from webhook_stream.core.errors import BrokerError

__all__ = ["BrokerWatch"]

log = logging.getLogger(__name__)


class BrokerWatch:
    """Probe the broker through ``producer``; ``on_lost`` once it stays unreachable."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        timeout: float,
        on_lost: Callable[[BaseException], None],
        bootstrap: str = "",
    ) -> None:
        self._producer = producer
        self._timeout = timeout
        self._on_lost = on_lost
        self._bootstrap = bootstrap
        self._interval = max(0.2, min(5.0, timeout / 5))
        self._running = True
        self._stopped = asyncio.Event()
        #: monotonic time of the last answer from the broker
        self.last_seen = time.monotonic()

    def stop(self) -> None:
        self._running = False
        self._stopped.set()

    async def run(self) -> None:
        if self._timeout <= 0:
            return  # switched off
        failing_since: float | None = None
        while self._running:
            try:
                await asyncio.wait_for(
                    self._producer.client.fetch_all_metadata(), timeout=self._interval * 2
                )
            except Exception as exc:  # noqa: BLE001 - every failure counts as "not reachable"
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                    log.warning(
                        "Kafka broker %s not reachable (%r); the worker exits if this lasts %.0fs",
                        self._bootstrap,
                        exc,
                        self._timeout,
                    )
                if now - self.last_seen >= self._timeout:
                    lost = BrokerError(
                        f"Kafka broker {self._bootstrap} unreachable for "
                        f"{now - self.last_seen:.0f}s (WEBHOOK_STREAM_BROKER_UNAVAILABLE_TIMEOUT "
                        f"{self._timeout:g}s): exiting with status 1 so that the worker is "
                        "restarted; uncommitted work is redone by the next owner"
                    )
                    log.critical("%s", lost)
                    self._on_lost(lost)
                    return
            else:
                if failing_since is not None:
                    log.warning(
                        "Kafka broker reachable again after %.0fs", time.monotonic() - failing_since
                    )
                    failing_since = None
                self.last_seen = time.monotonic()
            try:
                await asyncio.wait_for(self._stopped.wait(), timeout=self._interval)
            except TimeoutError:
                pass
