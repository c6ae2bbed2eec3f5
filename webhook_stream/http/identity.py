"""Client certificates (mutual TLS) for the HTTP clients: one TLS context per identity.

An endpoint's ``tls`` (PEM client certificate and key, optionally a CA bundle) is given to
``post`` as a :class:`TlsIdentity`; both clients pool its connections apart from every other
identity's, keyed by :attr:`TlsIdentity.identity`. With ``ca_cert`` the receiver must chain to
it (that endpoint only); without, the client's usual trust store applies.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

__all__ = ["MAX_CONTEXTS", "ContextCache", "TlsIdentity", "client_context"]

#: TLS contexts a client keeps (one per client identity in use).
MAX_CONTEXTS = 1000


class TlsIdentity(Protocol):
    """What the clients read of an endpoint's ``tls`` (its subscription model's ``ClientTls``)."""

    @property
    def client_cert(self) -> str: ...

    @property
    def client_key(self) -> str: ...

    @property
    def ca_cert(self) -> str | None: ...

    @property
    def identity(self) -> str: ...


def client_context(tls: TlsIdentity, trust: ssl.SSLContext | None) -> ssl.SSLContext:
    """A verifying context presenting ``tls``'s certificate; ``trust`` is the client's own
    context, whose CAs are trusted when ``tls`` names none (the system store if None)."""
    context = ssl.create_default_context(cadata=tls.ca_cert) if tls.ca_cert else None
    if context is None:
        context = ssl.create_default_context()
        if trust is not None:
            extra = trust.get_ca_certs(binary_form=True)
            if extra:
                context.load_verify_locations(cadata=b"".join(extra))
    # ssl reads a certificate chain from files only: a private file, removed at once.
    fd, path = tempfile.mkstemp(prefix="wh-tls-", suffix=".pem")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(tls.client_cert.rstrip("\n") + "\n" + tls.client_key)
        context.load_cert_chain(path)
    finally:
        os.unlink(path)
    return context


class ContextCache:
    """Contexts by identity, built once each; the least recently used goes beyond ``limit``
    (identities are endpoints' configs: one tenant's many does not evict everyone's)."""

    __slots__ = ("_build", "_contexts", "_limit", "_trust")

    def __init__(
        self,
        trust: ssl.SSLContext | None,
        limit: int = MAX_CONTEXTS,
        build: Callable[[TlsIdentity, ssl.SSLContext | None], ssl.SSLContext] = client_context,
    ) -> None:
        self._trust = trust
        self._limit = max(1, limit)
        self._build = build
        self._contexts: OrderedDict[str, ssl.SSLContext] = OrderedDict()

    def get(self, tls: TlsIdentity) -> ssl.SSLContext:
        found = self._contexts.get(tls.identity)
        if found is not None:
            self._contexts.move_to_end(tls.identity)
            return found
        found = self._build(tls, self._trust)  # ~1 ms: a key and a CA bundle parsed
        if len(self._contexts) >= self._limit:
            self._contexts.popitem(last=False)
        self._contexts[tls.identity] = found
        return found
