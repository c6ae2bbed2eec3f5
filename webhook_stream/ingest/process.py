"""The fan-out in a process of its own, beside the worker (``FANOUT_PROCESS``, on by default).

Fan-out and delivery meet only in Kafka (``webhooks.deliveries``), so they need not share
a core: in one process the delivery loop ran at 0.85-0.9 of a core under load, a fifth of
it fanning out (bench row 3a). The child runs :class:`~.consumer.EventsIn` with its own
producer, subscription table (tailed like the worker's) and metrics; the worker asks it
for its state (``/health``) and its metrics (``/metrics``, where they are added to the
worker's) over the pipe of :mod:`webhook_stream.core.child`. The child gets the worker's
settings whole (a pipe between the two, never written anywhere) and exits when its stdin
closes: it stops fanning out, commits what its producer acknowledged, and exits; the
worker restarts one that died.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import pickle
import sys
from collections.abc import Callable
from typing import Any

from webhook_stream.core import kafka, tracing
from webhook_stream.core.child import Child, ChildProcess, child_main
from webhook_stream.core.errors import FanoutUnavailable
from webhook_stream.core.metrics import ChildSamples, Metrics
from webhook_stream.core.settings import Settings
from webhook_stream.core.table_tail import TableTail
from webhook_stream.ingest.consumer import EventsIn
from webhook_stream.subscriptions.catalog_store import EventTypeCatalog
from webhook_stream.subscriptions.registry import SubscriptionRegistry

__all__ = ["FanoutProcess"]

log = logging.getLogger(__name__)

#: What the worker reports while no child answers.
_AWAY: dict[str, Any] = {"joined": False, "schema_registry": None}


class FanoutProcess(ChildProcess):
    """The worker's side of the fan-out child."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(__name__, "fan-out process", FanoutUnavailable)
        self._settings = settings

    def start_frame(self) -> bytes:
        # Its log lines are the worker's (same stderr), at the worker's level.
        return pickle.dumps((self._settings, logging.getLogger(__name__).getEffectiveLevel()))

    def exit_timeout(self) -> float:
        # It finishes its batch and commits (bounded by the shutdown timeout) before it exits.
        return self._settings.shutdown_timeout + 5

    async def state(self) -> dict[str, Any]:
        """``joined`` (its consumer group) and the Schema Registry's state (None: none set)."""
        try:
            return dict(await self.ask("state", {}))
        except FanoutUnavailable:
            return dict(_AWAY)

    async def wait_applied(self, table: str, partition: int, offset: int, timeout: float) -> bool:
        """The child's copy of ``table`` (``subscriptions``, ``event_types``) has applied the
        record; True while the child is away (it reads every table to its end first)."""
        try:
            args = {"table": table, "partition": partition, "offset": offset, "timeout": timeout}
            return bool(await self.ask("wait_applied", args, timeout + 1))
        except FanoutUnavailable:
            return True

    async def metrics(self) -> ChildSamples | None:
        """The child's metric samples (:meth:`Metrics.samples`); None while it is away."""
        try:
            return list(await self.ask("metrics", {}))
        except FanoutUnavailable:
            return None


# -- the child ---------------------------------------------------------------------------


async def _start(first: bytes) -> Child:
    settings: Settings
    settings, level = pickle.loads(first)  # noqa: S301 - from our own parent's pipe
    _log_like_the_worker(level)
    # As in the worker: aiokafka's assignments at info, never its debug lines (runtime.py).
    logging.getLogger("aiokafka").setLevel(max(logging.INFO, level))
    gc.set_threshold(settings.gc_threshold, *gc.get_threshold()[1:])
    metrics = Metrics(
        settings.lag_interval,
        lambda: kafka.tail_consumer(settings, background=True, max_partition_fetch_bytes=65_536),
    )
    tracer = tracing.from_env()
    producer = kafka.producer(settings)
    await producer.start()
    batcher = kafka.RecordBatcher(producer, max_record_bytes=settings.max_record_bytes)
    # Invalid subscription records are the worker's to report (its own table sees them).
    registry = SubscriptionRegistry(settings)
    catalog = EventTypeCatalog(settings)
    events_in = EventsIn(settings, producer, batcher, registry, metrics, tracer, catalog)
    loops: list[Any] = [TableTail(settings, registry, catalog), events_in, metrics.lag]
    tasks = [asyncio.ensure_future(loop.run()) for loop in loops]
    work = asyncio.ensure_future(asyncio.gather(*tasks))

    def state() -> dict[str, Any]:
        joined = events_in.listener.joined.is_set()
        return {"joined": joined, "schema_registry": events_in.schemas.report()}

    async def stop() -> None:
        for loop in loops:
            loop.stop()
        # The fan-out finishes its batch and commits; bounded like the worker's own stop.
        _, late = await asyncio.wait(tasks, timeout=settings.shutdown_timeout)
        for task in late:
            task.cancel()
        with contextlib.suppress(BaseException):
            await work  # retrieved: a loop cancelled above is no error to report
        await batcher.close()
        await producer.stop()
        if tracer.enabled:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.to_thread(tracer.shutdown), 5.0)

    tables = {"subscriptions": registry, "event_types": catalog}

    def wait_applied(table: str, partition: int, offset: int, timeout: float) -> Any:
        return tables[table].wait_applied(partition, offset, timeout)

    ops: dict[str, Callable[..., Any]] = {
        "state": state,
        "metrics": metrics.samples,
        "wait_applied": wait_applied,
    }
    return Child(work, ops, stop)


def _log_like_the_worker(level: int) -> None:
    """The worker's level, and Faust's formatting (assignments drawn as tables)."""
    import faust.worker  # noqa: F401 - registers that formatting
    from mode.utils.logging import ExtensionFormatter

    root = logging.getLogger()
    root.setLevel(level)
    fmt = "[%(asctime)s] [%(process)s] [fan-out] [%(levelname)s] %(message)s"
    for handler in root.handlers:
        handler.setFormatter(ExtensionFormatter(stream=sys.stderr, fmt=fmt))


def main() -> None:
    child_main(_start, "fan-out")


if __name__ == "__main__":
    main()
