"""The status view in a process of its own, beside the worker.

Tailing ``webhooks.deliveries`` and ``webhooks.attempts`` (now only this worker's share)
means more records read and written to the store per delivery: a child process runs
:class:`~.view.PartitionedView` on another core; the worker's API asks it over a pipe.

The pipe and the child's life are :mod:`webhook_stream.core.child`'s. The first frame to
the child holds the settings the view needs (no secrets). While the child is away (it
died and is being restarted), status queries fail with :class:`~.errors.StatusUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from aiokafka import TopicPartition

from webhook_stream.core.child import Child, ChildProcess, child_main
from webhook_stream.core.errors import StatusUnavailable
from webhook_stream.core.settings import Settings
from webhook_stream.status.view import PartitionedView

__all__ = ["StatusProcess"]

#: What the view needs; nothing secret goes to the child.
_VIEW_SETTINGS = (
    "broker",
    "fetch_max_wait",
    "fetch_idle_wait",
    "background_idle_wait",
    "app_id",
    "session_timeout",
    "rebalance_timeout",
    "heartbeat_interval",
    "status_retention",
    "gc_threshold",
)


class StatusProcess(ChildProcess):
    """The worker's side: starts the child, restarts it when it dies, asks it questions."""

    def __init__(self, settings: Settings, store_path: str, own_url: str) -> None:
        super().__init__(__name__, "status view process", StatusUnavailable)
        self._settings = settings
        self._store_path = store_path
        self.own_url = own_url

    def start_frame(self) -> bytes:
        needed = {name: getattr(self._settings, name) for name in _VIEW_SETTINGS}
        where = {"store_path": self._store_path, "own_url": self.own_url}
        return orjson.dumps([needed, where])

    async def delivery(
        self, delivery_id: str, endpoint_id: str | None, *, local: bool
    ) -> dict[str, Any]:
        """One delivery's status, or where to ask (see :meth:`.PartitionedView.delivery`)."""
        return await self.ask(
            "delivery", {"delivery_id": delivery_id, "endpoint_id": endpoint_id, "local": local}
        )

    async def attempts(
        self, endpoint_id: str, query: dict[str, Any], *, local: bool, incarnation: str = ""
    ) -> dict[str, Any]:
        """A page of the incarnation's attempts, or where to ask
        (see :meth:`.PartitionedView.attempts`)."""
        args = {"endpoint_id": endpoint_id, "query": query, "local": local}
        return await self.ask("attempts", {**args, "incarnation": incarnation})

    async def operational(
        self, endpoint_id: str, incarnation: str, *, local: bool
    ) -> dict[str, Any]:
        """The incarnation's recent operational events, or where to ask."""
        args = {"endpoint_id": endpoint_id, "incarnation": incarnation, "local": local}
        return await self.ask("operational", args)

    async def info(self) -> dict[str, Any]:
        """Owned and ready partitions, store counts, time to catch up after start."""
        return await self.ask("info", {})

    async def positions(self) -> dict[TopicPartition, int]:
        """The next offset the view applies on each partition it owns (its lag, measured
        by the worker: the view commits no offsets)."""
        found = await self.ask("positions", {})
        return {TopicPartition(topic, p): offset for topic, p, offset in found}

    async def deadletters(self, query: dict[str, Any]) -> dict[str, Any]:
        """This worker's share of the dead letters (see :meth:`.PartitionedView.deadletters`)."""
        return await self.ask("deadletters", {"query": query})

    async def rejected(self, query: dict[str, Any]) -> dict[str, Any]:
        """This worker's share of the rejected records (see :mod:`.rejected`)."""
        return await self.ask("rejected", {"query": query})

    async def endpoint_stats(self, scopes: list[list[str]]) -> dict[str, Any]:
        """This worker's share of the counters of ``[endpoint id, incarnation]`` pairs."""
        return await self.ask("endpoint_stats", {"scopes": scopes})

    async def overview(self, scopes: list[list[str]] | None) -> dict[str, Any]:
        """This worker's share of the attempts per minute and dead-letter depth."""
        return await self.ask("overview", {"scopes": scopes})


# -- the child ---------------------------------------------------------------------------


async def _start(first: bytes) -> Child:
    needed, where = orjson.loads(first)
    settings = replace(Settings(), **needed)
    gc.set_threshold(settings.gc_threshold, *gc.get_threshold()[1:])
    view = PartitionedView(settings, Path(where["store_path"]), where["own_url"])
    tail = asyncio.ensure_future(view.run())

    async def stop() -> None:
        view.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(tail, 5.0)

    ops: dict[str, Any] = {
        "delivery": view.delivery,
        "attempts": view.attempts,
        "operational": view.operational,
        "info": view.info,
        "deadletters": view.deadletters,
        "rejected": view.rejected,
        "endpoint_stats": view.endpoint_stats,
        "overview": view.overview,
        "positions": view.positions,
    }
    return Child(tail, ops, stop)


def main() -> None:
    # Assignments and catch-up times (what a restart costs) are worth a line each.
    child_main(_start, "status-view", ("webhook_stream.status.view",))


if __name__ == "__main__":
    main()
