"""The TLS contexts of client identities: built once each, the least recently used evicted."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass

from webhook_stream.http.identity import ContextCache


@dataclass(frozen=True)
class Identity:
    identity: str
    client_cert: str = ""
    client_key: str = ""
    ca_cert: str | None = None


Build = Callable[[Identity, ssl.SSLContext | None], ssl.SSLContext]


def counting_build() -> tuple[Build, list[str]]:
    """A context builder that lists the identities it was asked to build."""
    built: list[str] = []

    def build(tls: Identity, _trust: ssl.SSLContext | None) -> ssl.SSLContext:
        built.append(tls.identity)
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)

    return build, built


def test_each_identity_is_built_once_and_the_least_recently_used_goes_first() -> None:
    build, built = counting_build()

    cache = ContextCache(None, limit=3, build=build)  # type: ignore[arg-type]
    a, b, c, d = (Identity(x) for x in "abcd")
    first = cache.get(a)
    cache.get(b)
    cache.get(c)
    assert cache.get(a) is first  # a is used again: b is now the oldest
    cache.get(d)
    assert built == ["a", "b", "c", "d"]
    cache.get(a)
    cache.get(c)
    assert built == ["a", "b", "c", "d"]  # kept
    cache.get(b)
    assert built == ["a", "b", "c", "d", "b"]  # evicted, rebuilt


def test_one_tenant_cycling_through_many_identities_leaves_a_busy_one_cached() -> None:
    build, built = counting_build()

    cache = ContextCache(None, limit=100, build=build)  # type: ignore[arg-type]
    busy = Identity("busy")
    for i in range(5000):  # the other tenant's 5,000 endpoints, each used in turn
        cache.get(Identity(f"t{i}"))
        cache.get(busy)  # the busy endpoint delivers in between
    assert built.count("busy") == 1
