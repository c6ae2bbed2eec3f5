"""Content filters of subscriptions: a JSON object compiled once into a predicate.

A filter mirrors the event as filters see it (:class:`FilterSubject`): ``id``, ``type``,
``tenant_id``, ``source``, ``occurred_at``, ``data`` and ``headers``. A key without ``$``
descends (an object by key, an array by a decimal index); a value that is not an object is
an equality test; keys starting with ``$`` are operators applied to the value reached:

- ``$eq $neq``: JSON equality (``1 == 1.0``; ``true`` is not ``1``);
- ``$gt $gte $lt $lte``: a number against numbers, a string against strings (so ISO-8601
  timestamps of one format compare by time); another type never matches;
- ``$in $nin``: a list of scalars; an array value is in when any of its elements is;
- ``$exist``: ``true`` when the path is present (``null`` counts), ``false`` when absent;
- ``$startsWith $endsWith``: strings;
- ``$and $or``: a non-empty list of filters of the same value; ``$not``: one filter.

Several keys in one object must all hold. A path that is absent matches only ``$exist:
false``, ``$neq``, ``$nin`` and a ``$not`` of something it does not match. There is no
``$regex``: a backtracking engine on tenant-written patterns would be a denial of service.

:func:`compile_filter` is pure and validates as it compiles (bad input raises
:class:`~webhook_stream.core.errors.InvalidSubscription` naming the path, e.g.
``filter.data.amount.$gt``). Evaluation only runs for subscriptions whose type pattern and
tenant already match, and parses ``data`` at most once per event (:class:`FilterSubject`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from webhook_stream.core.errors import InvalidSubscription
from webhook_stream.subscriptions.filter_codegen import generate
from webhook_stream.subscriptions.filter_subject import (
    MISSING,
    SMALL_ARRAY,
    FilterSubject,
    decoded_data,
    scalars,
)

__all__ = [
    "FIELDS",
    "MAX_FILTER_BYTES",
    "MAX_FILTER_DEPTH",
    "MAX_FILTER_NODES",
    "MAX_IN_ITEMS",
    "OPERATORS",
    "Filter",
    "FilterSubject",
    "compile_filter",
    "decoded_data",
]

#: The serialized filter's size, its nesting depth (objects and logical lists), the
#: conditions it holds (operators and keys) and the entries of one ``$in``/``$nin``.
MAX_FILTER_BYTES = 8192
MAX_FILTER_DEPTH = 10
MAX_FILTER_NODES = 256
MAX_IN_ITEMS = 256

#: Top-level keys: what the event shows a filter.
FIELDS = ("id", "type", "tenant_id", "source", "occurred_at", "data", "headers")
OPERATORS = tuple(
    "$eq $neq $gt $gte $lt $lte $in $nin $exist $startsWith $endsWith $and $or $not".split()
)

Predicate = Callable[[Any], bool]


def _negate(inner: Predicate) -> Predicate:
    return lambda s: not inner(s)


def _on_field(key: str, test: Predicate) -> Predicate:
    return lambda s: test(s.field(key))


def _on_child(get: Callable[[Any], Any], test: Predicate) -> Predicate:
    return lambda v: test(get(v))


#: Compiled filters by their canonical text: endpoints with the same filter share one
#: function (fewer cold objects per event, row 6e), and a re-read version is not compiled
#: again. Cleared when full.
_COMPILED: dict[bytes, Filter] = {}
_COMPILED_MAX = 4096


class Filter:
    """A validated filter: ``spec`` as written, ``test(subject)`` its predicate.

    ``test`` starts as the closures built while validating; on its first call it becomes
    the generated function (:mod:`.filter_codegen`), compiled then: loading 100,000
    endpoints does not compile the filters of those that never see an event. Equal when
    the specs are (the predicate follows from the spec). Treat as immutable.
    """

    __slots__ = ("_reference", "spec", "test")

    def __init__(self, spec: Mapping[str, Any], reference: Predicate) -> None:
        self.spec = spec
        self._reference = reference
        self.test: Callable[[FilterSubject], bool] = self._first

    def _first(self, subject: FilterSubject) -> bool:
        try:
            fast = generate(self.spec, MISSING, _same, _member)
        except (SyntaxError, RecursionError, MemoryError, ValueError):  # pragma: no cover
            fast = self._reference  # decides the same, only slower
        self.test = fast
        return fast(subject)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Filter) and self.text(sort=True) == other.text(sort=True)

    def __hash__(self) -> int:
        return hash(self.text(sort=True))

    def __repr__(self) -> str:
        return f"Filter({self.text()})"

    def text(self, sort: bool = False) -> str:
        """The stored form: compact JSON (``sort``: keys sorted, the canonical form)."""
        return orjson.dumps(self.spec, option=orjson.OPT_SORT_KEYS if sort else 0).decode()


def compile_filter(value: object, name: str = "filter") -> Filter | None:
    """Validate and compile ``value`` (an object, or its JSON text as stored); ``None`` and
    ``{}`` are no filter. Raises :class:`InvalidSubscription` naming the bad path."""
    if value is None:
        return None
    if isinstance(value, str | bytes):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise InvalidSubscription(name, "is not valid JSON") from None
    if not isinstance(value, Mapping):
        raise InvalidSubscription(name, "must be a JSON object")
    if not value:
        return None
    try:
        size = len(orjson.dumps(value))
    except TypeError:
        raise InvalidSubscription(name, "must be JSON") from None
    if size > MAX_FILTER_BYTES:
        raise InvalidSubscription(name, f"is {size} bytes; at most {MAX_FILTER_BYTES}")
    key = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    found = _COMPILED.get(key)
    if found is not None and found.spec == value:
        return found  # the same filter on another endpoint, or another version's
    reference = _Compiler().root(value, name, 1)  # validates as it builds the closures
    if len(_COMPILED) >= _COMPILED_MAX:
        _COMPILED.clear()
    compiled = _COMPILED[key] = Filter(value, reference)
    return compiled


def _show(key: object) -> str:
    # Keys come from untrusted input and reach responses and logs.
    return "".join(c if c.isprintable() else "?" for c in str(key))[:64]


def _is_number(value: object) -> bool:
    return type(value) in (int, float)


def _is_scalar(value: object) -> bool:
    return value is None or type(value) in (str, int, float, bool)


def _same(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value, ``true`` never equal to ``1``."""
    ta, tb = type(a), type(b)
    if ta in (int, float) and tb in (int, float):
        return a == b
    if ta is not tb:
        return False
    if ta is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if ta is dict:
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    return a == b


# No generators on the hot path: ``any(p(v) for p in ...)`` costs a frame per call.
def _all(preds: list[Predicate]) -> Predicate:
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        first, second = preds
        return lambda v: first(v) and second(v)
    group = tuple(preds)

    def every(v: Any) -> bool:
        for p in group:
            if not p(v):
                return False
        return True

    return every


def _any(preds: list[Predicate]) -> Predicate:
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        first, second = preds
        return lambda v: first(v) or second(v)
    group = tuple(preds)

    def some(v: Any) -> bool:
        for p in group:
            if p(v):
                return True
        return False

    return some


def _eq(operand: Any) -> Predicate:
    if isinstance(operand, str):
        return lambda v: v == operand
    if operand is None:
        return lambda v: v is None
    if isinstance(operand, bool):
        return (lambda v: v is True) if operand else (lambda v: v is False)
    if _is_number(operand):
        return lambda v: type(v) in (int, float) and v == operand
    return lambda v: _same(v, operand)


def _member(items: list[Any]) -> Predicate:
    strings = frozenset(x for x in items if type(x) is str)
    numbers = frozenset(x for x in items if _is_number(x))
    bools = frozenset(x for x in items if type(x) is bool)
    null = any(x is None for x in items)

    def one(v: Any) -> bool:
        t = type(v)
        if t is str:
            return v in strings
        if t is bool:
            return v in bools
        if t is int or t is float:
            return v in numbers
        return v is None and null

    def test(v: Any) -> bool:
        if type(v) is not list:
            return one(v)
        if len(v) <= SMALL_ARRAY:
            return any(one(x) for x in v)
        _, s, n, b, has_null = scalars(v)  # any element: set against set, the smaller
        return (
            not strings.isdisjoint(s)
            or not numbers.isdisjoint(n)
            or not bools.isdisjoint(b)
            or (null and has_null)
        )

    return test


def _ordered(op: str, operand: Any) -> Predicate:
    types: tuple[type, ...] = (str,) if isinstance(operand, str) else (int, float)
    if op == "$gt":
        return lambda v: type(v) in types and v > operand
    if op == "$gte":
        return lambda v: type(v) in types and v >= operand
    if op == "$lt":
        return lambda v: type(v) in types and v < operand
    return lambda v: type(v) in types and v <= operand


def _child(key: str) -> Callable[[Any], Any]:
    if key.isdigit() and key.isascii():
        index = int(key)

        def get(v: Any) -> Any:
            t = type(v)
            if t is dict:
                return v.get(key, MISSING)
            if t is list:
                return v[index] if index < len(v) else MISSING
            return MISSING

        return get
    return lambda v: v.get(key, MISSING) if type(v) is dict else MISSING


class _Compiler:
    """One compilation: counts conditions against :data:`MAX_FILTER_NODES`."""

    def __init__(self) -> None:
        self.nodes = 0

    def _count(self, path: str) -> None:
        self.nodes += 1
        if self.nodes > MAX_FILTER_NODES:
            raise InvalidSubscription(path, f"a filter holds at most {MAX_FILTER_NODES} conditions")

    def _depth(self, path: str, depth: int) -> None:
        if depth > MAX_FILTER_DEPTH:
            raise InvalidSubscription(path, f"nests deeper than {MAX_FILTER_DEPTH} levels")

    def root(self, spec: Mapping[str, Any], path: str, depth: int) -> Predicate:
        """The event level: known fields and the logical operators only."""
        self._depth(path, depth)
        spec = self._object(spec, path)
        preds: list[Predicate] = []
        for key, sub in spec.items():
            where = f"{path}.{_show(key)}"
            self._count(where)
            if key in ("$and", "$or"):
                parts = [
                    self.root(s, f"{where}[{i}]", depth + 1) for i, s in self._list(sub, where)
                ]
                preds.append(_all(parts) if key == "$and" else _any(parts))
            elif key == "$not":
                inner = self.root(self._object(sub, where), where, depth + 1)
                preds.append(_negate(inner))
            elif isinstance(key, str) and key.startswith("$"):
                raise InvalidSubscription(where, self._unknown(key, top=True))
            elif key not in FIELDS:
                raise InvalidSubscription(where, f"unknown event field; one of {', '.join(FIELDS)}")
            else:
                test = self.value(sub, where, depth + 1)
                preds.append(_on_field(key, test))
        return _all(preds)

    def _object(self, value: object, where: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping) or not value:
            raise InvalidSubscription(where, "must be a non-empty object (a filter)")
        return value

    def _list(self, value: object, where: str) -> list[tuple[int, Any]]:
        if not isinstance(value, list) or not value:
            raise InvalidSubscription(where, "must be a non-empty list of filters")
        return list(enumerate(value))

    @staticmethod
    def _unknown(op: str, top: bool) -> str:
        if top:
            return "only $and, $or and $not apply to the whole event; name a field first"
        if op == "$regex":
            return "unknown operator: $regex is not supported (no linear-time engine)"
        return f"unknown operator; one of {' '.join(OPERATORS)}"

    def value(self, spec: Any, path: str, depth: int) -> Predicate:
        """A condition on one value: a literal (equality), or an object of paths/operators."""
        self._depth(path, depth)
        if not isinstance(spec, Mapping):
            return _eq(spec)
        if not spec:
            raise InvalidSubscription(path, "must not be empty")
        preds: list[Predicate] = []
        for key, sub in spec.items():
            where = f"{path}.{_show(key)}"
            self._count(where)
            if not isinstance(key, str):
                raise InvalidSubscription(where, "keys must be strings")
            if key.startswith("$"):
                preds.append(self.operator(key, sub, where, depth))
            else:
                test = self.value(sub, where, depth + 1)
                get = _child(key)
                preds.append(_on_child(get, test))
        return _all(preds)

    def operator(self, op: str, operand: Any, where: str, depth: int) -> Predicate:
        if op in ("$eq", "$neq"):
            test = _eq(operand)
            return test if op == "$eq" else (lambda v: not test(v))
        if op in ("$gt", "$gte", "$lt", "$lte"):
            if not (isinstance(operand, str) or _is_number(operand)):
                raise InvalidSubscription(where, "must be a number or a string")
            return _ordered(op, operand)
        if op in ("$in", "$nin"):
            if not isinstance(operand, list) or not 1 <= len(operand) <= MAX_IN_ITEMS:
                raise InvalidSubscription(where, f"must be a list of 1 to {MAX_IN_ITEMS} values")
            for i, item in enumerate(operand):
                if not _is_scalar(item):
                    raise InvalidSubscription(
                        f"{where}[{i}]", "must be a string, number, bool or null"
                    )
            test = _member(operand)
            return test if op == "$in" else (lambda v: not test(v))
        if op == "$exist":
            if not isinstance(operand, bool):
                raise InvalidSubscription(where, "must be true or false")
            return (lambda v: v is not MISSING) if operand else (lambda v: v is MISSING)
        if op in ("$startsWith", "$endsWith"):
            if not isinstance(operand, str):
                raise InvalidSubscription(where, "must be a string")
            if op == "$startsWith":
                return lambda v: type(v) is str and v.startswith(operand)
            return lambda v: type(v) is str and v.endswith(operand)
        if op in ("$and", "$or"):
            parts = [
                self.value(s, f"{where}[{i}]", depth + 1) for i, s in self._list(operand, where)
            ]
            return _all(parts) if op == "$and" else _any(parts)
        if op == "$not":
            inner = self.value(operand, where, depth + 1)
            return lambda v: not inner(v)
        raise InvalidSubscription(where, self._unknown(op, top=False))
