"""The console's rates: the last hour of attempts per minute, summed and summarised.

The store keeps, per endpoint and minute, the attempts that succeeded and failed
(:mod:`.store`); each worker answers for its partitions and :mod:`.routing` adds the
shares up here, so the console's overview never scans attempts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from webhook_stream.core.records import to_iso

__all__ = ["BUCKETS", "overview_body", "rate_summary"]

#: One-minute buckets shown: the last hour.
BUCKETS = 60


def rate_summary(series: list[tuple[int, int, int]]) -> dict[str, Any]:
    """Totals of a series; ``deliveries_per_s`` over the last full minute."""
    succeeded = sum(s for _, s, _ in series)
    failed = sum(f for _, _, f in series)
    last_full = series[-2] if len(series) >= 2 else (0, 0, 0)
    return {
        "succeeded_last_hour": succeeded,
        "failed_last_hour": failed,
        "deliveries_per_s": round(last_full[1] / 60.0, 3),
    }


def overview_body(shares: Iterable[dict[str, Any]], now_ms: int) -> dict[str, Any]:
    """The overview from every owner's share (``{"minutes", "dead_letters"}``)."""
    now = now_ms // 60_000
    counts = {m: [0, 0] for m in range(now - BUCKETS + 1, now + 1)}
    depth = 0
    for share in shares:
        depth += share["dead_letters"]
        for minute, succeeded, failed in share["minutes"]:
            if minute in counts:
                counts[minute][0] += succeeded
                counts[minute][1] += failed
    series = [(m, s, f) for m, (s, f) in counts.items()]
    return {
        **rate_summary(series),
        "dead_letters": depth,
        "minutes": [{"at": to_iso(m * 60), "succeeded": s, "failed": f} for m, s, f in series],
    }
