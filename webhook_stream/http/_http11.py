"""HTTP/1.1 on ``asyncio.Protocol``: one connection type and its keep-alive pool.

Private to :mod:`webhook_stream.http.client`. It does only what a webhook POST needs: one
request in flight per connection, the response parsed by llhttp (``httptools``), at most
``keep`` body bytes retained. Anything unusual (a body not read to its end,
``Connection: close``, bytes nobody asked for) closes the connection instead of reusing it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import cast

import httptools

__all__ = ["Connection", "Disconnected", "Pool", "ProtocolError"]

#: A response head larger than this is refused (headers are parsed, not stored).
MAX_HEAD_BYTES = 64 * 1024
#: Body bytes read past ``keep`` so that the connection can be reused; beyond it, close.
DRAIN_BYTES = 64 * 1024


class ProtocolError(Exception):
    """The peer's bytes are not an acceptable HTTP/1.1 response."""


class Disconnected(ConnectionError):
    """The connection ended before the response head was complete.

    ``silent`` is True when not one byte of a response arrived: on a reused connection that
    is the peer having closed it while idle, and the request can go again on a new one.
    """

    def __init__(self, silent: bool, cause: BaseException | None = None) -> None:
        super().__init__("connection closed before the response" if silent else "response cut")
        self.silent = silent
        self.__cause__ = cause


class Connection(asyncio.Protocol):
    """One keep-alive connection; :meth:`request` sends, :meth:`read_body` finishes."""

    def __init__(self) -> None:
        self.closed = False
        self.idle_since = 0.0
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._want_body = False
        self._in_request = False
        self._start(0)

    def _start(self, keep: int) -> None:
        self.status: int | None = None
        self.body = bytearray()
        self.retry_after: bytes | None = None
        self.complete = False
        self.keep_alive = False
        self._keep = keep
        self._extra = False
        self._interim = False
        self._head_bytes = 0
        self._body_seen = 0
        self._received = 0

    # -- used by the client ------------------------------------------------------------------

    async def request(self, data: bytes, keep: int, deadline: float | None = None) -> None:
        """Send ``data``; return once the response head (status, headers) is in.

        ``deadline`` (loop time): raise :class:`TimeoutError` then. A timer on the waiter
        costs less than ``asyncio.timeout`` (a task lookup and a rescheduled handle), which
        was 5 % of the delivery loop.
        """
        assert self.transport is not None and not self._in_request
        self._start(keep)
        self._in_request = True
        self._want_body = False
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        self.transport.write(data)
        if deadline is None:
            await waiter
            return
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()

    @property
    def settled(self) -> bool:
        """The body needs no more reading: complete, or as much as we will ever read."""
        return self.complete or self.closed or self._body_seen >= self._keep + DRAIN_BYTES

    async def read_body(self) -> None:
        """Wait until :attr:`settled` (the caller bounds the wait)."""
        if self.settled:
            return
        self._want_body = True
        self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter

    def reusable(self) -> bool:
        return (
            not self.closed
            and self.complete
            and self.keep_alive
            and not self._extra
            and not self._in_request
        )

    def done(self) -> None:
        """The caller is finished with this response."""
        self._in_request = False
        self._waiter = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream socket's: a Transport

    def data_received(self, data: bytes) -> None:
        if not self._in_request:
            self.close()  # bytes nobody asked for: this connection cannot be trusted
            return
        self._received += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:  # includes an unrequested upgrade
            self._fail(ProtocolError(f"invalid HTTP response: {exc}"))
            return
        if self.status is None:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._fail(ProtocolError("response head larger than 64 KiB"))
                return
        self._wake()

    def eof_received(self) -> bool:
        return False  # close; a body delimited by the end of the connection ends here

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self.status is not None:
            waiter.set_result(None)  # the head is in; the body is what arrived
        else:
            waiter.set_exception(Disconnected(self._received == 0, exc))

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            self._extra = True  # a second response nobody asked for: ignored, never reused

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 11 and name.lower() == b"retry-after" and not self._extra:
            self.retry_after = value

    def on_headers_complete(self) -> None:
        if self._extra:
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            self._interim = True  # 100 Continue and friends: the real response follows
            return
        self.status = status

    def on_body(self, body: bytes) -> None:
        if self._extra:
            return
        self._body_seen += len(body)
        room = self._keep - len(self.body)
        if room > 0:
            self.body += body[:room]

    def on_message_complete(self) -> None:
        if self._extra:
            return
        if self._interim:
            self._interim = False
            self._head_bytes = 0
            return
        self.complete = True
        self.keep_alive = self._parser.should_keep_alive()

    # -- internals ---------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done() or self.status is None:
            return
        if not self._want_body or self.settled:
            waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _Host:
    __slots__ = ("active", "idle", "waiters")

    def __init__(self) -> None:
        self.active = 0
        self.idle: list[Connection] = []
        #: (arrival number, future): requests for this host waiting their turn, in order.
        self.waiters: deque[tuple[int, asyncio.Future[Connection | None]]] = deque()


class Pool:
    """Keep-alive connections by (host, port, tls): at most ``per_host`` busy per key and
    ``total`` open (busy or idle) overall. At the total limit an idle connection of any host
    is closed to make room; a caller that still cannot go waits, and waiting callers are
    served in arrival order (a caller held only by its own host's limit does not hold up
    callers for other hosts).

    :meth:`acquire` hands out an idle connection, or None: the caller holds a slot and
    opens the connection itself. Every successful acquire is paired with one
    :meth:`release`. A slot is handed to a waiter directly (never re-contested), so a turn
    cannot be taken by a newcomer.
    """

    def __init__(self, per_host: int, total: int, keepalive_s: float) -> None:
        self._per_host = max(1, per_host)
        self._total = max(1, total)
        self._keepalive = keepalive_s
        self._hosts: dict[tuple[str, int, bool], _Host] = {}
        self._open = 0  # busy slots plus idle connections, all hosts
        self._idle = 0
        self._arrivals = 0
        self._queued: set[tuple[str, int, bool]] = set()  # hosts with waiters
        self._sweep: asyncio.TimerHandle | None = None

    @property
    def open(self) -> int:
        """Connections counted against ``total``: busy slots plus idle connections."""
        return self._open

    def try_acquire(self, key: tuple[str, int, bool]) -> tuple[bool, Connection | None]:
        """:meth:`acquire` if it would not wait: ``(granted, idle connection or None)``."""
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = _Host()
        if not host.waiters and host.active < self._per_host:
            return self._grant(key, host)
        return False, None

    async def acquire(self, key: tuple[str, int, bool]) -> Connection | None:
        granted, conn = self.try_acquire(key)
        if granted:
            return conn
        host = self._hosts[key]
        self._arrivals += 1
        waiter: asyncio.Future[Connection | None] = asyncio.get_running_loop().create_future()
        entry = (self._arrivals, waiter)
        host.waiters.append(entry)
        self._queued.add(key)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(key, waiter.result())  # granted as we gave up: hand it back
            else:
                try:
                    host.waiters.remove(entry)
                except ValueError:
                    pass
                if not host.waiters:
                    self._queued.discard(key)
                self._forget(key, host)
            raise

    def release(self, key: tuple[str, int, bool], conn: Connection | None) -> None:
        host = self._hosts.get(key)
        if host is None or host.active <= 0:  # unreachable while the counts are kept right
            if conn is not None:
                conn.close()
            return
        host.active -= 1
        if conn is not None and conn.reusable():
            conn.idle_since = time.monotonic()
            host.idle.append(conn)
            self._idle += 1
            if self._sweep is None:
                loop = asyncio.get_running_loop()
                self._sweep = loop.call_later(self._keepalive, self._close_expired)
        else:
            if conn is not None:
                conn.close()
            self._open -= 1
        self._dispatch()
        self._forget(key, host)

    def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for key, host in list(self._hosts.items()):
            self._open -= len(host.idle)
            self._idle -= len(host.idle)
            for conn in host.idle:
                conn.close()
            host.idle.clear()
            self._forget(key, host)

    # -- internals ---------------------------------------------------------------------------

    def _grant(self, key: tuple[str, int, bool], host: _Host) -> tuple[bool, Connection | None]:
        """Take a slot for ``host`` (below its own limit) if the total allows."""
        now = time.monotonic()
        while host.idle:
            conn = host.idle.pop()  # the most recently used: least likely to be stale
            self._idle -= 1
            if not conn.closed and now - conn.idle_since < self._keepalive:
                host.active += 1
                return True, conn
            conn.close()
            self._open -= 1
        if self._open >= self._total and not self._evict(key):
            return False, None
        host.active += 1
        self._open += 1
        return True, None

    def _evict(self, keep: tuple[str, int, bool]) -> bool:
        """Close the longest-idle connection of another host; False if there is none."""
        oldest: tuple[str, int, bool] | None = None
        since = 0.0
        for key, host in self._hosts.items():
            if key != keep and host.idle and (oldest is None or host.idle[0].idle_since < since):
                oldest, since = key, host.idle[0].idle_since
        if oldest is None:
            return False
        victim = self._hosts[oldest]
        victim.idle.pop(0).close()
        self._idle -= 1
        self._open -= 1
        self._forget(oldest, victim)
        return True

    def _dispatch(self) -> None:
        """Hand free slots to waiters, earliest arrival first, skipping hosts at their limit."""
        while self._queued:
            best: tuple[str, int, bool] | None = None
            first = 0
            for key in list(self._queued):
                host = self._hosts[key]
                while host.waiters and host.waiters[0][1].done():
                    host.waiters.popleft()  # cancelled meanwhile
                if not host.waiters:
                    self._queued.discard(key)
                    continue
                if host.active < self._per_host and (best is None or host.waiters[0][0] < first):
                    best, first = key, host.waiters[0][0]
            if best is None:
                return
            host = self._hosts[best]
            granted, conn = self._grant(best, host)
            if not granted:
                return  # nothing open can be freed: the next release dispatches again
            host.waiters.popleft()[1].set_result(conn)
            if not host.waiters:
                self._queued.discard(best)

    def _forget(self, key: tuple[str, int, bool], host: _Host) -> None:
        if not host.active and not host.idle and not host.waiters and self._hosts.get(key) is host:
            del self._hosts[key]

    def _close_expired(self) -> None:
        self._sweep = None
        now = time.monotonic()
        for key, host in list(self._hosts.items()):
            fresh = [c for c in host.idle if not c.closed and now - c.idle_since < self._keepalive]
            if len(fresh) != len(host.idle):
                for conn in host.idle:
                    if conn not in fresh:
                        conn.close()
                gone = len(host.idle) - len(fresh)
                self._open -= gone
                self._idle -= gone
                host.idle[:] = fresh
            self._forget(key, host)
        self._dispatch()
        if self._idle:
            self._sweep = asyncio.get_running_loop().call_later(
                self._keepalive / 2, self._close_expired
            )
