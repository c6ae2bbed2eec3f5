"""Endpoint health: decide when a failing endpoint is disabled.

Deliveries are partitioned by endpoint id, so one worker sees all of an endpoint's
attempts and can keep its health in memory. Rule (settings): disable after
``health_disable_after_dead_letters`` consecutive dead letters, or when every attempt
has failed for ``health_disable_after`` (3 days), or at once on 410 Gone. Any success,
and any change to the subscription (a PATCH re-enabling it), starts the count afresh.
The state is not persisted: a worker restart or a partition move restarts the clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from webhook_stream.core.settings import Settings

__all__ = ["EndpointHealth"]


@dataclass(slots=True)
class _State:
    version: str | None
    first_failure: float | None = None
    consecutive_failures: int = 0
    consecutive_dead_letters: int = 0


class EndpointHealth:
    """Consecutive-failure bookkeeping per endpoint; ``record`` says when to disable."""

    def __init__(self, settings: Settings) -> None:
        self._after = settings.health_disable_after
        self._dead_letters = settings.health_disable_after_dead_letters
        self._states: dict[str, _State] = {}

    def record(
        self,
        endpoint_id: str,
        version: str | None,
        *,
        succeeded: bool,
        status: int | None,
        dead_lettered: bool,
        now: float,
    ) -> str | None:
        """Account one attempt; return a reason to disable the endpoint, or None."""
        if succeeded:
            self._states.pop(endpoint_id, None)
            return None
        state = self._states.get(endpoint_id)
        if state is None or state.version != version:
            state = self._states[endpoint_id] = _State(version)
        state.first_failure = state.first_failure or now
        state.consecutive_failures += 1
        if dead_lettered:
            state.consecutive_dead_letters += 1
        if status == 410:
            return "gone"
        if self._dead_letters and state.consecutive_dead_letters >= self._dead_letters:
            return "consecutive_dead_letters"
        if self._after and now - state.first_failure >= self._after:
            return "failing_too_long"
        return None

    def snapshot(self, endpoint_id: str) -> tuple[int, float | None]:
        """(consecutive failures, first failure time) for the status record."""
        state = self._states.get(endpoint_id)
        return (0, None) if state is None else (state.consecutive_failures, state.first_failure)

    def forget(self, endpoint_id: str) -> None:
        self._states.pop(endpoint_id, None)
