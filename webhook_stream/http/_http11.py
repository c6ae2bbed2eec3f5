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

    async def request(self, data: bytes, keep: int) -> None:
        """Send ``data``; return once the response head (status, headers) is in."""
        assert self.transport is not None and not self._in_request
        self._start(keep)
        self._in_request = True
        self._want_body = False
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        await self._waiter

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
        self.transport = transport  # type: ignore[assignment]

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


class _Host:
    __slots__ = ("active", "idle", "waiters")

    def __init__(self) -> None:
        self.active = 0
        self.idle: list[Connection] = []
        self.waiters: deque[asyncio.Future[None]] = deque()


class Pool:
    """Keep-alive connections by (host, port, tls), at most ``per_host`` busy per key and
    ``total`` busy overall; a caller over the limit waits its turn (FIFO).

    :meth:`acquire` hands out an idle connection, or None: the caller holds a slot and
    opens the connection itself. Every acquire is paired with one :meth:`release`.
    """

    def __init__(self, per_host: int, total: int, keepalive_s: float) -> None:
        self._per_host = per_host
        self._total = total
        self._keepalive = keepalive_s
        self._hosts: dict[tuple[str, int, bool], _Host] = {}
        self._active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._sweep: asyncio.TimerHandle | None = None

    async def acquire(self, key: tuple[str, int, bool]) -> Connection | None:
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = _Host()
        while True:
            idle = host.idle
            while idle:
                conn = idle.pop()  # the most recently used: least likely to be stale
                if not conn.closed and time.monotonic() - conn.idle_since < self._keepalive:
                    host.active += 1
                    self._active += 1
                    return conn
                conn.close()
            if host.active < self._per_host and self._active < self._total:
                host.active += 1
                self._active += 1
                return None
            queue = host.waiters if host.active >= self._per_host else self._waiters
            waiter = asyncio.get_running_loop().create_future()
            queue.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake(key)  # pass the turn we were given on
                elif waiter in queue:  # a release meanwhile may have dropped it already
                    queue.remove(waiter)
                raise

    def release(self, key: tuple[str, int, bool], conn: Connection | None) -> None:
        host = self._hosts[key]
        host.active -= 1
        self._active -= 1
        if conn is not None:
            if conn.reusable():
                conn.idle_since = time.monotonic()
                host.idle.append(conn)
                if self._sweep is None:
                    loop = asyncio.get_running_loop()
                    self._sweep = loop.call_later(self._keepalive, self._close_expired)
            else:
                conn.close()
        self._wake(key)

    def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for host in self._hosts.values():
            for conn in host.idle:
                conn.close()
            host.idle.clear()

    def _wake(self, key: tuple[str, int, bool]) -> None:
        for queue in (self._hosts[key].waiters, self._waiters):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return

    def _close_expired(self) -> None:
        self._sweep = None
        now = time.monotonic()
        remaining = False
        for key, host in list(self._hosts.items()):
            fresh = [c for c in host.idle if not c.closed and now - c.idle_since < self._keepalive]
            for conn in host.idle:
                if conn not in fresh:
                    conn.close()
            host.idle[:] = fresh
            remaining = remaining or bool(fresh)
            if not fresh and not host.active and not host.waiters:
                del self._hosts[key]
        if remaining:
            self._sweep = asyncio.get_running_loop().call_later(
                self._keepalive / 2, self._close_expired
            )
