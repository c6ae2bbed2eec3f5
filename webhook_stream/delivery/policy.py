"""Delivery policy as pure functions: what an attempt's result means, and the next retry.

:func:`decide` is the dispatcher's one decision after an attempt (succeeded, retrying at
which step, or failed with which dead-letter reason, and whether it counts toward the
endpoint's health). Kept free of I/O so the rules of SPEC section 6 can be tested row by
row; the dispatcher only carries the decision out.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum

from webhook_stream.http.client import HttpResult
from webhook_stream.http.errors import TransportError

__all__ = [
    "Action",
    "Decision",
    "Outcome",
    "Schedule",
    "choose_retry_delay_topic",
    "classify",
    "decide",
    "retry_delay",
]


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
        return Outcome.RETRY if _error(result).retriable else Outcome.FATAL
    if 200 <= status < 300:
        return Outcome.SUCCESS
    if status in (408, 429) or status >= 500 or status in extra_retry_codes:
        return Outcome.RETRY
    return Outcome.FATAL


class Action(StrEnum):
    """What the dispatcher does after an attempt; the value is the attempt record's outcome."""

    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Schedule:
    """An endpoint's retries: the delay steps, the attempts allowed, extra retried codes."""

    steps: Sequence[float]
    max_attempts: int
    retry_codes: Collection[int] = ()

    @classmethod
    def of(
        cls, steps: Sequence[float], max_attempts: int | None, retry_codes: Collection[int] = ()
    ) -> Schedule:
        """``max_attempts`` None: one attempt more than the schedule has steps."""
        return cls(steps, max_attempts or len(steps) + 1, retry_codes)


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do after one attempt."""

    action: Action
    #: Retrying: the schedule's step (seconds) before the next attempt.
    step: float | None = None
    #: Failed: the dead-letter reason.
    reason: str | None = None
    #: The receiver's doing, so it counts toward its health (an egress proxy's is not).
    blames_receiver: bool = True


def decide(result: HttpResult, attempt: int, schedule: Schedule) -> Decision:
    """The decision after attempt number ``attempt`` (1 for the first) produced ``result``."""
    outcome = classify(result, schedule.retry_codes)
    blames = result.error is None or _error(result).blames_receiver
    if outcome is Outcome.SUCCESS:
        return Decision(Action.SUCCEEDED, blames_receiver=blames)
    if outcome is Outcome.RETRY:
        if attempt < schedule.max_attempts:
            # A max_attempts beyond the schedule repeats its last step.
            step = schedule.steps[min(attempt, len(schedule.steps)) - 1]
            return Decision(Action.RETRYING, step=step, blames_receiver=blames)
        return Decision(Action.FAILED, reason="exhausted", blames_receiver=blames)
    if result.status is not None:
        reason = "fatal_status"
    elif _error(result) is TransportError.FORBIDDEN_ADDRESS:
        reason = "forbidden_address"
    else:
        reason = "invalid_target"
    return Decision(Action.FAILED, reason=reason, blames_receiver=blames)


def _error(result: HttpResult) -> TransportError:
    # Both clients report a TransportError; a plain name (a test's) is looked up.
    return TransportError(result.error or TransportError.TRANSPORT)


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
