"""Delivery policy as pure functions: classify an attempt, compute the next retry.

Kept free of I/O so the rules of SPEC section 6 can be tested row by row.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from enum import StrEnum

from webhook_stream.http.client import HttpResult

__all__ = ["Outcome", "choose_retry_delay_topic", "classify", "retry_delay"]

#: Transport error classes that retrying cannot fix.
FATAL_ERRORS = frozenset({"invalid_url", "invalid_header", "forbidden_address", "insecure_url"})


class Outcome(StrEnum):
    SUCCESS = "success"
    RETRY = "retry"
    FATAL = "fatal"


def classify(result: HttpResult, extra_retry_codes: Collection[int] = ()) -> Outcome:
    """2xx success; 408, 429, 5xx, timeouts and transport errors retry; the rest is fatal.

    Redirects are never followed, so every 3xx is fatal like any other 4xx.
    """
    status = result.status
    if status is None:
        return Outcome.FATAL if result.error in FATAL_ERRORS else Outcome.RETRY
    if 200 <= status < 300:
        return Outcome.SUCCESS
    if status in (408, 429) or status >= 500 or status in extra_retry_codes:
        return Outcome.RETRY
    return Outcome.FATAL


def retry_delay(
    step: float,
    *,
    retry_after: float | None = None,
    retry_after_max: float = 3600.0,
    jitter: float = 0.1,
    rand: float | None = None,
) -> float:
    """Seconds to wait before the next attempt.

    The schedule step plus up to ``jitter`` x step of random spread (so a recovering
    receiver is not hit by a synchronised wave); a receiver's ``Retry-After`` wins when
    it asks for longer, capped at ``retry_after_max``.
    """
    spread = random.random() if rand is None else rand
    delay = step * (1.0 + jitter * spread)
    if retry_after is not None:
        delay = max(delay, min(retry_after, retry_after_max))
    return delay


def choose_retry_delay_topic(delay: float, topic_delays: Sequence[float]) -> float:
    """The retry topic (by its delay) to park a delivery due in ``delay`` seconds.

    The longest topic delay not above ``delay``, so a topic's natural order never makes a
    delivery later than due; per-endpoint schedules reuse the global topics this way.
    """
    ordered = sorted(topic_delays)
    fitting = [d for d in ordered if d <= delay]
    return fitting[-1] if fitting else ordered[0]
