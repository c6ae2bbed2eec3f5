"""Endpoint health: decide when a failing endpoint is disabled, durably.

Deliveries are partitioned by endpoint id, so one worker at a time sees an endpoint's
attempts and keeps its streak in memory. Rule (settings): disable after
``health_disable_after_dead_letters`` consecutive dead letters, or when every attempt
has failed for ``health_disable_after`` (3 days), or at once on 410 Gone. Any success,
and any change to the subscription (its ``version`` moves), starts the count afresh.

The streak survives a restart and a partition move: every change of it (a failure, the
first success after failures, a disable) is written to the compacted
``webhooks.endpoint_health``, keyed by endpoint id; a success with no streak writes
nothing, so healthy traffic costs no record. Every worker tails that topic, and a worker
given partitions of ``webhooks.deliveries`` reads it to its end (:meth:`sync`) before it
counts on from where the previous owner stopped.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

import orjson
from aiokafka.structs import ConsumerRecord

from webhook_stream.core.records import to_iso
from webhook_stream.core.settings import Settings
from webhook_stream.core.table import CompactedTable
from webhook_stream.core.topics import ENDPOINT_HEALTH

__all__ = ["EndpointHealth", "HealthState"]

log = logging.getLogger(__name__)

_SYNC_TIMEOUT = 30.0


@dataclass(slots=True)
class HealthState:
    """The failure streak of one endpoint at one subscription version."""

    version: int
    first_failure: float | None = None
    consecutive_failures: int = 0
    consecutive_dead_letters: int = 0
    disabled_at: float | None = None
    disabled_reason: str | None = None

    def encode(self, endpoint_id: str) -> bytes:
        def iso(ts: float | None) -> str | None:
            return None if ts is None else to_iso(ts)

        return orjson.dumps(
            {
                "endpoint_id": endpoint_id,
                "version": self.version,
                "consecutive_failures": self.consecutive_failures,
                "consecutive_dead_letters": self.consecutive_dead_letters,
                "first_failure_at": iso(self.first_failure),
                "disabled_at": iso(self.disabled_at),
                "disabled_reason": self.disabled_reason,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> HealthState:
        d = orjson.loads(raw)

        def ts(value: str | None) -> float | None:
            return None if value is None else datetime.fromisoformat(value).timestamp()

        return cls(
            version=int(d["version"]),
            first_failure=ts(d.get("first_failure_at")),
            consecutive_failures=int(d.get("consecutive_failures", 0)),
            consecutive_dead_letters=int(d.get("consecutive_dead_letters", 0)),
            disabled_at=ts(d.get("disabled_at")),
            disabled_reason=d.get("disabled_reason"),
        )


#: What :meth:`EndpointHealth.record` asks to write: a state, a tombstone (None), or nothing.
NO_WRITE = b""


class EndpointHealth(CompactedTable):
    """Consecutive-failure bookkeeping per endpoint; ``record`` says when to disable.

    A :class:`~webhook_stream.core.table.CompactedTable` of ``webhooks.endpoint_health``:
    every worker tails it into the stored view.
    """

    topic = ENDPOINT_HEALTH

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._after = settings.health_disable_after
        self._dead_letters = settings.health_disable_after_dead_letters
        #: Streaks this worker is counting (the endpoints of its partitions).
        self._states: dict[str, HealthState] = {}
        #: The topic's view: what the last owner of each endpoint wrote.
        self._stored: dict[str, HealthState] = {}
        #: Open once the read-back after the latest assignment is done (attempts wait).
        self._synced = asyncio.Event()
        self._sync_task: asyncio.Task[bool] | None = None

    def record(
        self,
        endpoint_id: str,
        version: int,
        *,
        succeeded: bool,
        status: int | None,
        dead_lettered: bool,
        now: float,
    ) -> tuple[str | None, bytes | None]:
        """Account one attempt: ``(reason to disable or None, record to write)``; the
        record is :data:`NO_WRITE` when the state did not change, None for a tombstone."""
        state = self._states.get(endpoint_id)
        if state is None:
            stored = self._stored.get(endpoint_id)
            if stored is not None and stored.version == version:
                state = self._states[endpoint_id] = stored
        if succeeded:
            if state is None and endpoint_id not in self._stored:
                return None, NO_WRITE  # the hot path: healthy stays healthy, unwritten
            self._states.pop(endpoint_id, None)
            self._stored.pop(endpoint_id, None)
            return None, None
        if state is None or state.version != version:
            state = self._states[endpoint_id] = HealthState(version)
        state.first_failure = state.first_failure or now
        state.consecutive_failures += 1
        if dead_lettered:
            state.consecutive_dead_letters += 1
        reason: str | None = None
        if status == 410:
            reason = "gone"
        elif self._dead_letters and state.consecutive_dead_letters >= self._dead_letters:
            reason = "consecutive_dead_letters"
        elif self._after and now - state.first_failure >= self._after:
            reason = "failing_too_long"
        if reason is not None and state.disabled_at is None:
            state.disabled_at, state.disabled_reason = now, reason
        return reason, state.encode(endpoint_id)

    def snapshot(self, endpoint_id: str) -> HealthState | None:
        """The endpoint's streak: counted here, else as its last owner stored it."""
        return self._states.get(endpoint_id) or self._stored.get(endpoint_id)

    async def apply(self, record: ConsumerRecord) -> None:
        self._apply(record.key, record.value)

    def resync(self) -> None:
        """Partitions were assigned: read the topic to its end in the background."""
        if self._sync_task is not None:
            self._sync_task.cancel()
        self._synced.clear()
        self._sync_task = asyncio.ensure_future(self._sync_then_open())

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    async def _sync_then_open(self) -> bool:
        me = asyncio.current_task()
        try:
            return await self.sync()
        finally:
            if self._sync_task is me:  # a newer assignment's sync opens the gate itself
                self._synced.set()

    async def sync(self) -> bool:
        """Read the topic to its current end and drop the streaks counted so far, so the
        next attempt of each endpoint continues from what its last owner wrote."""
        end = await self.end_offsets(_SYNC_TIMEOUT)
        if end is None:
            if not self.stopped:  # at shutdown there is nothing to load for
                log.warning("endpoint health not loaded: streaks restart")
            return False
        if not await self.caught_up(end, _SYNC_TIMEOUT):
            log.warning("endpoint health behind after %.0fs: streaks restart", _SYNC_TIMEOUT)
            return False
        self._states.clear()
        log.info("endpoint health read to its end: %d failing endpoints", len(self._stored))
        return True

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        endpoint_id = key.decode("utf-8", "replace")
        if value is None:
            self._stored.pop(endpoint_id, None)
            return
        try:
            self._stored[endpoint_id] = HealthState.decode(value)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("endpoint health record for %r ignored: %s", endpoint_id, exc)
