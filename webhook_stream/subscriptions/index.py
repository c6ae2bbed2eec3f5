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


class _Anchored:
    """Globs filed by one kind of anchor (heads or tails), with the anchor lengths in use."""

    __slots__ = ("groups", "heads", "lengths")

    def __init__(self, heads: bool) -> None:
        self.heads = heads
        self.groups: dict[str, dict[str, Matcher | None]] = {}
        self.lengths: dict[int, int] = {}  # anchor length -> groups of that length

    def size(self, key: str) -> int:
        return len(self.groups.get(key, ()))

    def add(self, key: str, pattern: str) -> None:
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = {}
            self.lengths[len(key)] = self.lengths.get(len(key), 0) + 1
        group[pattern] = None  # compiled on first use: loading 100,000 stays fast

    def discard(self, key: str, pattern: str) -> None:
        group = self.groups.get(key)
        if group is None:
            return
        group.pop(pattern, None)
        if not group:
            del self.groups[key]
            left = self.lengths[len(key)] - 1
            if left:
                self.lengths[len(key)] = left
            else:
                del self.lengths[len(key)]

    def candidates(self, event_type: str) -> Iterator[tuple[str, dict[str, Matcher | None]]]:
        size = len(event_type)
        for length in self.lengths:
            if length <= size:
                key = event_type[:length] if self.heads else event_type[size - length :]
                group = self.groups.get(key)
                if group:
                    yield from ((pattern, group) for pattern in group)


@dataclass(slots=True)
class _Globs:
    """Globs filed by anchor; ``ids`` maps each pattern to its subscriptions.

    A glob is filed under whichever of its anchors has fewer globs already (ties: the
    longer), so a shared head (``order.*.v1``, ``order.*.v2``) or a shared tail
    (``a.*.created``, ``b.*.created``) does not pile patterns onto one key.
    """

    ids: dict[str, set[str]] = field(default_factory=dict)
    heads: _Anchored = field(default_factory=lambda: _Anchored(True))
    tails: _Anchored = field(default_factory=lambda: _Anchored(False))
    loose: dict[str, Matcher | None] = field(default_factory=dict)
    filed: dict[str, tuple[_Anchored, str] | None] = field(default_factory=dict)

    def setdefault(self, pattern: str, default: set[str]) -> set[str]:
        found = self.ids.get(pattern)
        if found is None:
            found = self.ids[pattern] = default
            head, tail = _anchors(pattern)
            place: tuple[_Anchored, str] | None = None
            if head and tail:
                by_head = (self.heads.size(head), -len(head))
                by_tail = (self.tails.size(tail), -len(tail))
                place = (self.heads, head) if by_head <= by_tail else (self.tails, tail)
            elif head or tail:
                place = (self.heads, head) if head else (self.tails, tail)
            if place is None:
                self.loose[pattern] = None
            else:
                place[0].add(place[1], pattern)
            self.filed[pattern] = place
        return found

    def get(self, pattern: str) -> set[str] | None:
        return self.ids.get(pattern)

    def __delitem__(self, pattern: str) -> None:
        del self.ids[pattern]
        place = self.filed.pop(pattern, None)
        if place is None:
            self.loose.pop(pattern, None)
        else:
            place[0].discard(place[1], pattern)

    def __bool__(self) -> bool:
        return bool(self.ids)

    def matching(self, event_type: str, ids: set[str]) -> None:
        """Add the ids of every glob that matches ``event_type``."""
        for table in (self.heads, self.tails):
            if table.lengths:
                for pattern, group in table.candidates(event_type):
                    if _test(group, pattern, event_type):
                        ids.update(self.ids[pattern])
        for pattern in self.loose:
            if _test(self.loose, pattern, event_type):
                ids.update(self.ids[pattern])


def _test(group: dict[str, Matcher | None], pattern: str, event_type: str) -> bool:
    matcher = group[pattern]
    if matcher is None:
        matcher = group[pattern] = re.compile(translate(pattern)).match
    return matcher(event_type) is not None


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
        self._counts: dict[str | None, int] = {}
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

    def count(self, tenant_id: str | None) -> int:
        """Subscriptions of ``tenant_id`` (disabled ones too)."""
        return self._counts.get(tenant_id, 0)

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
        self._counts[sub.tenant_id] = self._counts.get(sub.tenant_id, 0) + 1
        bucket = self._tenants.get(sub.tenant_id)
        if bucket is None:
            bucket = self._tenants[sub.tenant_id] = _Bucket()
        for pattern in sub.event_types:
            table, key = bucket.table(pattern)
            table.setdefault(key, set()).add(sub.id)

    def _unindex(self, sub: Subscription) -> None:
        left = self._counts.get(sub.tenant_id, 0) - 1
        if left > 0:
            self._counts[sub.tenant_id] = left
        else:
            self._counts.pop(sub.tenant_id, None)
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
