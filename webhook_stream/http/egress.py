"""What the dispatcher needs of an HTTP client: the :class:`Egress` protocol.

Both clients implement it: :class:`~webhook_stream.http.client.HttpClient` (direct) and
:class:`~webhook_stream.http.proxied.HttpxClient` (through an egress proxy). The dispatcher
is given one at construction, so a test can give it a fake.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from webhook_stream.http.client import HttpResult
from webhook_stream.http.identity import TlsIdentity

__all__ = ["Egress"]


class Egress(Protocol):
    """POSTs a webhook; :meth:`start` before the first, :meth:`close` on shutdown."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

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
        """POST once; never raises for HTTP or transport failures (they become ``error``).

        ``before_write`` runs right before the request's bytes are written; what it raises
        calls the request off and propagates. ``tls``: a client certificate to present
        (mutual TLS; connections pooled per identity); ``body_max``: keep more of the
        response than ``response_body_max`` (an OAuth2 token answer).
        """
        ...
