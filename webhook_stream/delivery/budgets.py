"""Budgets one tenant cannot exhaust: what an endpoint and a tenant may hold of a worker.

Pure decisions, no I/O: :mod:`~webhook_stream.delivery.parking` asks :func:`admit` for each
record it takes, :mod:`~webhook_stream.delivery.dispatcher` holds :class:`TenantSlots`
around each HTTP attempt.

* An endpoint holds at most its *share* of the worker's pending deliveries; a rate-limited
  one only what its rate lets it start within :data:`RATE_HOLD_S` (a lane that sleeps
  holds nothing others could use: the rest is parked in ``webhooks.parked``).
* The endpoints of one tenant hold at most ``per_tenant`` together (at most half of the
  worker's budget), so one tenant never fills it; beyond it, that tenant's endpoints park.
* At most ``in_flight_per_tenant`` HTTP attempts of one tenant run at once (hanging
  receivers of one tenant cannot take the connection pool).

Endpoints without a tenant id are the operator's (only the admin token creates them):
bounded per endpoint, not per tenant.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

from webhook_stream.core.settings import Settings

__all__ = [
    "RATE_HOLD_S",
    "Admit",
    "Budgets",
    "TenantSlots",
    "admit",
    "endpoint_share",
    "host_key",
]

#: A rate-limited endpoint holds at most what its rate lets it start in this many seconds.
RATE_HOLD_S = 10.0


@dataclass(frozen=True, slots=True)
class Budgets:
    """The bounds in effect, derived once from the settings."""

    total: int
    per_endpoint: int
    per_tenant: int
    in_flight_per_tenant: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Budgets:
        total = settings.max_pending_deliveries
        tenant = max(1, min(settings.max_pending_per_tenant, total // 2))
        endpoint = max(1, min(settings.max_pending_per_endpoint, total // 4, tenant))
        return cls(total, endpoint, tenant, max(1, settings.max_in_flight_per_tenant))


class Admit(Enum):
    """Where a taken delivery goes: its lane, or parking (and which budget is full)."""

    LANE = "lane"
    ENDPOINT = "endpoint"
    TENANT = "tenant"


def endpoint_share(budgets: Budgets, lane_width: int, rate_limit_per_s: float | None) -> int:
    """Deliveries one endpoint may hold in its lane."""
    share = budgets.per_endpoint
    if rate_limit_per_s:
        share = min(share, max(lane_width, math.ceil(rate_limit_per_s * RATE_HOLD_S)))
    return max(1, share)


def admit(
    budgets: Budgets, share: int, endpoint_held: int, tenant: str | None, tenant_held: int
) -> Admit:
    """Lane or parking for one more delivery of an endpoint holding ``endpoint_held``."""
    if endpoint_held >= share:
        return Admit.ENDPOINT
    if tenant is not None and tenant_held >= budgets.per_tenant:
        return Admit.TENANT
    return Admit.LANE


class TenantSlots:
    """At most ``limit`` holders per tenant at once; waiters are served in arrival order."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._users: dict[str, int] = {}

    @property
    def limit(self) -> int:
        return self._limit

    def busy(self, tenant: str) -> int:
        """Holders and waiters of ``tenant`` (0 when unknown)."""
        return self._users.get(tenant, 0)

    async def acquire(self, tenant: str) -> None:
        sem = self._slots.get(tenant)
        if sem is None:
            sem = self._slots[tenant] = asyncio.Semaphore(self._limit)
        self._users[tenant] = self._users.get(tenant, 0) + 1
        try:
            await sem.acquire()
        except BaseException:
            self._left(tenant)
            raise

    def release(self, tenant: str) -> None:
        self._slots[tenant].release()
        self._left(tenant)

    def _left(self, tenant: str) -> None:
        users = self._users[tenant] - 1
        if users:
            self._users[tenant] = users
        else:  # nobody holds or waits: memory follows the tenants in use
            del self._users[tenant]
            del self._slots[tenant]

    async def take(self, key: str, changed: Callable[[], asyncio.Event]) -> bool:
        """One slot of ``key``, or False (none taken) once ``changed()`` is set first."""
        if self.busy(key) < self.limit:
            await self.acquire(key)  # free: does not wait
            return True
        taking = asyncio.ensure_future(self.acquire(key))
        waiting = asyncio.ensure_future(changed().wait())
        try:
            await asyncio.wait((taking, waiting), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            waiting.cancel()
            self._give_up(taking, key)
            raise
        waiting.cancel()
        if taking.done() and not taking.cancelled() and taking.exception() is None:
            return True
        self._give_up(taking, key)
        return False

    def _give_up(self, taking: asyncio.Future[None], key: str) -> None:
        """Cancel a slot request; should it have been granted anyway, the slot goes back."""

        def settled(task: asyncio.Future[None]) -> None:
            if not task.cancelled() and task.exception() is None:
                self.release(key)

        if taking.done():
            settled(taking)
        else:
            taking.cancel()
            taking.add_done_callback(settled)


def host_key(cache: dict[str, str], tenant: str, url: str) -> str:
    """``tenant`` and the host:port of ``url`` as one slot key (``cache``: URL -> host)."""
    host = cache.get(url)
    if host is None:
        if len(cache) >= 10_000:  # endpoints' URLs: keep it bounded
            cache.clear()
        parts = urlsplit(url)
        host = cache[url] = f"{parts.hostname}:{parts.port or parts.scheme}"
    return f"{tenant}\x00{host}"
