"""The one outbound HTTP client: pooled keep-alive, per-call timeout, never follows redirects.

Our own HTTP/1.1 client on ``asyncio.Protocol`` (:mod:`webhook_stream.http._http11`, responses
parsed by llhttp via ``httptools``), not a general-purpose one. Measured on the development
machine at concurrency 50: httpx's own transport costs about 1.1 ms of CPU per request,
aiohttp's ``ClientSession`` about 80 us, this client about 30 us -- and a delivery is
otherwise about 200 us, so the client was a third of a worker (README, Performance).
Everything else talks to :class:`HttpClient` only (or, with an egress proxy set, to
:class:`~webhook_stream.http.proxied.HttpxClient`, which has the same interface).

SSRF: a host name is resolved by :class:`~webhook_stream.http.ssrf.GuardedResolver` (which drops
refused addresses) and only those addresses are connected to, each through the guarded
socket factory; IP-literal hosts are checked before anything else.

When there is no response, ``HttpResult.error`` says why: a
:class:`~webhook_stream.http.errors.TransportError`.
"""

from __future__ import annotations

import asyncio
import email.utils
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from aiohttp.abc import AbstractResolver

from webhook_stream.core.settings import Settings
from webhook_stream.http._http11 import Connection, Disconnected, Pool, ProtocolError
from webhook_stream.http.errors import Refused, TransportError
from webhook_stream.http.identity import ContextCache, TlsIdentity
from webhook_stream.http.ssrf import (
    AddressPolicy,
    ForbiddenAddress,
    GuardedResolver,
    guarded_socket_factory,
)
from webhook_stream.http.urls import Target, parse_target

__all__ = ["HttpClient", "HttpResult", "parse_retry_after"]


@dataclass(slots=True)
class HttpResult:
    """What one POST produced: a status, or a transport error when there was no response."""

    status: int | None
    body: bytes
    error: TransportError | None
    retry_after: float | None
    duration_s: float


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


#: Longest we wait for the rest of a response body once the status is in.
_BODY_BUDGET_S = 1.0
_KEEPALIVE_S = 30.0


def _request_bytes(target: Target, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"content-length: {len(body)}\r\n"]
    for name, value in headers.items():
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            raise Refused(TransportError.INVALID_HEADER)
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    try:
        head = "".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        raise Refused(TransportError.INVALID_HEADER) from None
    return b"".join((target.prefix, head, body))


class HttpClient:
    """Pooled HTTP/1.1 POSTs; create once per worker, :meth:`start`, :meth:`close` on shutdown.

    ``resolver`` replaces the system resolver and ``tls`` the system trust store (tests).
    ``require_https`` defaults to the opposite of ``allow_insecure_targets``.
    """

    def __init__(
        self,
        settings: Settings,
        resolver: AbstractResolver | None = None,
        *,
        policy: AddressPolicy | None = None,
        require_https: bool | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._settings = settings
        self._policy = policy or AddressPolicy.from_settings(settings)
        self._require_https = (
            not settings.allow_insecure_targets if require_https is None else require_https
        )
        # Resolved addresses are checked, and only checked addresses are connected to:
        # no second lookup an attacker could rebind (SSRF).
        self._resolver = GuardedResolver(self._policy, inner=resolver)
        self._socket = guarded_socket_factory(self._policy)
        self._pool = Pool(settings.http_pool_per_host, settings.http_pool_size, _KEEPALIVE_S)
        self._targets: dict[str, Target] = {}
        self._tls = tls
        self._identities = ContextCache(tls)

    async def start(self) -> None:
        if self._tls is None:
            self._tls = ssl.create_default_context()  # verifies certificate and host name

    async def close(self) -> None:
        self._pool.close()
        await self._resolver.close()

    async def post(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        timeout: float,
        before_write: Callable[[], None] | None = None,
        *,
        tls: TlsIdentity | None = None,
        body_max: int | None = None,
    ) -> HttpResult:
        """POST once. Never raises for HTTP or transport failures: they become ``error``.

        ``before_write`` runs right before the request's bytes are written, after every
        wait (pool, connect); what it raises calls the request off and propagates.
        ``tls``: a client certificate to present (pooled apart); ``body_max`` replaces
        ``response_body_max`` (an OAuth2 token response).
        """
        assert self._tls is not None, "HttpClient.start() was not awaited"
        started = time.perf_counter()
        if self._require_https and url[:8].lower() != "https://":
            return HttpResult(None, b"", TransportError.INSECURE_URL, None, 0.0)
        try:
            target = self._target(url)
            data = _request_bytes(target, body, headers)
            context = self._tls
            if tls is not None and target.tls:
                context = self._context(tls)
                target = replace(target, key=(*target.key, tls.identity))  # type: ignore[arg-type]
        except Refused as exc:
            return HttpResult(None, b"", exc.error, None, time.perf_counter() - started)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        conn: Connection | None = None
        slot = False
        try:
            try:
                slot, conn = self._pool.try_acquire(target.key)
                if slot and conn is not None:
                    # The common case, an idle keep-alive connection: no wait but the
                    # response's, bounded by a timer on it alone.
                    conn = await self._reuse(conn, data, before_write, body_max, deadline)
                if conn is None:
                    async with asyncio.timeout_at(deadline):
                        if not slot:
                            conn = await self._pool.acquire(target.key)
                            slot = True
                            if conn is not None:  # an idle one, handed over after the wait
                                conn = await self._reuse(conn, data, before_write, body_max)
                        if conn is None:
                            conn = await self._send(target, data, before_write, context, body_max)
            except (TimeoutError, Refused, Disconnected, ProtocolError, OSError) as exc:
                return HttpResult(None, b"", _error_class(exc), None, time.perf_counter() - started)
            if not conn.settled:
                # The status decides; a receiver that drips or streams its body endlessly
                # neither holds the lane nor fills memory (at most `keep` bytes are kept).
                budget = min(_BODY_BUDGET_S, deadline - loop.time())
                if budget > 0:
                    try:
                        async with asyncio.timeout(budget):
                            await conn.read_body()
                    except TimeoutError:
                        pass
            assert conn.status is not None
            return HttpResult(
                status=conn.status,
                body=bytes(conn.body),
                error=None,
                retry_after=parse_retry_after(
                    conn.retry_after.decode("latin-1") if conn.retry_after else None
                ),
                duration_s=time.perf_counter() - started,
            )
        finally:
            if conn is not None:
                conn.done()
            if slot:
                self._pool.release(target.key, conn)

    def _target(self, url: str) -> Target:
        found = self._targets.get(url)
        if found is None:
            if len(self._targets) >= 10_000:  # endpoints' URLs: keep it bounded
                self._targets.clear()
            found = self._targets[url] = parse_target(url, self._policy)
        return found

    async def _reuse(
        self,
        conn: Connection,
        data: bytes,
        before_write: Callable[[], None] | None,
        body_max: int | None,
        deadline: float | None = None,
    ) -> Connection | None:
        """Send on an idle connection; None if the peer had closed it while idle (not one
        byte of response: the request goes once more, on a new connection)."""
        keep = self._settings.response_body_max if body_max is None else body_max
        if before_write is not None:
            before_write()
        try:
            await conn.request(data, keep, deadline)
        except Disconnected as exc:
            conn.close()
            if not exc.silent:
                raise
            return None
        return conn

    async def _send(
        self,
        target: Target,
        data: bytes,
        before_write: Callable[[], None] | None = None,
        context: ssl.SSLContext | None = None,
        body_max: int | None = None,
    ) -> Connection:
        """Send on a new connection; return it once the response head is in."""
        keep = self._settings.response_body_max if body_max is None else body_max
        conn = await self._open(target, context or self._tls)
        try:
            if before_write is not None:
                before_write()
            await conn.request(data, keep)
        except BaseException:
            conn.close()  # never handed back to the pool: close it here
            raise
        return conn

    def _context(self, tls: TlsIdentity) -> ssl.SSLContext:
        try:
            return self._identities.get(tls)
        except (ssl.SSLError, ValueError, OSError):
            raise Refused(TransportError.TLS) from None

    async def _open(self, target: Target, context: ssl.SSLContext | None) -> Connection:
        loop = asyncio.get_running_loop()
        addresses: list[tuple[int, str]]
        if target.literal:
            literal_family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
            addresses = [(literal_family, target.host)]
        else:
            try:
                found = await self._resolver.resolve(target.host, target.port, socket.AF_UNSPEC)
            except ForbiddenAddress:
                raise Refused(TransportError.FORBIDDEN_ADDRESS) from None
            except OSError:
                raise Refused(TransportError.DNS) from None
            addresses = [(r["family"], r["host"]) for r in found]
        for family, address in addresses:
            sockaddr = (address, target.port)
            try:
                sock = self._socket((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
            except ForbiddenAddress:
                raise Refused(TransportError.FORBIDDEN_ADDRESS) from None
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, sockaddr)
            except OSError:
                sock.close()
                continue
            except BaseException:
                sock.close()
                raise
            try:
                _, conn = await loop.create_connection(
                    Connection,
                    sock=sock,
                    ssl=context if target.tls else None,
                    server_hostname=target.host if target.tls else None,
                )
            except (ssl.SSLError, ssl.CertificateError):
                sock.close()
                raise Refused(TransportError.TLS) from None
            except BaseException:
                sock.close()
                raise
            return conn
        raise Refused(TransportError.CONNECT)


def _error_class(exc: BaseException) -> TransportError:
    if isinstance(exc, Refused):
        return exc.error
    if isinstance(exc, TimeoutError):
        return TransportError.TIMEOUT
    if isinstance(exc, ProtocolError):
        return TransportError.PROTOCOL
    if isinstance(exc, ssl.SSLError):
        return TransportError.TLS
    if isinstance(exc, ConnectionError | OSError):
        return TransportError.CONNECTION_RESET
    return TransportError.TRANSPORT
