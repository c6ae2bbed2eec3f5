"""The worker's own services, started before Faust's (web server, producer) and stopped after them.

Owns the shared producer and HTTP client, the subscription registry, the tenant-token
store, the three consumer loops: events in (fan-out), deliveries in (delivery) and the
retry scheduler, and the status view's process.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import threading
from functools import partial
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from mode import Service

from webhook_stream.api.tenancy.tokenstore import TokenStore
from webhook_stream.core import kafka, kafka_auth, tracing
from webhook_stream.core.errors import KafkaSecurityError
from webhook_stream.core.lease import StallWatch, describe
from webhook_stream.core.liveness import BrokerWatch
from webhook_stream.core.metrics import Metrics
from webhook_stream.core.rejected import reject
from webhook_stream.core.settings import Settings
from webhook_stream.core.table_tail import TableTail
from webhook_stream.core.topics import ensure_topics
from webhook_stream.delivery.consumer import DeliveriesIn
from webhook_stream.delivery.dispatcher import Dispatcher
from webhook_stream.failures.retry import RetryScheduler
from webhook_stream.http.egress import Egress
from webhook_stream.http.proxied import egress_client
from webhook_stream.ingest.consumer import EventsIn
from webhook_stream.ingest.process import FanoutProcess
from webhook_stream.status.process import StatusProcess
from webhook_stream.status.routing import StatusRouter
from webhook_stream.subscriptions.catalog_store import EventTypeCatalog
from webhook_stream.subscriptions.registry import SubscriptionRegistry
from webhook_stream.subscriptions.secrets import SECRET_FIELDS
from webhook_stream.subscriptions.writes import SubscriptionWriter, WriteClient

__all__ = ["Runtime"]

log = logging.getLogger(__name__)

#: Seconds a worker that lost its broker gets to stop in order before it exits anyway.
_BROKER_LOST_GRACE = 5.0
#: The stall watch's tick, and the gap between ticks reported as a stall (a tick is a
#: wakeup of an idle worker: once a second is enough to see a 2 s stall).
_STALL_TICK = 1.0
_STALL_REPORTED = 2.0


def _exit_now(waited: float) -> None:
    log.critical("the worker did not stop within %.0fs of its crash: exiting now, status 1", waited)
    logging.shutdown()
    os._exit(1)


class Runtime(Service):
    """Everything a worker runs besides Faust's own machinery."""

    def __init__(self, app: Any, settings: Settings, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.producer: AIOKafkaProducer | None = None
        self.batcher: kafka.RecordBatcher | None = None
        self.http: Egress | None = None
        self.registry = SubscriptionRegistry(settings, on_invalid=self._on_invalid_subscription)
        self.tokens = TokenStore(settings)
        self.catalog = EventTypeCatalog(settings)
        self.delivery: DeliveriesIn | None = None
        self.writes: WriteClient | None = None
        #: Set at start, once the web port (the ``--web-port`` flag wins) is known.
        self.status: StatusRouter | None = None
        self._crash_task: asyncio.Future[None] | None = None
        self._loops: list[Any] = []
        self._joined: list[asyncio.Event] = []
        self._loop_tasks: set[asyncio.Task[None]] = set()
        #: OFF unless OTEL_TRACES_EXPORTER asks for spans (then the SDK is loaded).
        self.tracer: tracing.Tracer = tracing.OFF
        #: The fan-out: in a child process (``fanout``) or in this one (``events_in``).
        self.events_in: EventsIn | None = None
        self.fanout: FanoutProcess | None = None

    def _configure_web(self) -> None:
        """Before the web server starts: listen on exactly ``web_host`` (Faust would bind
        ``web_bind``, 0.0.0.0 by default) and close connections without a whole request
        within ``web_client_timeout`` (slow or idle clients; aiohttp's default is an hour)."""
        conf = self.app.conf
        conf.web_bind = conf.web_host
        web = getattr(self.app, "web", None)
        runner = getattr(web, "_runner", None)
        if runner is not None:
            runner._kwargs["keepalive_timeout"] = self.settings.web_client_timeout

    async def on_start(self) -> None:
        self._configure_web()
        # aiokafka's debug lines were built and discarded on every fetch and send (measured
        # at 8 % of the worker's CPU under load); they are never wanted in a worker.
        logging.getLogger("aiokafka").setLevel(max(logging.INFO, log.getEffectiveLevel()))
        gc.set_threshold(self.settings.gc_threshold, *gc.get_threshold()[1:])
        try:
            await kafka_auth.preflight(self.settings)
        except KafkaSecurityError as exc:
            # Otherwise every client would log and retry forever: stop with the cause.
            log.critical("stopping the worker: %s", exc)
            raise
        await ensure_topics(self.settings)
        self.tracer = tracer = tracing.from_env()
        self.producer = producer = kafka.producer(self.settings)
        await producer.start()
        self.http = egress_client(self.settings)  # proxied when EGRESS_PROXY is set
        await self.http.start()
        # Attempt records (and delivery records, when the fan-out runs here) go in batches.
        # No reader waits for an attempt record, so with the fan-out in its child they
        # linger: one batch per partition per ATTEMPTS_LINGER_S, whatever this worker's
        # share of the load.
        self.batcher = batcher = kafka.RecordBatcher(
            producer,
            max_record_bytes=self.settings.max_record_bytes,
            linger_s=kafka.ATTEMPTS_LINGER_S if self.settings.fanout_process else 0.0,
        )
        self.writes = writes = WriteClient(self.settings, self.registry, producer)
        writer = SubscriptionWriter(self.settings, self.registry, producer, self.metrics)
        dispatcher = partial(
            Dispatcher,
            self.settings,
            self.registry,
            self.http,
            producer,
            batcher,
            self.metrics,
            writes,
            tracer,
        )
        self.delivery = delivery = DeliveriesIn(
            self.settings, dispatcher, self.registry, producer, self.metrics, self.fail
        )
        fan_out: EventsIn | FanoutProcess
        if self.settings.fanout_process:
            self.fanout = fan_out = FanoutProcess(self.settings)
            # A write the API answered must route the next event: the child's tables too.
            self.registry.copies.append(partial(fan_out.wait_applied, "subscriptions"))
            self.catalog.copies.append(partial(fan_out.wait_applied, "event_types"))
        else:
            self.events_in = fan_out = EventsIn(
                self.settings, producer, batcher, self.registry, self.metrics, tracer, self.catalog
            )
        retry = RetryScheduler(self.settings, producer, self.metrics)
        status = self._status_process()
        self.metrics.lag.watch_positions(f"{self.settings.app_id}-status", status.positions)
        self.status = StatusRouter(status)
        self._joined = [delivery.listener.joined, retry.listener.joined]
        if self.events_in is not None:
            self._joined.append(self.events_in.listener.joined)
        watch = BrokerWatch(
            producer,
            self.settings.broker_unavailable_timeout,
            self._broker_lost,
            self.settings.broker,
        )
        stalls = StallWatch(_STALL_TICK, _STALL_REPORTED, self._stalled)
        self._loops = [
            stalls,
            # One consumer for the compacted tables: an idle worker polls once, not four times.
            TableTail(self.settings, self.registry, self.tokens, self.catalog, delivery.health),
            writes,
            writer,
            fan_out,
            delivery,
            retry,
            status,
            watch,
            self.metrics.lag,
        ]
        self._loop_tasks = {asyncio.create_task(self._supervised(loop)) for loop in self._loops}

    async def on_stop(self) -> None:
        for loop in self._loops:
            loop.stop()
        if self._loop_tasks:
            # The delivery loop drains for up to shutdown_timeout, then commits.
            _, late = await asyncio.wait(
                self._loop_tasks, timeout=self.settings.shutdown_timeout + 5
            )
            for task in late:
                task.cancel()
        if self.http is not None:
            await self.http.close()
        if self.status is not None:
            await self.status.close()
        if self.batcher is not None:
            await self.batcher.close()
        if self.producer is not None:
            await self.producer.stop()
        if self.tracer.enabled:
            # Off the loop, bounded: exporting what is buffered may wait on the collector.
            try:
                await asyncio.wait_for(asyncio.to_thread(self.tracer.shutdown), 5.0)
            except TimeoutError:
                log.warning("spans still buffered at exit were not exported within 5s")

    def _status_process(self) -> StatusProcess:
        """The status view child, its store file and the URL other workers forward to."""
        port = int(getattr(self.app.conf, "web_port", None) or self.settings.web_port)
        url = self.settings.status_advertised_url.rstrip("/")
        if not url:
            host = self.settings.web_host
            if host in ("", "0.0.0.0", "::"):
                host = socket.getfqdn()
            url = f"http://{host}:{port}"
        path = Path(self.settings.status_dir) / f"{self.settings.app_id}-{port}.sqlite3"
        return StatusProcess(self.settings, str(path.resolve()), url)

    async def readiness(self) -> dict[str, Any]:
        """What /health reports: each part that must be up before events flow, and the
        Schema Registry's state (``schema_registry``, None when none is configured)."""
        joined = bool(self._joined) and all(j.is_set() for j in self._joined)
        schema_registry = None if self.events_in is None else self.events_in.schemas.report()
        if self.fanout is not None:
            state = await self.fanout.state()
            joined = joined and bool(state["joined"])
            schema_registry = state["schema_registry"]
        checks = {
            "subscriptions_loaded": self.registry.ready.is_set(),
            "tokens_loaded": self.tokens.ready.is_set(),
            "event_types_loaded": self.catalog.ready.is_set(),
            "delivery_running": self.delivery is not None,
            "subscription_writes_ready": self.writes is not None and self.writes.ready.is_set(),
            "consumer_groups_joined": joined,
        }
        return {"checks": checks, "schema_registry": schema_registry}

    async def render_metrics(self) -> bytes:
        """The worker's metrics, the fan-out process's added in."""
        child = None if self.fanout is None else await self.fanout.metrics()
        return self.metrics.render(child) if child is not None else self.metrics.render()

    def fail(self, exc: BaseException, grace: float | None = None) -> None:
        """Stop the worker on an error that would otherwise lose data (fail-stop).

        The process exits with status 1 (Faust re-raises the crash). Should the orderly
        stop hang, it exits anyway after ``grace`` (default: the shutdown timeout plus
        10 s): a worker that cannot go on must never linger half-stopped.
        """
        log.critical("stopping the worker: %r", exc)
        if self._crash_task is None:
            self._crash_task = asyncio.ensure_future(self.app.crash(exc))
            wait = self.settings.shutdown_timeout + 10 if grace is None else grace
            timer = threading.Timer(wait, _exit_now, (wait,))
            timer.daemon = True
            timer.start()

    def _stalled(self, gap: float) -> None:
        """The event loop stood still for ``gap`` seconds (reported after the fact)."""
        self.metrics.stalls.inc()
        held = self.delivery.owned if self.delivery is not None else set()
        lapsed = self.delivery is not None and not self.delivery.lease.valid()
        log.warning(
            "the worker stalled for %.1fs (session timeout %gs): %s; partitions held: %s",
            gap,
            self.settings.session_timeout,
            "its group leases lapsed, nothing is taken or attempted until the coordinator "
            "confirms the membership, and what belongs to partitions it lost is dropped"
            if lapsed
            else "its group leases still hold",
            describe(held),
        )

    def _broker_lost(self, exc: BaseException) -> None:
        # Nothing can be committed without a broker, so there is nothing to drain for.
        self.fail(exc, grace=_BROKER_LOST_GRACE)

    async def _supervised(self, loop: Any) -> None:
        try:
            await loop.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("%s failed", type(loop).__name__)
            self.fail(exc)

    async def _on_invalid_subscription(self, record: Any, reason: str) -> None:
        assert self.producer is not None
        value = record.value
        try:
            doc = orjson.loads(value)
            if isinstance(doc, dict):
                value = orjson.dumps(
                    {k: ("[redacted]" if k in SECRET_FIELDS else v) for k, v in doc.items()}
                )
        except orjson.JSONDecodeError:
            pass
        await (await reject(self.producer, record, reason, value=value))
