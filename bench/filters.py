"""Rows 6e and 6f: routing cost per event with subscriptions carrying content filters.

In-process and standalone (no broker, no worker), like row 6d: the same 10,000
subscriptions are indexed twice, once without filters and once with one each, and the same
events routed through both; the ratio is the filters' cost (goal: within 1.2x).

Every subscription's filter is its own (no two compile to one shared function), as if
each endpoint's owner wrote theirs.

- 6e: every subscription has its own exact type (half) or ``prefix*`` pattern (half), so
  an event matches one subscription and one filter is tried: ``fan_out`` as the fan-out
  loop calls it (index, filter, delivery records built).
- 6f: 100 subscriptions share each type, so an event matches 100 and 100 filters are
  tried (about half hold): the selection alone (``index.match`` then the filters), since
  building fewer delivery records would flatter the filtered side.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from webhook_stream.core.records import Event, SourceRef
from webhook_stream.ingest.fanout import fan_out
from webhook_stream.subscriptions.filters import FilterSubject, compile_filter
from webhook_stream.subscriptions.index import SubscriptionIndex
from webhook_stream.subscriptions.model import Subscription, generate_secret

from .report import Row

#: Events routed per measurement, and rounds (the best round is reported).
EVENTS = 2000
ROUNDS = 15
TENANT = "bench-tenant"


def _filter(i: int) -> dict[str, Any]:
    """Four shapes of filter, each subscription's its own (thresholds and values vary with
    ``i``, so no two share a compiled function), about half the events passing each."""
    shape = i % 4
    if shape == 0:
        return {"data": {"amount": {"$gte": i % 1000}, "currency": "EUR"}}
    if shape == 1:
        countries = ["DE", "FR", "NL", f"X{i}"]
        return {"data": {"customer": {"country": {"$in": countries}}}}
    if shape == 2:
        return {
            "$or": [
                {"data": {"amount": {"$gt": 500 + i % 500}}},
                {"data": {"region": {"$startsWith": "eu-"}}},
            ]
        }
    return {
        "data": {"sku": {"$exist": True}, "customer": {"id": {"$neq": f"c{i}"}}},
        "$not": {"headers": {"x-test": {"$exist": True}}},
    }


def _data(n: int) -> str:
    return orjson.dumps(
        {
            "amount": (n * 37) % 1000,
            "currency": "EUR" if n % 2 else "USD",
            "region": "eu-west" if n % 3 else "us-east",
            "customer": {"id": f"c{n}", "country": ("DE", "US", "FR", "BR")[n % 4], "tier": "gold"},
            **({"sku": f"S-{n}"} if n % 2 else {}),
            "items": [{"sku": f"S-{n}", "qty": 1}, {"sku": "S-0", "qty": 2}],
        }
    ).decode()


def _event(n: int, event_type: str) -> Event:
    data = _data(n)
    return Event(
        id=f"evt_{n}",
        type=event_type,
        occurred_at="2026-12-06T07:00:00Z",
        data=data,
        source=SourceRef("events.bench", 0, n),
        tenant_id=TENANT,
        decoded=orjson.loads(data),  # as decoding leaves it
    )


def _indexes(subs: int, per_type: int) -> tuple[SubscriptionIndex, SubscriptionIndex, int]:
    secret = generate_secret()
    plain, filtered = [], []
    types = max(1, subs // per_type)
    for i in range(subs):
        t = i % types
        # Half exact types, half prefix patterns: both index paths (as in rows 6a/6b).
        pattern = f"bulk.t{t}" if t % 2 else f"bulk.p{t}.*"
        sub = Subscription(
            f"ep_f{i:06d}", "http://127.0.0.1:9/x", (pattern,), secret, tenant_id=TENANT
        )
        plain.append(sub)
        filtered.append(Subscription(**{**_fields(sub), "filter": compile_filter(_filter(i))}))
    return SubscriptionIndex(plain), SubscriptionIndex(filtered), types


def _fields(sub: Subscription) -> dict[str, Any]:
    return {name: getattr(sub, name) for name in Subscription.__slots__}


def _best(*runs: Callable[[], int]) -> list[tuple[float, int]]:
    """The best CPU time of each of ``runs``, interleaved round by round (a busy machine
    slows both sides alike), with what each returned."""
    best = [(float("inf"), 0)] * len(runs)
    for _ in range(ROUNDS):
        for i, run in enumerate(runs):
            t0 = time.process_time()  # CPU time: a busy machine's preemption left out
            count = run()
            best[i] = min(best[i], (time.process_time() - t0, count))
    return best


def _types(types: int) -> list[str]:
    step = max(1, types // EVENTS)
    names = [f"bulk.t{t}" if t % 2 else f"bulk.p{t}.created" for t in range(0, types, step)]
    return (names * (EVENTS // len(names) + 1))[:EVENTS]


def filter_rows(subs: int = 10_000) -> tuple[list[Row], dict[str, Any]]:
    """Rows 6e and 6f for ``subs`` subscriptions."""
    rows: list[Row] = []
    raw: dict[str, Any] = {"subs": subs, "events": EVENTS}

    # 6e: one match per event, the whole fan_out.
    plain, filtered, types = _indexes(subs, 1)
    events = [_event(n, t) for n, t in enumerate(_types(types))]
    t0 = time.process_time()  # first touch: each filter generates its function on first use
    for e in events:
        fan_out(e, filtered)
    first_us = (time.process_time() - t0) / len(events) * 1e6
    (plain_s, plain_n), (filt_s, filt_n) = _best(
        lambda: sum(len(fan_out(e, plain)) for e in events),
        lambda: sum(len(fan_out(e, filtered)) for e in events),
    )
    e_plain, e_filt = plain_s / len(events) * 1e6, filt_s / len(events) * 1e6
    raw["one_match"] = {
        "plain_us": e_plain,
        "filtered_us": e_filt,
        "first_touch_us": first_us,
        "delivered": [plain_n, filt_n],
    }
    rows.append(
        Row(
            "6e",
            f"fan-out with {subs:,} filtered subs, 1 match/event",
            f"{e_plain:.1f} -> {e_filt:.1f} us/event ({e_filt / e_plain:.2f}x)",
            "",
            f"in-process fan_out (index, filter, delivery records), {len(events):,} events, "
            f"one subscription each by type; {filt_n:,} of {plain_n:,} pass their filter; "
            f"first touch (filter's function generated) {first_us:.0f} us; goal 1.2x",
        )
    )

    # 6f: 100 matches per event, the selection only.
    plain, filtered, types = _indexes(subs, 100)
    events = [_event(n, t) for n, t in enumerate(_types(types))]

    def select_plain() -> int:
        return sum(len(plain.match(e.type, e.tenant_id)) for e in events)

    def select_filtered() -> int:
        kept = 0
        for e in events:
            subject = FilterSubject(e, ())
            kept += sum(
                1
                for s in filtered.match(e.type, e.tenant_id)
                if s.filter is None or s.filter.test(subject)
            )
        return kept

    (plain_s, plain_n), (filt_s, filt_n) = _best(select_plain, select_filtered)
    f_plain, f_filt = plain_s / len(events) * 1e6, filt_s / len(events) * 1e6
    raw["hundred_matches"] = {"plain_us": f_plain, "filtered_us": f_filt, "kept": [plain_n, filt_n]}
    rows.append(
        Row(
            "6f",
            f"routing with {subs:,} filtered subs, 100 match/event",
            f"{f_plain:.1f} -> {f_filt:.1f} us/event ({f_filt / f_plain:.2f}x)",
            "",
            f"in-process index.match + 100 filters per event ({len(events):,} events; "
            f"{filt_n / len(events):.0f} of 100 pass); {(f_filt - f_plain) / 100:.2f} us "
            "per filter tried",
        )
    )
    return rows, raw
