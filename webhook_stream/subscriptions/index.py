"""The routing index: which subscriptions get an event of a given type and tenant."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from webhook_stream.subscriptions.model import Subscription

__all__ = ["SubscriptionIndex"]


@dataclass(slots=True)
class _Bucket:
    """One tenant's patterns, each mapped to the ids of the subscriptions using it."""

    exact: dict[str, set[str]] = field(default_factory=dict)
    prefix: dict[str, set[str]] = field(default_factory=dict)
    globs: dict[str, set[str]] = field(default_factory=dict)

    def table(self, pattern: str) -> tuple[dict[str, set[str]], str]:
        if "*" not in pattern and "?" not in pattern:
            return self.exact, pattern
        head = pattern.rstrip("*")  # "order.**" == "order.*"; "*" is the empty prefix
        if "*" not in head and "?" not in head:
            return self.prefix, head
        return self.globs, pattern

    def __bool__(self) -> bool:
        return bool(self.exact or self.prefix or self.globs)


class SubscriptionIndex:
    """All known subscriptions, indexed by tenant and pattern for fan-out.

    ``match`` costs one dict lookup for exact types, ``len(event_type) + 1`` for
    ``prefix*`` patterns, and a scan of only the tenant's other glob patterns.
    """

    def __init__(self, subscriptions: Iterable[Subscription] = ()) -> None:
        self._subs: dict[str, Subscription] = {}
        self._tenants: dict[str | None, _Bucket] = {}
        for sub in subscriptions:
            self.put(sub)

    def put(self, sub: Subscription) -> Subscription | None:
        """Add or replace (by id); returns the replaced subscription."""
        old = self._subs.get(sub.id)
        if old is not None:
            self._unindex(old)
        self._subs[sub.id] = sub
        self._index(sub)
        return old

    def remove(self, endpoint_id: str) -> Subscription | None:
        old = self._subs.pop(endpoint_id, None)
        if old is not None:
            self._unindex(old)
        return old

    def get(self, endpoint_id: str) -> Subscription | None:
        return self._subs.get(endpoint_id)

    def all(self) -> list[Subscription]:
        """Every subscription (disabled ones too), sorted by id."""
        return [self._subs[key] for key in sorted(self._subs)]

    def __len__(self) -> int:
        return len(self._subs)

    def __iter__(self) -> Iterator[Subscription]:
        return iter(self.all())

    def __contains__(self, endpoint_id: object) -> bool:
        return endpoint_id in self._subs

    def match(self, event_type: str, tenant_id: str | None) -> list[Subscription]:
        """Subscriptions of exactly this tenant with a pattern matching the type, sorted
        by id. Tenants fail closed: ``None`` only matches ``None``. Disabled ones match
        too: the delivery path dead-letters them (``endpoint_disabled``), so a re-enabled
        endpoint can have them replayed."""
        bucket = self._tenants.get(tenant_id)
        if bucket is None:
            return []
        ids: set[str] = set()
        hit = bucket.exact.get(event_type)
        if hit:
            ids.update(hit)
        if bucket.prefix:
            for end in range(len(event_type) + 1):
                hit = bucket.prefix.get(event_type[:end])
                if hit:
                    ids.update(hit)
        for pattern, hit in bucket.globs.items():
            if fnmatchcase(event_type, pattern):
                ids.update(hit)
        return [self._subs[key] for key in sorted(ids)]

    def _index(self, sub: Subscription) -> None:
        bucket = self._tenants.get(sub.tenant_id)
        if bucket is None:
            bucket = self._tenants[sub.tenant_id] = _Bucket()
        for pattern in sub.event_types:
            table, key = bucket.table(pattern)
            table.setdefault(key, set()).add(sub.id)

    def _unindex(self, sub: Subscription) -> None:
        bucket = self._tenants.get(sub.tenant_id)
        if bucket is None:
            return
        for pattern in sub.event_types:
            table, key = bucket.table(pattern)
            ids = table.get(key)
            if ids is not None:
                ids.discard(sub.id)
                if not ids:
                    del table[key]
        if not bucket:
            del self._tenants[sub.tenant_id]
