"""A process of the worker's own beside it (the status view, the fan-out), asked over a pipe.

The pipe carries frames: a 4-byte big-endian length, then the body. The first frame to the
child is its start-up (what it needs to run); then each request is JSON ``[id, op, args]``
and each answer ``[id, result]`` or ``[id, None, error]``. The child exits when its stdin
closes, so it never outlives its worker, even one killed with SIGKILL. The worker restarts
a child that died; meanwhile questions to it fail with the child's ``unavailable`` error.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import orjson

__all__ = ["Child", "ChildProcess", "child_main", "frame", "read_frame"]

log = logging.getLogger(__name__)

_HEADER = 4
MAX_FRAME = 64 * 1024 * 1024  # 1,000 attempts with 1 KiB bodies are ~2 MB
_ANSWER_TIMEOUT = 10.0
_RESTART_DELAY = 1.0
_RESTART_DELAY_MAX = 30.0


def frame(body: bytes) -> bytes:
    return len(body).to_bytes(_HEADER, "big") + body


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    size = int.from_bytes(await reader.readexactly(_HEADER), "big")
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes")
    return await reader.readexactly(size)


class ChildProcess:
    """The worker's side: starts ``python -m <module>``, restarts it when it dies, asks it
    questions. ``what`` names it in logs and errors; ``unavailable`` is raised while it is
    not there to answer."""

    def __init__(self, module: str, what: str, unavailable: type[Exception]) -> None:
        self._module = module
        self.what = what
        self._unavailable = unavailable
        self._proc: asyncio.subprocess.Process | None = None
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count()
        self._stopped = asyncio.Event()

    def start_frame(self) -> bytes:
        """The first frame the child reads: what it needs to run."""
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._proc is not None

    def stop(self) -> None:
        """Close the child's stdin: it stops and exits; :meth:`run` then returns."""
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
            log.error("%s %s; restarting in %.0fs", self.what, ended, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), delay)

    async def _run_child(self) -> str:
        """Run one child until it exits; say how it ended."""
        try:
            proc = self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                self._module,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
        except OSError as exc:  # e.g. out of processes: the worker goes on regardless
            return f"could not start ({exc})"
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(frame(self.start_frame()))
            if self._stopped.is_set():
                proc.stdin.close()
            while True:
                try:
                    answer = orjson.loads(await read_frame(proc.stdout))
                except (asyncio.IncompleteReadError, ValueError):
                    break
                future = self._waiting.pop(answer[0], None)
                if future is not None and not future.done():
                    if len(answer) == 2:
                        future.set_result(answer[1])
                    else:
                        future.set_exception(self._unavailable(answer[2]))
        finally:
            self._proc = None
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(self._unavailable(f"the {self.what} exited"))
            self._waiting.clear()
            proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), self.exit_timeout())
            except TimeoutError:
                proc.kill()
                await proc.wait()
        return f"exited with code {proc.returncode}"

    def exit_timeout(self) -> float:
        """How long a child whose stdin closed gets to exit before it is killed."""
        return 10.0

    async def ask(self, op: str, args: dict[str, Any], timeout: float = _ANSWER_TIMEOUT) -> Any:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdin.is_closing():
            raise self._unavailable(f"the {self.what} is not running")
        request_id = next(self._ids)
        # Encoded before anything is registered: a question that cannot be sent (an
        # integer over 64 bits) leaves nothing behind.
        body = frame(orjson.dumps([request_id, op, args]))
        future = self._waiting[request_id] = asyncio.get_running_loop().create_future()
        try:
            proc.stdin.write(body)
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise self._unavailable(f"the {self.what} did not answer in time") from None
        finally:
            self._waiting.pop(request_id, None)

    def pending(self) -> int:
        """Questions waiting for an answer (each is removed when answered or given up)."""
        return len(self._waiting)


class Child:
    """What a child runs: its work (a task that ends only on failure), its answers, its stop."""

    def __init__(
        self,
        work: asyncio.Future[Any],
        ops: dict[str, Callable[..., Any]],
        stop: Callable[[], Awaitable[None]],
    ) -> None:
        self.work, self.ops, self.stop = work, ops, stop


async def _serve(answers: Any, start: Callable[[bytes], Awaitable[Child]], what: str) -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_FRAME)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, answers)
    child = await start(await read_frame(reader))
    answering: set[asyncio.Task[list[Any]]] = set()
    try:
        while True:
            question = asyncio.ensure_future(read_frame(reader))
            await asyncio.wait({question, child.work}, return_when=asyncio.FIRST_COMPLETED)
            if child.work.done():
                question.cancel()
                child.work.result()  # it failed: raise, the worker starts a new child
                return 1
            try:
                request_id, op, args = orjson.loads(question.result())
            except asyncio.IncompleteReadError:
                return 0  # the worker closed our stdin: it stops, or it died
            # Each answered in a task of its own: one that waits holds no other up.
            reply = asyncio.create_task(_answer(child, request_id, op, args))
            answering.add(reply)
            reply.add_done_callback(answering.discard)
            reply.add_done_callback(partial(_send, transport))
    finally:
        for reply in list(answering):
            reply.cancel()
        await child.stop()


def _send(transport: Any, reply: asyncio.Task[list[Any]]) -> None:
    if not reply.cancelled() and not transport.is_closing():
        transport.write(frame(orjson.dumps(reply.result())))


async def _answer(child: Child, request_id: int, op: str, args: dict[str, Any]) -> list[Any]:
    try:
        result = child.ops[op](**args)
        if inspect.isawaitable(result):
            result = await result
        return [request_id, result]
    except asyncio.CancelledError:
        return [request_id, None, "stopping"]
    except Exception as exc:  # a bad question must not end the child
        log.exception("query %s failed", op)
        return [request_id, None, f"query failed: {type(exc).__name__}"]


def child_main(
    start: Callable[[bytes], Awaitable[Child]], tag: str, info_loggers: tuple[str, ...] = ()
) -> None:
    """Run a child: ``start`` gets the first frame and returns what runs; logs say ``tag``."""
    # Ctrl-C (and a SIGTERM to the whole group) reach the child too; the worker decides
    # when its child stops: it closes the pipe, and the fan-out commits before it exits.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.WARNING, format=f"[%(asctime)s] [{tag}] %(levelname)s %(message)s"
    )
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    for name in info_loggers:
        logging.getLogger(name).setLevel(logging.INFO)
    # Answers go out on the original stdout; anything else printed lands on stderr.
    answers = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    try:
        code = _run(answers, start, tag)
    except Exception:
        log.exception("the %s stopped", tag)
        code = 1
    sys.exit(code)


def _run(answers: Any, start: Callable[[bytes], Awaitable[Child]], tag: str) -> int:
    loop_name = os.environ.get("FAUST_LOOP", "")
    if loop_name == "uvloop":
        with contextlib.suppress(ImportError):
            import uvloop

            return uvloop.run(_serve(answers, start, tag))
    return asyncio.run(_serve(answers, start, tag))
