"""The transport errors of both HTTP clients: why an attempt got no response, in one place.

Like aiokafka's errors, each says what it means for the caller: ``retriable`` (a later
attempt may succeed) and ``blames_receiver`` (the receiver's side failed: it counts toward
the endpoint's health; an egress proxy that is down or refuses us says nothing about it).
:class:`TransportError` is a ``str`` enum, so ``HttpResult.error`` and the attempt records
keep the plain names below.

==================  =====================================================  =====  =======
name                when                                                   retry  blames
==================  =====================================================  =====  =======
insecure_url        http:// while insecure targets are not allowed         no     yes
invalid_url         the URL cannot be requested                            no     yes
invalid_header      a header name or value with CR/LF or non-Latin-1       no     yes
forbidden_address   the target resolves only to refused addresses          no     yes
dns                 the name did not resolve                               yes    yes
connect             no address accepted the connection                     yes    yes
tls                 handshake or certificate failure                       yes    yes
timeout             the attempt's time ran out before the response head    yes    yes
connection_reset    the peer closed or reset before the response head      yes    yes
protocol            the peer's bytes are not an HTTP/1.1 response          yes    yes
transport           any other failure to exchange the request              yes    yes
auth_failed         the receiver's OAuth2 token endpoint gave no token     yes    yes
proxy_connect       the egress proxy could not be reached                  yes    no
proxy_auth          the egress proxy refused our credentials (407)         yes    no
proxy_error         the egress proxy answered with its own error           yes    no
==================  =====================================================  =====  =======
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Refused", "TransportError"]


class TransportError(StrEnum):
    """Why one attempt got no HTTP response (the table above)."""

    INSECURE_URL = "insecure_url"
    INVALID_URL = "invalid_url"
    INVALID_HEADER = "invalid_header"
    FORBIDDEN_ADDRESS = "forbidden_address"
    DNS = "dns"
    CONNECT = "connect"
    TLS = "tls"
    TIMEOUT = "timeout"
    CONNECTION_RESET = "connection_reset"
    PROTOCOL = "protocol"
    TRANSPORT = "transport"
    #: Set by :mod:`webhook_stream.delivery.credentials`, not by a client: the request
    #: was not sent for want of a token (the token endpoint failed).
    AUTH_FAILED = "auth_failed"
    PROXY_CONNECT = "proxy_connect"
    PROXY_AUTH = "proxy_auth"
    PROXY_ERROR = "proxy_error"

    @property
    def retriable(self) -> bool:
        """A later attempt may succeed: not a URL, header or address we refuse to send to."""
        return self not in _NOT_RETRIABLE

    @property
    def blames_receiver(self) -> bool:
        """The receiver's side failed (counts toward its health); not our egress proxy."""
        return self not in _PROXY


_NOT_RETRIABLE = frozenset(
    {
        TransportError.INSECURE_URL,
        TransportError.INVALID_URL,
        TransportError.INVALID_HEADER,
        TransportError.FORBIDDEN_ADDRESS,
    }
)
_PROXY = frozenset(
    {TransportError.PROXY_CONNECT, TransportError.PROXY_AUTH, TransportError.PROXY_ERROR}
)


class Refused(Exception):
    """An attempt that failed before or while connecting, with its :class:`TransportError`."""

    def __init__(self, error: TransportError) -> None:
        super().__init__(error)
        self.error = error
