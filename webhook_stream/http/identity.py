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
from typing import Protocol

__all__ = ["ContextCache", "TlsIdentity", "client_context"]


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
    """Contexts by identity, built once each (bounded: identities are endpoints' configs)."""

    __slots__ = ("_contexts", "_trust")

    def __init__(self, trust: ssl.SSLContext | None) -> None:
        self._trust = trust
        self._contexts: dict[str, ssl.SSLContext] = {}

    def get(self, tls: TlsIdentity) -> ssl.SSLContext:
        found = self._contexts.get(tls.identity)
        if found is None:
            if len(self._contexts) >= 1000:
                self._contexts.clear()
            found = self._contexts[tls.identity] = client_context(tls, self._trust)
        return found
