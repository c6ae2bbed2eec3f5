"""The status view in a process of its own, beside the worker.

Tailing ``webhooks.deliveries`` and ``webhooks.attempts`` (now only this worker's share)
means more records read and written to the store per delivery: a child process runs
:class:`~.view.PartitionedView` on another core; the worker's API asks it over a pipe.

The pipe carries frames of JSON: a 4-byte big-endian length, then the body. The first
frame to the child holds the settings the view needs (no secrets); then each request is
``[id, op, args]`` and each answer ``[id, result]`` or ``[id, None, error]``. The child
exits when its stdin closes, so it never outlives its worker, even one killed with
SIGKILL. The worker restarts a child that died; meanwhile status queries fail with
:class:`~.errors.StatusUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from aiokafka import TopicPartition

from webhook_stream.core.errors import StatusUnavailable
from webhook_stream.core.settings import Settings
from webhook_stream.status.view import PartitionedView

__all__ = ["StatusProcess"]

log = logging.getLogger(__name__)

_HEADER = 4
_MAX_FRAME = 64 * 1024 * 1024  # 1,000 attempts with 1 KiB bodies are ~2 MB
_ANSWER_TIMEOUT = 10.0
_RESTART_DELAY = 1.0
_RESTART_DELAY_MAX = 30.0
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


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(_HEADER, "big") + body


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    size = int.from_bytes(await reader.readexactly(_HEADER), "big")
    if size > _MAX_FRAME:
        raise ValueError(f"frame of {size} bytes")
    return await reader.readexactly(size)


class StatusProcess:
    """The worker's side: starts the child, restarts it when it dies, asks it questions."""

    def __init__(self, settings: Settings, store_path: str, own_url: str) -> None:
        self._settings = settings
        self._store_path = store_path
        self.own_url = own_url
        self._proc: asyncio.subprocess.Process | None = None
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count()
        self._stopped = asyncio.Event()

    def stop(self) -> None:
        """Close the child's stdin: it stops tailing and exits; :meth:`run` then returns."""
        self._stopped.set()
        if self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.close()

    async def run(self) -> None:
        delay = 0.0
        while not self._stopped.is_set():
            started = time.monotonic()
            ended = await self._run_child()
            if self._stopped.is_set():
                return
            # One that keeps failing at start (a broken install) is retried ever more slowly.
            lived = time.monotonic() - started
            if lived > _RESTART_DELAY_MAX:
                delay = _RESTART_DELAY
            else:
                delay = min(max(delay * 2, _RESTART_DELAY), _RESTART_DELAY_MAX)
            log.error("status view process %s; restarting in %.0fs", ended, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), delay)

    async def _run_child(self) -> str:
        """Run one child until it exits; say how it ended."""
        try:
            proc = self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                __name__,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
        except OSError as exc:  # e.g. out of processes: the worker delivers on regardless
            return f"could not start ({exc})"
        assert proc.stdin is not None and proc.stdout is not None
        try:
            needed = {name: getattr(self._settings, name) for name in _VIEW_SETTINGS}
            where = {"store_path": self._store_path, "own_url": self.own_url}
            proc.stdin.write(_frame(orjson.dumps([needed, where])))
            if self._stopped.is_set():
                proc.stdin.close()
            while True:
                try:
                    answer = orjson.loads(await _read_frame(proc.stdout))
                except (asyncio.IncompleteReadError, ValueError):
                    break
                future = self._waiting.pop(answer[0], None)
                if future is not None and not future.done():
                    if len(answer) == 2:
                        future.set_result(answer[1])
                    else:
                        future.set_exception(StatusUnavailable(answer[2]))
        finally:
            self._proc = None
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(StatusUnavailable("the status view process exited"))
            self._waiting.clear()
            proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 10.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        return f"exited with code {proc.returncode}"

    async def _ask(self, op: str, args: dict[str, Any]) -> Any:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdin.is_closing():
            raise StatusUnavailable("the status view process is not running")
        request_id = next(self._ids)
        # Encoded before anything is registered: a question that cannot be sent (an
        # integer over 64 bits) leaves nothing behind.
        frame = _frame(orjson.dumps([request_id, op, args]))
        future = self._waiting[request_id] = asyncio.get_running_loop().create_future()
        try:
            proc.stdin.write(frame)
            return await asyncio.wait_for(future, _ANSWER_TIMEOUT)
        except TimeoutError:
            raise StatusUnavailable("the status view did not answer in time") from None
        finally:
            self._waiting.pop(request_id, None)

    async def delivery(
        self, delivery_id: str, endpoint_id: str | None, *, local: bool
    ) -> dict[str, Any]:
        """One delivery's status, or where to ask (see :meth:`.PartitionedView.delivery`)."""
        return await self._ask(
            "delivery", {"delivery_id": delivery_id, "endpoint_id": endpoint_id, "local": local}
        )

    async def attempts(
        self, endpoint_id: str, query: dict[str, Any], *, local: bool, incarnation: str = ""
    ) -> dict[str, Any]:
        """A page of the incarnation's attempts, or where to ask
        (see :meth:`.PartitionedView.attempts`)."""
        args = {"endpoint_id": endpoint_id, "query": query, "local": local}
        return await self._ask("attempts", {**args, "incarnation": incarnation})

    async def operational(
        self, endpoint_id: str, incarnation: str, *, local: bool
    ) -> dict[str, Any]:
        """The incarnation's recent operational events, or where to ask."""
        args = {"endpoint_id": endpoint_id, "incarnation": incarnation, "local": local}
        return await self._ask("operational", args)

    def pending(self) -> int:
        """Questions waiting for an answer (each is removed when answered or given up)."""
        return len(self._waiting)

    async def info(self) -> dict[str, Any]:
        """Owned and ready partitions, store counts, time to catch up after start."""
        return await self._ask("info", {})

    async def positions(self) -> dict[TopicPartition, int]:
        """The next offset the view applies on each partition it owns (its lag, measured
        by the worker: the view commits no offsets)."""
        found = await self._ask("positions", {})
        return {TopicPartition(topic, p): offset for topic, p, offset in found}

    async def deadletters(self, query: dict[str, Any]) -> dict[str, Any]:
        """This worker's share of the dead letters (see :meth:`.PartitionedView.deadletters`)."""
        return await self._ask("deadletters", {"query": query})

    async def rejected(self, query: dict[str, Any]) -> dict[str, Any]:
        """This worker's share of the rejected records (see :mod:`.rejected`)."""
        return await self._ask("rejected", {"query": query})

    async def endpoint_stats(self, scopes: list[list[str]]) -> dict[str, Any]:
        """This worker's share of the counters of ``[endpoint id, incarnation]`` pairs."""
        return await self._ask("endpoint_stats", {"scopes": scopes})

    async def overview(self, scopes: list[list[str]] | None) -> dict[str, Any]:
        """This worker's share of the attempts per minute and dead-letter depth."""
        return await self._ask("overview", {"scopes": scopes})


# -- the child ---------------------------------------------------------------------------


async def _serve(answers: Any) -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_MAX_FRAME)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, answers)
    needed, where = orjson.loads(await _read_frame(reader))
    settings = replace(Settings(), **needed)
    gc.set_threshold(settings.gc_threshold, *gc.get_threshold()[1:])
    view = PartitionedView(settings, Path(where["store_path"]), where["own_url"])
    tail = asyncio.create_task(view.run())
    ops: dict[str, Callable[..., Any]] = {
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
    try:
        while True:
            question = asyncio.ensure_future(_read_frame(reader))
            await asyncio.wait({question, tail}, return_when=asyncio.FIRST_COMPLETED)
            if tail.done():
                question.cancel()
                tail.result()  # the tail failed: raise, the worker starts a new view
                return 1
            try:
                request_id, op, args = orjson.loads(question.result())
            except asyncio.IncompleteReadError:
                return 0  # the worker closed our stdin: it stops, or it died
            try:
                answer = [request_id, ops[op](**args)]
            except Exception as exc:  # a bad question must not end the view
                log.exception("status query %s failed", op)
                answer = [request_id, None, f"status query failed: {type(exc).__name__}"]
            transport.write(_frame(orjson.dumps(answer)))
    finally:
        view.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(tail, 5.0)


def main() -> None:
    # Ctrl-C reaches the whole process group; the worker decides when the view stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.WARNING, format="[%(asctime)s] [status-view] %(levelname)s %(message)s"
    )
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    # Assignments and catch-up times (what a restart costs) are worth a line each.
    logging.getLogger("webhook_stream.status.view").setLevel(logging.INFO)
    # Answers go out on the original stdout; anything else printed lands on stderr.
    answers = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    try:
        code = asyncio.run(_serve(answers))
    except Exception:
        log.exception("the status view stopped")
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
