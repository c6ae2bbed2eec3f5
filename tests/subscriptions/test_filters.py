"""Content filters, compiled and evaluated in-process (the broker tests: test_filter_routing)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook_stream.core.errors import InvalidSubscription
from webhook_stream.core.records import Event, SourceRef
from webhook_stream.subscriptions.filter_codegen import generate
from webhook_stream.subscriptions.filters import (
    MAX_FILTER_BYTES,
    MAX_FILTER_DEPTH,
    MAX_FILTER_NODES,
    MISSING,
    FilterSubject,
    _Compiler,
    _member,
    _same,
    compile_filter,
)
from webhook_stream.subscriptions.validation import parse_stored, parse_subscription

DATA = {
    "amount": 150,
    "price": 9.5,
    "currency": "EUR",
    "region": "eu-west",
    "paid": True,
    "note": None,
    "tags": ["vip", "new"],
    "items": [{"sku": "A-1"}, {"sku": "B-2"}],
    "customer": {"address": {"country": "DE", "zip": "10115"}},
}


def subject(data: Any = DATA, headers: list[tuple[str, bytes]] | None = None) -> FilterSubject:
    event = Event(
        id="evt_1",
        type="order.created",
        occurred_at="2026-03-01T10:00:00Z",
        data=orjson.dumps(data).decode(),
        source=SourceRef("events.shop", 2, 41),
        tenant_id="acme",
    )
    return FilterSubject(event, headers or [("X-Shop", b"eu-1"), ("x-shop", b"ignored")])


def matches(spec: dict[str, Any], subj: FilterSubject | None = None) -> bool:
    compiled = compile_filter(spec)
    assert compiled is not None
    return compiled.test(subj or subject())


# (filter, matches DATA) pairs: each operator both ways, and on an absent path.
CASES = [
    ({"data": {"currency": "EUR"}}, True),
    ({"data": {"currency": "USD"}}, False),
    ({"data": {"amount": {"$eq": 150}}}, True),
    ({"data": {"amount": {"$eq": 150.0}}}, True),
    ({"data": {"amount": {"$eq": "150"}}}, False),
    ({"data": {"paid": {"$eq": 1}}}, False),  # true is not 1
    ({"data": {"paid": True}}, True),
    ({"data": {"note": None}}, True),
    ({"data": {"absent": None}}, False),  # absent is not null
    ({"data": {"tags": {"$eq": ["vip", "new"]}}}, True),
    ({"data": {"customer": {"$eq": {"address": {"zip": "10115", "country": "DE"}}}}}, True),
    ({"data": {"currency": {"$neq": "USD"}}}, True),
    ({"data": {"currency": {"$neq": "EUR"}}}, False),
    ({"data": {"absent": {"$neq": "EUR"}}}, True),
    ({"data": {"amount": {"$gt": 100}}}, True),
    ({"data": {"amount": {"$gt": 150}}}, False),
    ({"data": {"amount": {"$gte": 150}}}, True),
    ({"data": {"amount": {"$gte": 151}}}, False),
    ({"data": {"price": {"$lt": 10}}}, True),
    ({"data": {"price": {"$lt": 9.5}}}, False),
    ({"data": {"price": {"$lte": 9.5}}}, True),
    ({"data": {"price": {"$lte": 9}}}, False),
    ({"data": {"currency": {"$gt": 100}}}, False),  # a string never compares to a number
    ({"data": {"absent": {"$lt": 100}}}, False),
    ({"occurred_at": {"$gte": "2026-03-01T00:00:00Z"}}, True),
    ({"occurred_at": {"$lt": "2026-03-01T00:00:00Z"}}, False),
    ({"data": {"currency": {"$in": ["EUR", "GBP"]}}}, True),
    ({"data": {"currency": {"$in": ["USD", "GBP"]}}}, False),
    ({"data": {"tags": {"$in": ["vip"]}}}, True),  # any element of an array
    ({"data": {"amount": {"$in": [150.0, "x"]}}}, True),
    ({"data": {"paid": {"$in": [1]}}}, False),
    ({"data": {"note": {"$in": [None]}}}, True),
    ({"data": {"absent": {"$in": [None]}}}, False),
    ({"data": {"currency": {"$nin": ["USD"]}}}, True),
    ({"data": {"currency": {"$nin": ["EUR"]}}}, False),
    ({"data": {"absent": {"$nin": ["EUR"]}}}, True),
    ({"data": {"note": {"$exist": True}}}, True),
    ({"data": {"absent": {"$exist": True}}}, False),
    ({"data": {"absent": {"$exist": False}}}, True),
    ({"data": {"amount": {"$exist": False}}}, False),
    ({"data": {"region": {"$startsWith": "eu-"}}}, True),
    ({"data": {"region": {"$startsWith": "us-"}}}, False),
    ({"data": {"region": {"$endsWith": "west"}}}, True),
    ({"data": {"amount": {"$endsWith": "50"}}}, False),
    ({"data": {"amount": {"$gt": 100, "$lt": 200}}}, True),
    ({"data": {"amount": {"$gt": 100, "$lt": 120}}}, False),
    ({"data": {"amount": {"$and": [{"$gt": 100}, {"$lt": 120}]}}}, False),
    ({"data": {"currency": {"$or": ["USD", "EUR"]}}}, True),
    ({"data": {"currency": {"$not": {"$in": ["USD"]}}}}, True),
    ({"data": {"absent": {"$not": {"$eq": 1}}}}, True),
    ({"$or": [{"data": {"currency": "USD"}}, {"data": {"amount": {"$gte": 100}}}]}, True),
    ({"$or": [{"data": {"currency": "USD"}}, {"data": {"amount": {"$gte": 200}}}]}, False),
    ({"$and": [{"type": "order.created"}, {"tenant_id": "acme"}]}, True),
    ({"$not": {"data": {"currency": "EUR"}}}, False),
    ({"$not": {"data": {"currency": "USD"}}}, True),
    # Nested paths: objects by key, arrays by index.
    ({"data": {"customer": {"address": {"country": "DE"}}}}, True),
    ({"data": {"customer": {"address": {"country": "FR"}}}}, False),
    ({"data": {"customer": {"address": {"city": {"$exist": False}}}}}, True),
    ({"data": {"currency": {"deeper": {"$exist": True}}}}, False),
    ({"data": {"items": {"1": {"sku": "B-2"}}}}, True),
    ({"data": {"items": {"5": {"sku": {"$exist": False}}}}}, True),
    # The envelope and the headers (lower-cased names; the first of a repeated one wins).
    ({"type": {"$startsWith": "order."}, "tenant_id": "acme"}, True),
    ({"source": {"topic": "events.shop", "partition": 2, "offset": {"$gte": 41}}}, True),
    ({"id": "evt_1"}, True),
    ({"headers": {"x-shop": "eu-1"}}, True),
    ({"headers": {"x-shop": "ignored"}}, False),
    ({"headers": {"x-other": {"$exist": True}}}, False),
]


@pytest.mark.parametrize(
    ("spec", "expected"), CASES, ids=[orjson.dumps(c[0]).decode() for c in CASES]
)
def test_operators(spec: dict[str, Any], expected: bool) -> None:
    assert matches(spec) is expected


def test_data_that_is_not_an_object() -> None:
    assert matches({"data": {"x": {"$exist": False}}}, subject([1, 2]))
    assert matches({"data": {"0": 1}}, subject([1, 2]))
    assert matches({"data": {"$eq": "text"}}, subject("text"))


def test_no_filter() -> None:
    assert compile_filter(None) is None
    assert compile_filter({}) is None
    assert compile_filter('{"data": {"a": 1}}') is not None  # the stored form: JSON text


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"data": {"a": {"$regex": "^x"}}}, "filter.data.a.$regex", "not supported"),
        ({"data": {"a": {"$like": "x"}}}, "filter.data.a.$like", "unknown operator"),
        ({"body": {"a": 1}}, "filter.body", "unknown event field"),
        ({"$eq": 1}, "filter.$eq", "name a field"),
        ({"data": {"a": {"$gt": [1]}}}, "filter.data.a.$gt", "number or a string"),
        ({"data": {"a": {"$gt": True}}}, "filter.data.a.$gt", "number or a string"),
        ({"data": {"a": {"$in": "x"}}}, "filter.data.a.$in", "list"),
        ({"data": {"a": {"$nin": []}}}, "filter.data.a.$nin", "list"),
        ({"data": {"a": {"$in": [[1]]}}}, "filter.data.a.$in[0]", "string, number"),
        ({"data": {"a": {"$exist": 1}}}, "filter.data.a.$exist", "true or false"),
        ({"data": {"a": {"$startsWith": 1}}}, "filter.data.a.$startsWith", "string"),
        ({"$or": []}, "filter.$or", "non-empty list"),
        ({"$or": [{"data": {"a": {"$bad": 1}}}]}, "filter.$or[0].data.a.$bad", "unknown"),
        ({"$or": ["x"]}, "filter.$or[0]", "object"),
        ({"data": {"a": {"$and": [{"$bad": 1}]}}}, "filter.data.a.$and[0].$bad", "unknown"),
        ({"$not": 1}, "filter.$not", "object"),
        ({"data": {"a": {}}}, "filter.data.a", "empty"),
    ],
)
def test_invalid_filters_name_the_path(spec: Any, field: str, words: str) -> None:
    with pytest.raises(InvalidSubscription) as caught:
        compile_filter(spec)
    assert caught.value.field == field
    assert words in caught.value.message


def test_limits() -> None:
    deep: dict[str, Any] = {"$exist": True}
    for _ in range(MAX_FILTER_DEPTH):
        deep = {"k": deep}
    with pytest.raises(InvalidSubscription, match="deeper"):
        compile_filter({"data": deep})
    many = {f"k{i}": i for i in range(MAX_FILTER_NODES)}
    with pytest.raises(InvalidSubscription, match="conditions"):
        compile_filter({"data": many})
    with pytest.raises(InvalidSubscription, match="bytes"):
        compile_filter({"data": {"a": "x" * MAX_FILTER_BYTES}})
    with pytest.raises(InvalidSubscription) as caught:
        compile_filter([1])
    assert caught.value.field == "filter"


def test_subscription_round_trip() -> None:
    spec = {"data": {"amount": {"$gt": 100}}, "$or": [{"tenant_id": "a"}, {"tenant_id": "b"}]}
    body = {"id": "ep_f", "url": "https://example.com/h", "event_types": ["order.*"]}
    sub = parse_subscription({**body, "filter": spec}, allow_insecure=False)
    assert sub.to_dict(include_secrets=False)["filter"] == spec
    stored = sub.to_dict(include_secrets=True)
    assert isinstance(stored["filter"], str)  # JSON text, as schemas/subscription.avsc says
    again = parse_stored(orjson.dumps(stored), b"ep_f")
    assert again == sub
    assert again.filter is not None and again.filter.spec == spec
    with pytest.raises(InvalidSubscription) as caught:
        parse_subscription(
            {**body, "filter": {"data": {"a": {"$regex": "x"}}}}, allow_insecure=False
        )
    assert caught.value.field == "filter.data.a.$regex"
    plain = parse_subscription(body, allow_insecure=False)
    assert plain.filter is None and plain.to_dict(include_secrets=False)["filter"] is None


# Property tests: any JSON value against filters built from the whole operator set.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-5, 5) | st.sampled_from("abc"),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("xyz"), inner, max_size=3)
    ),
    max_leaves=10,
)
scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from("abc")
conditions = st.recursive(
    scalars.map(lambda v: {"$eq": v})
    | scalars.map(lambda v: {"$neq": v})
    | st.tuples(
        st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), st.integers(-5, 5) | st.sampled_from("abc")
    ).map(lambda t: {t[0]: t[1]})
    | st.lists(scalars, min_size=1, max_size=3).map(lambda v: {"$in": v})
    | st.lists(scalars, min_size=1, max_size=3).map(lambda v: {"$nin": v})
    | st.booleans().map(lambda v: {"$exist": v})
    | st.sampled_from("abc").map(lambda v: {"$startsWith": v}),
    lambda inner: (
        inner.map(lambda c: {"$not": c})
        | st.lists(inner, min_size=1, max_size=3).map(lambda c: {"$or": c})
        | st.lists(inner, min_size=1, max_size=3).map(lambda c: {"$and": c})
        | st.tuples(st.sampled_from("xyz"), inner).map(lambda t: {t[0]: t[1]})
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(data=json_values, cond=conditions)
def test_logic_laws(data: Any, cond: dict[str, Any]) -> None:
    subj = subject({"v": data})
    holds = matches({"data": {"v": cond}}, subj)  # never raises, whatever the data
    assert matches({"$not": {"data": {"v": cond}}}, subj) is not holds
    assert matches({"data": {"v": {"$not": cond}}}, subj) is not holds
    assert matches({"$or": [{"data": {"v": cond}}, {"type": "nope"}]}, subj) is holds
    assert matches({"$and": [{"data": {"v": cond}}, {"type": "order.created"}]}, subj) is holds


@settings(max_examples=200, deadline=None)
@given(data=json_values, items=st.lists(scalars, min_size=1, max_size=4))
def test_in_is_an_or_of_equalities(data: Any, items: list[Any]) -> None:
    subj = subject({"v": data})
    in_ = matches({"data": {"v": {"$in": items}}}, subj)
    assert matches({"data": {"v": {"$nin": items}}}, subj) is not in_
    if not isinstance(data, list):
        assert in_ is matches({"data": {"v": {"$or": [{"$eq": i} for i in items]}}}, subj)


@settings(max_examples=200, deadline=None)
@given(data=json_values)
def test_equality_with_itself(data: Any) -> None:
    subj = subject({"v": data})
    assert matches({"data": {"v": {"$eq": data}}}, subj)
    assert not matches({"data": {"v": {"$neq": data}}}, subj)
    assert matches({"data": {"v": {"$exist": True}}}, subj)


@settings(max_examples=400, deadline=None)
@given(data=json_values, cond=conditions, other=conditions, key=st.sampled_from(["v", "0", "x"]))
def test_the_generated_function_decides_as_the_closures(
    data: Any, cond: dict[str, Any], other: dict[str, Any], key: str
) -> None:
    """The fast form (one generated function) against the reference (closures)."""
    spec = {
        "$or": [{"data": {key: cond}}, {"$not": {"data": {"v": other}}}],
        "type": {"$startsWith": "order."},
    }
    subj = subject({"v": data, "0": [data]} if key != "x" else data)
    reference = _Compiler().root(spec, "filter", 1)
    fast = generate(spec, MISSING, _same, _member)
    assert fast(subj) is reference(subj)
    for part in (cond, other):
        one = {"data": {"v": part}}
        assert generate(one, MISSING, _same, _member)(subj) is _Compiler().root(one, "filter", 1)(
            subj
        )


def test_same_filters_share_one_compiled_function() -> None:
    a = compile_filter({"data": {"a": 1, "b": {"$in": [1, 2]}}})
    b = compile_filter({"data": {"b": {"$in": [1, 2]}, "a": 1}})
    c = compile_filter({"data": {"a": 1.0, "b": {"$in": [1, 2]}}})
    assert a is not None and b is not None and c is not None
    assert a.test is b.test  # key order does not matter
    assert c.test is not a.test  # 1.0 is written differently: compiled on its own


def test_keys_and_operands_never_reach_the_generated_source() -> None:
    """Hostile keys and strings are constants, not code."""
    nasty = "') or __import__('os').system('true') or ('"
    spec = {"data": {nasty: {"$eq": nasty, "$startsWith": nasty}, "1": {nasty: nasty}}}
    test = generate(spec, MISSING, _same, _member)
    assert test(subject({nasty: nasty, "1": {nasty: nasty}})) is True
    assert test(subject({nasty: "x", "1": {nasty: nasty}})) is False
    assert nasty not in test.__code__.co_consts


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(scalars, min_size=1, max_size=5),
    array=st.lists(scalars | st.lists(scalars, max_size=2), min_size=17, max_size=60),
)
def test_in_over_a_large_array_reads_it_once_with_the_same_answer(
    items: list[Any], array: list[Any]
) -> None:
    """Arrays past a few elements are read once per event into typed sets."""
    test = _member(items)
    expected = any(test(x) for x in array if not isinstance(x, list))
    subj = subject({"a": array, "b": array})
    spec = {"data": {"a": {"$in": items}}}
    assert matches(spec, subj) is expected
    assert matches({"data": {"b": {"$nin": items}}}, subj) is not expected
    assert matches({"$not": spec}, subject({"a": array})) is not expected
