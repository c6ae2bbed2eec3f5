"""The routing index: which subscriptions get an event of a given type and tenant.

Glob patterns other than ``prefix*`` are compiled once (``fnmatch.translate``, so the
semantics are exactly ``fnmatchcase``) and filed under a literal anchor: the text before
the first wildcard or after the last one, whichever is longer. An event type only tries
the globs whose anchor is one of its own prefixes or suffixes, so routing cost does not
grow with the number of glob patterns (``fnmatch``'s own cache holds 32,768 patterns;
beyond that every call recompiled and one event took seconds). Only globs with no
literal anchor at either end (``*a*``, ``?*``) are tried one by one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fnmatch import translate

from webhook_stream.subscriptions.model import Subscription

__all__ = ["SubscriptionIndex"]


_WILD = "*?[]"

Matcher = Callable[[str], object]


def _anchors(pattern: str) -> tuple[str, str]:
    """The literal text before the first and after the last wildcard character.

    ``]`` counts as one too: what follows the last ``]`` can never be inside a class.
    Any string ``fnmatchcase`` accepts starts with the first and ends with the second.
    """
    first = min((i for i in map(pattern.find, _WILD) if i >= 0), default=len(pattern))
    last = max(map(pattern.rfind, _WILD))
    return pattern[:first], pattern[last + 1 :]


@dataclass(slots=True)
class _Globs:
    """Compiled globs filed by anchor; ``ids`` maps each pattern to its subscriptions."""

    ids: dict[str, set[str]] = field(default_factory=dict)
    heads: dict[str, dict[str, Matcher]] = field(default_factory=dict)
    tails: dict[str, dict[str, Matcher]] = field(default_factory=dict)
    loose: dict[str, Matcher] = field(default_factory=dict)

    def setdefault(self, pattern: str, default: set[str]) -> set[str]:
        found = self.ids.get(pattern)
        if found is None:
            found = self.ids[pattern] = default
            matcher = re.compile(translate(pattern)).match
            head, tail = _anchors(pattern)
            if head and len(head) >= len(tail):
                self.heads.setdefault(head, {})[pattern] = matcher
            elif tail:
                self.tails.setdefault(tail, {})[pattern] = matcher
            else:
                self.loose[pattern] = matcher
        return found

    def get(self, pattern: str) -> set[str] | None:
        return self.ids.get(pattern)

    def __delitem__(self, pattern: str) -> None:
        del self.ids[pattern]
        head, tail = _anchors(pattern)
        if head and len(head) >= len(tail):
            table, key = self.heads, head
        elif tail:
            table, key = self.tails, tail
        else:
            self.loose.pop(pattern, None)
            return
        group = table.get(key)
        if group is not None:
            group.pop(pattern, None)
            if not group:
                del table[key]

    def __bool__(self) -> bool:
        return bool(self.ids)

    def matching(self, event_type: str, ids: set[str]) -> None:
        """Add the ids of every glob that matches ``event_type``."""
        size = len(event_type)
        for table, heads in ((self.heads, True), (self.tails, False)):
            if not table:
                continue
            for end in range(size + 1):
                key = event_type[:end] if heads else event_type[size - end :]
                group = table.get(key)
                if group:
                    for pattern, matcher in group.items():
                        if matcher(event_type):
                            ids.update(self.ids[pattern])
        for pattern, matcher in self.loose.items():
            if matcher(event_type):
                ids.update(self.ids[pattern])


@dataclass(slots=True)
class _Bucket:
    """One tenant's patterns, each mapped to the ids of the subscriptions using it."""

    exact: dict[str, set[str]] = field(default_factory=dict)
    prefix: dict[str, set[str]] = field(default_factory=dict)
    globs: _Globs = field(default_factory=_Globs)

    def table(self, pattern: str) -> tuple[dict[str, set[str]] | _Globs, str]:
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
    ``prefix*`` patterns, and for other globs ``2 * (len(event_type) + 1)`` lookups plus
    one compiled-regex test per glob whose anchor fits (see the module docstring).
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
        if bucket.globs:
            bucket.globs.matching(event_type, ids)
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
