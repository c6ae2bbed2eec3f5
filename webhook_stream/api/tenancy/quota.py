"""A tenant's share of the API's writes: a token bucket per tenant.

Every write a tenant token makes (create, change, delete, rotate, a test event) costs the
shared worker something: a record on a compacted topic the write owner decides, or a
delivery in the shared budgets. Without a bound, one tenant's script could keep the write
owner busy for everyone. The admin is not limited: it is the operator.

The bucket is per API process (each worker serves the API), so the documented rate is per
worker; the bound it gives is what matters, not its exactness across workers.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["WriteQuota"]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class WriteQuota:
    """``take(tenant, now)``: 0.0 when the write may go ahead (and is counted), else the
    seconds until it may. Remembers at most ``max_tenants`` buckets (the least recently
    used is forgotten, which only ever gives that tenant a full bucket back)."""

    def __init__(self, rate_per_s: float, burst: int, max_tenants: int = 10_000) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate = rate_per_s
        self.burst = float(burst)
        self.max_tenants = max_tenants
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, tenant: str, now: float) -> float:
        bucket = self._buckets.get(tenant)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[tenant] = bucket
            if len(self._buckets) > self.max_tenants:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(tenant)
            elapsed = max(0.0, now - bucket.at)
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
            bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)
