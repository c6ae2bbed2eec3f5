"""A validated filter as one Python function: the fast form of a compiled filter.

The closures of :mod:`.filters` are one small function per condition; with thousands of
distinct filters each event touches a different, cold set of them (row 6e: most of the
filter's cost was cache misses). Here a filter becomes one expression in one function, so
an evaluation touches one code object and one tuple of constants.

Safety: the generated source holds only fixed names, local variable names and integer
indices. Every key, string and operand of the filter is a constant reached as ``c[i]``;
nothing from the filter is ever pasted into the source. The input is a filter
:func:`~webhook_stream.subscriptions.filters.compile_filter` has already validated; the
semantics are those of its closures, which ``tests/subscriptions/test_filters.py`` checks
this against on random filters and events.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["generate"]

_NUM = (int, float)
_STR = (str,)
_ORDER = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


class _Source:
    def __init__(self, missing: Any, same: Callable[[Any, Any], bool], member: Any) -> None:
        self.consts: list[Any] = []
        self.names = 0
        self.missing = missing
        self.same = same
        self.member = member

    def const(self, value: Any) -> str:
        self.consts.append(value)
        return f"c[{len(self.consts) - 1}]"

    def var(self) -> str:
        self.names += 1
        return f"v{self.names}"

    def bind(self, expr: str, cond: Callable[[str], str]) -> str:
        """``cond`` of a new local holding ``expr``, evaluated once (``X`` never occurs)."""
        name = self.var()
        return f"({cond(name)} if ({name} := {expr}) is not X else False)"

    def root(self, spec: Mapping[str, Any]) -> str:
        parts = []
        for key, sub in spec.items():
            if key in ("$and", "$or"):
                joined = (" and " if key == "$and" else " or ").join(self.root(s) for s in sub)
                parts.append(f"({joined})")
            elif key == "$not":
                parts.append(f"(not {self.root(sub)})")
            else:
                parts.append(self.bind(f"f({self.const(key)})", self._value_of(sub)))
        return "(" + " and ".join(parts) + ")"

    def child(self, parent: str, key: str) -> str:
        k = self.const(key)
        by_key = f"{parent}.get({k}, M) if type({parent}) is dict"
        if key.isdigit() and key.isascii():
            index = int(key)
            return (
                f"({by_key} else ({parent}[{index}] if type({parent}) is list "
                f"and len({parent}) > {index} else M))"
            )
        return f"({by_key} else M)"

    def _value_of(self, spec: Any) -> Callable[[str], str]:
        return lambda v: self.value(spec, v)

    def value(self, spec: Any, v: str) -> str:
        if not isinstance(spec, Mapping):
            return self.eq(spec, v)
        parts = []
        for key, sub in spec.items():
            if key.startswith("$"):
                parts.append(self.operator(key, sub, v))
            else:
                parts.append(self.bind(self.child(v, key), self._value_of(sub)))
        return "(" + " and ".join(parts) + ")"

    def eq(self, operand: Any, v: str) -> str:
        if isinstance(operand, str):
            return f"({v} == {self.const(operand)})"
        if operand is None:
            return f"({v} is None)"
        if isinstance(operand, bool):
            return f"({v} is {operand!r})"
        if type(operand) in _NUM:
            return f"(type({v}) in NUM and {v} == {self.const(operand)})"
        return f"same({v}, {self.const(operand)})"

    def operator(self, op: str, operand: Any, v: str) -> str:
        if op == "$eq":
            return self.eq(operand, v)
        if op == "$neq":
            return f"(not {self.eq(operand, v)})"
        if op in _ORDER:
            types = "STR" if isinstance(operand, str) else "NUM"
            return f"(type({v}) in {types} and {v} {_ORDER[op]} {self.const(operand)})"
        if op in ("$in", "$nin"):
            test = f"{self.const(self.member(operand))}({v})"
            return test if op == "$in" else f"(not {test})"
        if op == "$exist":
            return f"({v} is not M)" if operand else f"({v} is M)"
        if op == "$startsWith":
            return f"(type({v}) is str and {v}.startswith({self.const(operand)}))"
        if op == "$endsWith":
            return f"(type({v}) is str and {v}.endswith({self.const(operand)}))"
        if op in ("$and", "$or"):
            joiner = " and " if op == "$and" else " or "
            return "(" + joiner.join(self.value(s, v) for s in operand) + ")"
        if op == "$not":
            return f"(not {self.value(operand, v)})"
        raise ValueError(op)  # validated before: cannot happen


def generate(
    spec: Mapping[str, Any],
    missing: Any,
    same: Callable[[Any, Any], bool],
    member: Callable[[list[Any]], Callable[[Any], bool]],
) -> Callable[[Any], bool]:
    """One function of a subject (``.field(name)``) for the validated ``spec``.

    ``missing`` is the absent-path sentinel, ``same`` JSON equality, ``member`` the
    ``$in`` set builder of :mod:`.filters`.
    """
    source = _Source(missing, same, member)
    body = source.root(spec)
    # Everything the body names is a default argument: local loads, no cold globals dict.
    names = ", ".join(
        f"{n}={n}"
        for n in ("c", "M", "X", "NUM", "STR", "same", "type", "len", "dict", "list", "str")
    )
    text = f"def test(s, {names}):\n    f = s.field\n    return {body}\n"
    namespace: dict[str, Any] = {
        "c": tuple(source.consts),
        "M": missing,
        "X": object(),
        "NUM": _NUM,
        "STR": _STR,
        "same": same,
        "__builtins__": {"type": type, "len": len, "dict": dict, "list": list, "str": str},
    }
    exec(compile(text, "<filter>", "exec"), namespace)  # noqa: S102 (no input in the source)
    return namespace["test"]
