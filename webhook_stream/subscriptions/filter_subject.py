"""The event as content filters see it, and the per-event reading of its arrays.

:class:`FilterSubject` decodes ``data`` and the headers at most once per event, whatever
the number of filters tried (:mod:`.filters`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from webhook_stream.core.records import Event

__all__ = ["MISSING", "SMALL_ARRAY", "FilterSubject", "decoded_data", "scalars"]


class _Missing:
    """An absent path (not ``null``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def decoded_data(event: Event) -> Any:
    """The event's ``data`` as an object: as decoding left it, else parsed from the text."""
    if type(event.decoded) is not tuple:
        return event.decoded
    try:
        return orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return None  # decoding refuses such events first


class FilterSubject:
    """One event as filters read it; ``data`` and ``headers`` are decoded on first use.

    Header names are lower-cased and the first of a repeated name wins, as in decoding.
    """

    __slots__ = ("_data", "_event", "_headers", "_raw_headers")

    def __init__(self, event: Event, headers: Sequence[tuple[str, bytes | None]] = ()) -> None:
        _ARRAYS.clear()  # another event: the arrays read for the last one are not these
        self._event = event
        self._raw_headers = headers
        self._data: Any = MISSING
        self._headers: dict[str, str] | None = None

    def field(self, name: str) -> Any:
        event = self._event
        if name == "data":
            if self._data is MISSING:
                self._data = decoded_data(event)
            return self._data
        if name == "type":
            return event.type
        if name == "tenant_id":
            return event.tenant_id
        if name == "headers":
            if self._headers is None:
                found: dict[str, str] = {}
                for key, raw in self._raw_headers:
                    found.setdefault(key.lower(), (raw or b"").decode("utf-8", "replace"))
                self._headers = found
            return self._headers
        if name == "occurred_at":
            return event.occurred_at
        if name == "source":
            return event.source.to_dict()
        if name == "id":
            return event.id
        return MISSING


#: The scalars of each array an ``$in`` read, by ``id``, for the current event only (each
#: :class:`FilterSubject` clears it; evaluation never awaits, so events cannot interleave).
#: Many ``$in`` over one large array then read it once, not once each: a filter costs at
#: most its own size plus one pass over the event. The array is kept (pinned id).
_ARRAYS: dict[int, tuple[list[Any], frozenset[Any], frozenset[Any], frozenset[Any], bool]] = {}


SMALL_ARRAY = 16


def scalars(
    v: list[Any],
) -> tuple[list[Any], frozenset[Any], frozenset[Any], frozenset[Any], bool]:
    found = _ARRAYS.get(id(v))
    if found is None:
        strings, numbers, bools, null = [], [], [], False
        for x in v:  # one pass, by exact type (``true`` is not ``1``)
            t = type(x)
            if t is str:
                strings.append(x)
            elif t is int or t is float:
                numbers.append(x)
            elif t is bool:
                bools.append(x)
            elif x is None:
                null = True
        found = (v, frozenset(strings), frozenset(numbers), frozenset(bools), null)
        _ARRAYS[id(v)] = found
    return found
