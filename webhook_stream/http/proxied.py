"""Deliveries through a forward proxy (``WEBHOOK_STREAM_EGRESS_PROXY``), with httpx.

:class:`HttpxClient` has the interface of :class:`~webhook_stream.http.client.HttpClient`
(``start``, ``post`` returning an :class:`~webhook_stream.http.client.HttpResult``, ``close``)
and the same rules: one deadline per attempt, at most ``response_body_max`` body bytes kept
and at most a second spent reading them once the status is in, redirects never followed,
``http://`` refused unless insecure targets are allowed, the same per-host connection limit.
``http://`` targets go to the proxy as absolute-form requests, ``https://`` ones through a
CONNECT tunnel, TLS verified end to end with the receiver. Hosts in
``WEBHOOK_STREAM_EGRESS_NO_PROXY`` go through the direct client, with its whole SSRF guard.

SSRF: the proxy resolves and connects, so the worker refuses only what the URL shows
(forbidden IP literals, ``localhost`` names); the proxy must refuse the rest (README).

Error classes: those of the direct client, and three that name the proxy as the failure,
all retried like any transport failure::

    proxy_connect  the proxy could not be reached (refused, unreachable, its name unknown)
    proxy_auth     the proxy answered 407: its credentials are missing or wrong (a
                   smokescreen refusal of a CONNECT also comes back as a bare 407)
    proxy_error    the proxy answered with an error of its own (non-2xx to CONNECT other than
                   407, or a response it generated itself): it could not or would not reach
                   the receiver

A forwarded ``http://`` response counts as the proxy's own when it carries the proxy's error
header (``x-smokescreen-error``, ``x-squid-error``), or is a 502/503/504 with
``proxy-agent``; otherwise the status is the receiver's.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from webhook_stream.core.settings import Settings
from webhook_stream.http.client import HttpClient, HttpResult, parse_retry_after
from webhook_stream.http.egress import Egress
from webhook_stream.http.errors import Refused, TransportError
from webhook_stream.http.identity import ContextCache, TlsIdentity
from webhook_stream.http.ssrf import AddressPolicy, ForbiddenAddress
from webhook_stream.http.urls import check_proxied_host, parse_target

__all__ = ["HttpxClient", "egress_client"]

_BODY_BUDGET_S = 1.0
_KEEPALIVE_S = 30.0
_ERROR_HEADERS = ("x-smokescreen-error", "x-squid-error")


def egress_client(settings: Settings) -> Egress:
    """The worker's client: the direct one, or the proxied one when a proxy is set."""
    return HttpxClient(settings) if settings.egress_proxy else HttpClient(settings)


def bypasses_proxy(host: str, no_proxy: tuple[str, ...]) -> bool:
    """True when ``host`` is, or is a subdomain of, an entry of ``no_proxy``."""
    host = host.rstrip(".").lower()
    return any(host == entry or host.endswith("." + entry) for entry in no_proxy)


@dataclass(slots=True)
class _HostSlot:
    """One target host's connections through the proxy: at most ``http_pool_per_host``."""

    gate: asyncio.Semaphore
    #: Requests holding or waiting for the gate: the slot is dropped when none are left.
    users: int = 0


class HttpxClient:
    """POSTs through the egress proxy; create once per worker, :meth:`start`, :meth:`close`.

    ``tls`` replaces the system trust store (tests); it also serves the direct client used
    for ``egress_no_proxy`` hosts.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        policy: AddressPolicy | None = None,
        require_https: bool | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if not settings.egress_proxy:
            raise ValueError("HttpxClient needs WEBHOOK_STREAM_EGRESS_PROXY")
        self._settings = settings
        self._policy = policy or AddressPolicy.from_settings(settings)
        self._require_https = (
            not settings.allow_insecure_targets if require_https is None else require_https
        )
        self._tls = tls
        self._client: httpx.AsyncClient | None = None
        #: One client per TLS client identity (mutual TLS): tunnels never shared across them.
        self._identity_clients: dict[str, httpx.AsyncClient] = {}
        self._identities = ContextCache(tls)
        self._direct = (
            HttpClient(settings, policy=self._policy, require_https=require_https, tls=tls)
            if settings.egress_no_proxy
            else None
        )
        self._hosts: dict[tuple[str, int, bool], _HostSlot] = {}
        # An absolute-form request carries the proxy's credentials. proxy.py passes them on
        # to the receiver on every request after a kept-alive connection's first (measured,
        # tests/http/test_proxied.py): with credentials, each http:// request gets its own
        # proxy connection. https:// targets send them in CONNECT only; tunnels are kept.
        self._one_shot = "@" in settings.egress_proxy

    async def start(self) -> None:
        if self._tls is None:
            self._tls = ssl.create_default_context()  # verifies certificate and host name
        self._client = self._new_client(self._tls, self._settings.http_pool_size)
        if self._direct is not None:
            await self._direct.start()

    def _new_client(self, context: ssl.SSLContext, pool: int) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(
            proxy=httpx.Proxy(str(self._settings.egress_proxy)),
            verify=context,
            limits=httpx.Limits(
                max_connections=pool, max_keepalive_connections=pool, keepalive_expiry=_KEEPALIVE_S
            ),
        )
        client = httpx.AsyncClient(
            transport=transport,
            follow_redirects=False,
            trust_env=False,  # HTTP_PROXY and friends do not override the setting
        )
        for name in ("accept", "accept-encoding", "connection", "user-agent"):
            del client.headers[name]  # send what the direct client sends, no more
        return client

    def _client_for(self, tls: TlsIdentity) -> httpx.AsyncClient:
        found = self._identity_clients.get(tls.identity)
        if found is None:
            try:
                context = self._identities.get(tls)
            except (ssl.SSLError, ValueError, OSError):
                raise Refused(TransportError.TLS) from None
            # An identity is one endpoint's, usually one host's: its own pool is that small.
            pool = self._settings.http_pool_per_host
            found = self._identity_clients[tls.identity] = self._new_client(context, pool)
        return found

    async def close(self) -> None:
        for client in self._identity_clients.values():
            await client.aclose()
        if self._client is not None:
            await self._client.aclose()
        if self._direct is not None:
            await self._direct.close()

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
        """POST once. Never raises for HTTP, proxy or transport failures: they become ``error``.

        ``before_write`` runs right before the request is sent, after the per-host wait;
        what it raises calls the request off and propagates. ``tls`` and ``body_max``: as
        for :meth:`HttpClient.post <webhook_stream.http.client.HttpClient.post>`.
        """
        assert self._client is not None, "HttpxClient.start() was not awaited"
        started = time.perf_counter()
        if self._require_https and not url.startswith("https://"):
            return HttpResult(None, b"", TransportError.INSECURE_URL, None, 0.0)
        try:
            target = parse_target(url, self._policy)
            if self._direct is not None and bypasses_proxy(
                target.host, self._settings.egress_no_proxy
            ):
                return await self._direct.post(
                    url, body, headers, timeout, before_write, tls=tls, body_max=body_max
                )
            check_proxied_host(url, self._policy)
            _check_headers(headers)
            client = self._client
            key: tuple = target.key
            if tls is not None and target.tls:
                client = self._client_for(tls)
                key = (*key, tls.identity)
            if self._one_shot and not target.tls:
                headers = {**headers, "connection": "close"}
        except ForbiddenAddress:
            return HttpResult(
                None, b"", TransportError.FORBIDDEN_ADDRESS, None, time.perf_counter() - started
            )
        except Refused as exc:
            return HttpResult(None, b"", exc.error, None, time.perf_counter() - started)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        slot = self._hosts.get(key)
        if slot is None:
            slot = self._hosts[key] = _HostSlot(
                asyncio.Semaphore(self._settings.http_pool_per_host)
            )
        slot.users += 1
        response: httpx.Response | None = None
        held = False
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    await slot.gate.acquire()
                    held = True
                    request = client.build_request(
                        "POST", url, content=body, headers=headers, timeout=timeout
                    )
                    if before_write is not None:
                        before_write()
                    response = await client.send(request, stream=True)
            except (TimeoutError, httpx.HTTPError, OSError) as exc:
                failure = _error_class(exc, target.tls)
                return HttpResult(None, b"", failure, None, time.perf_counter() - started)
            kept = await self._read_body(response, deadline, body_max)
            status: int | None = response.status_code
            error: TransportError | None = None
            if _from_proxy(response):
                status, error = None, TransportError.PROXY_ERROR
            elif status == 407:
                status, error = None, TransportError.PROXY_AUTH
            return HttpResult(
                status=status,
                body=kept,
                error=error,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
                duration_s=time.perf_counter() - started,
            )
        finally:
            if response is not None:
                await response.aclose()  # a body not read to its end closes the connection
            if held:
                slot.gate.release()
            slot.users -= 1
            if slot.users == 0:
                del self._hosts[key]

    async def _read_body(
        self, response: httpx.Response, deadline: float, body_max: int | None = None
    ) -> bytes:
        """At most ``response_body_max`` bytes, for at most the body budget."""
        keep = self._settings.response_body_max if body_max is None else body_max
        kept = bytearray()
        budget = min(_BODY_BUDGET_S, deadline - asyncio.get_running_loop().time())
        if budget <= 0:
            return b""
        try:
            async with asyncio.timeout(budget):
                async for chunk in response.aiter_raw():
                    kept += chunk[: keep - len(kept)]
                    if len(kept) >= keep:
                        break
        except (TimeoutError, httpx.HTTPError):
            pass  # the status decides; what arrived is kept
        return bytes(kept)


def _check_headers(headers: dict[str, str]) -> None:
    for name, value in headers.items():
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            raise Refused(TransportError.INVALID_HEADER)
        try:
            name.encode("latin-1")
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise Refused(TransportError.INVALID_HEADER) from None


def _from_proxy(response: httpx.Response) -> bool:
    """A response the proxy generated: its error headers (smokescreen strips its own from
    upstream responses; a refusal is a 407 with it), or a gateway error with ``proxy-agent``."""
    headers = response.headers
    if any(name in headers for name in _ERROR_HEADERS):
        return response.status_code >= 400
    return response.status_code in (502, 503, 504) and "proxy-agent" in headers


def _caused_by_tls(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError | ssl.CertificateError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _error_class(exc: BaseException, tls: bool) -> TransportError:
    if isinstance(exc, httpx.ProxyError):  # the proxy's answer to CONNECT: "407 ...", "502 ..."
        return (
            TransportError.PROXY_AUTH if str(exc).startswith("407") else TransportError.PROXY_ERROR
        )
    if isinstance(exc, httpx.ConnectTimeout):
        return TransportError.PROXY_CONNECT
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return TransportError.TIMEOUT
    if _caused_by_tls(exc):
        # Through a tunnel the handshake is the receiver's; to an http:// target the only
        # TLS is the proxy's own (an https:// proxy URL).
        return TransportError.TLS if tls else TransportError.PROXY_CONNECT
    if isinstance(exc, httpx.ConnectError):
        return TransportError.PROXY_CONNECT  # every connection the client opens is to the proxy
    if isinstance(exc, httpx.RemoteProtocolError):
        return (
            TransportError.CONNECTION_RESET
            if "disconnected" in str(exc)
            else TransportError.PROTOCOL
        )
    if isinstance(exc, httpx.ReadError | httpx.WriteError | httpx.CloseError | OSError):
        return TransportError.CONNECTION_RESET
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return TransportError.INVALID_URL
    if isinstance(exc, httpx.LocalProtocolError):
        return TransportError.INVALID_HEADER
    return TransportError.TRANSPORT
