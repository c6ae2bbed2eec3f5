"""Keyset pagination of the list routes: ``?limit=&after=`` -> ``{"items", "next"}``.

Items are ordered by id; the cursor is opaque to clients (base64url of the last id of
the page), stable under inserts and deletes between pages, and ``next`` is null on the
last page.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from webhook_stream.api.errors import ApiError

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "encode_cursor", "page", "parse_page"]

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

T = TypeVar("T")


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).rstrip(b"=").decode("ascii")


def _decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise ApiError(
            "invalid", "is not a cursor from a previous page's 'next'", "after"
        ) from None
    if not text:
        raise ApiError("invalid", "is not a cursor from a previous page's 'next'", "after")
    return text


def parse_page(query: Mapping[str, str]) -> tuple[int, str | None]:
    """``limit`` (1-500, default 50) and the decoded ``after`` cursor; 400 naming the field."""
    raw = query.get("limit")
    limit = DEFAULT_LIMIT
    if raw is not None:
        try:
            limit = int(raw)
        except ValueError:
            raise ApiError("invalid", "must be an integer", "limit") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise ApiError("invalid", f"must be between 1 and {MAX_LIMIT}", "limit")
    after = query.get("after")
    return limit, (None if after is None else _decode_cursor(after))


def page(
    items: Iterable[T],
    key: Callable[[T], str],
    render: Callable[[T], Any],
    query: Mapping[str, str],
) -> dict[str, Any]:
    """One page of ``items`` (any order; sorted by ``key`` here) as ``{"items", "next"}``."""
    limit, after = parse_page(query)
    ordered = sorted((i for i in items if after is None or key(i) > after), key=key)
    chosen = ordered[: limit + 1]
    more = len(chosen) > limit
    chosen = chosen[:limit]
    return {
        "items": [render(i) for i in chosen],
        "next": encode_cursor(key(chosen[-1])) if more else None,
    }
