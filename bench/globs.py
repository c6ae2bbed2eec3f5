"""Row 6d: routing one event with tens of thousands of non-prefix glob patterns loaded.

In-process and standalone (no broker, no worker): the cost measured is
``SubscriptionIndex.match``, the one thing that grows with the number of globs. Before the
index compiled globs once, ``fnmatch``'s 32,768-entry cache thrashed past that many
patterns and one event took seconds.
"""

from __future__ import annotations

import time

from webhook_stream.subscriptions.index import SubscriptionIndex
from webhook_stream.subscriptions.model import Subscription, generate_secret

from .report import Row

#: Events routed per measurement (a bound on the loop, whatever the per-event cost).
EVENTS = 2000


def glob_row(globs: int, tenant: str = "bench-tenant") -> tuple[Row, dict[str, float]]:
    """Build an index of ``globs`` non-prefix patterns in one tenant and time ``match``."""
    secret = generate_secret()
    subs = []
    for i in range(0, globs, 2):  # two kinds: wildcard in the middle, wildcard first
        patterns = (f"svc{i}.*.created", f"*.thing{i}") if i + 1 < globs else (f"svc{i}.*.x",)
        subs.append(
            Subscription(f"ep_g{i}", "http://127.0.0.1:9/x", patterns, secret, tenant_id=tenant)
        )
    t0 = time.perf_counter()
    index = SubscriptionIndex(subs)
    build_s = time.perf_counter() - t0
    step = max(2, (globs // EVENTS) & ~1)
    types = [
        f"svc{i}.order.created" if n % 2 else f"user.thing{i}"
        for n, i in enumerate(range(0, globs - 1, step))
    ][:EVENTS]
    t0 = time.perf_counter()
    for event_type in types:  # first touch: each glob is compiled on its first candidate
        index.match(event_type, tenant)
    first_s = time.perf_counter() - t0
    matched = 0
    t0 = time.perf_counter()
    for event_type in types:
        matched += len(index.match(event_type, tenant))
    seconds = time.perf_counter() - t0
    miss_t0 = time.perf_counter()
    for n in range(len(types)):
        index.match(f"nomatch.{n}.event", tenant)
    miss_s = time.perf_counter() - miss_t0
    per_event_us = seconds / max(1, len(types)) * 1e6
    raw = {
        "globs": globs,
        "events": len(types),
        "per_event_us": per_event_us,
        "per_miss_us": miss_s / max(1, len(types)) * 1e6,
        "first_touch_us": first_s / max(1, len(types)) * 1e6,
        "build_s": build_s,
        "matched": matched,
    }
    row = Row(
        "6d",
        f"routing with {globs:,} non-prefix globs",
        f"{per_event_us:,.1f} us/event",
        "",
        f"in-process SubscriptionIndex.match, {len(types):,} events of one tenant "
        f"({matched:,} matches); no match {raw['per_miss_us']:.1f} us; first touch (glob "
        f"compiled) {raw['first_touch_us']:.0f} us; index built in {build_s:.1f}s",
    )
    return row, raw
