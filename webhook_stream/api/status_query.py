"""Query parameters of the status routes, checked before anything is asked.

``GET /subscriptions/{id}/attempts?limit=&after=&status=&since=&until=&event_type=``:
``limit`` 1-500 (default 50), ``after`` the opaque ``next`` of the previous page,
``status`` ``succeeded`` or ``failed``, ``since``/``until`` ISO-8601 (``since`` inclusive,
``until`` exclusive, on ``attempted_at``), ``event_type`` exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from webhook_stream.core.errors import InvalidQuery
from webhook_stream.status.store import OUTCOMES_OF_STATUS, AttemptQuery, decode_cursor

__all__ = ["parse_attempt_query", "parse_endpoint_hint"]

LIMIT_DEFAULT = 50
LIMIT_MAX = 500
_KNOWN = {"limit", "after", "status", "since", "until", "event_type"}


def _time_ms(name: str, text: str) -> int:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidQuery(name, "must be an ISO-8601 time, e.g. 2026-11-23T10:00:00Z") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp() * 1000)


def parse_attempt_query(query: Mapping[str, str]) -> AttemptQuery:
    """The validated query; :class:`InvalidQuery` names the first bad parameter."""
    unknown = sorted(set(query) - _KNOWN)
    if unknown:
        raise InvalidQuery(unknown[0], f"unknown parameter; known: {', '.join(sorted(_KNOWN))}")
    try:
        limit = int(query.get("limit", LIMIT_DEFAULT))
    except ValueError:
        raise InvalidQuery("limit", "must be an integer") from None
    if not 1 <= limit <= LIMIT_MAX:
        raise InvalidQuery("limit", f"must be between 1 and {LIMIT_MAX}")
    after = None
    if query.get("after"):
        try:
            after = decode_cursor(query["after"])
        except ValueError as exc:
            raise InvalidQuery("after", str(exc)) from None
    status = query.get("status") or None
    if status is not None and status not in OUTCOMES_OF_STATUS:
        raise InvalidQuery("status", "must be 'succeeded' or 'failed'")
    since = _time_ms("since", query["since"]) if query.get("since") else None
    until = _time_ms("until", query["until"]) if query.get("until") else None
    if since is not None and until is not None and since >= until:
        raise InvalidQuery("until", "must be later than since")
    event_type = query.get("event_type") or None
    return AttemptQuery(
        limit=limit,
        after=after,
        status=status,
        since_ms=since,
        until_ms=until,
        event_type=event_type,
    )


def parse_endpoint_hint(query: Mapping[str, str]) -> str | None:
    """``GET /deliveries/{id}?endpoint_id=``: routes straight to the owner when given."""
    unknown = sorted(set(query) - {"endpoint_id"})
    if unknown:
        raise InvalidQuery(unknown[0], "unknown parameter; known: endpoint_id")
    return query.get("endpoint_id") or None
