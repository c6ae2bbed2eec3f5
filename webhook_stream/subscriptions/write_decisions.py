"""What a subscription write request comes to, decided without I/O (pure).

The write owner (:class:`~.writes.SubscriptionWriter`) gathers what the decision needs (the
current record, the request that produced it, the next version, the clock) and carries the
decision out: :class:`Answer` (nothing to write: a request decided before, a disable that
has taken effect already) or :class:`Write` (the record to write, None for a delete's
tombstone, and the answer's status). A refusal raises
:class:`~webhook_stream.core.errors.WriteRefused` or
:class:`~webhook_stream.core.errors.InvalidSubscription`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from webhook_stream.core.errors import WriteRefused
from webhook_stream.subscriptions.model import Subscription
from webhook_stream.subscriptions.receiver_auth import keep_masked, refuse_auth_left_behind
from webhook_stream.subscriptions.secrets import (
    check_headers_follow_url,
    refuse_masks,
    unmask_headers,
)
from webhook_stream.subscriptions.validation import parse_subscription
from webhook_stream.subscriptions.write_requests import WriteRequest

__all__ = ["Answer", "Known", "Write", "decide_write"]


@dataclass(frozen=True, slots=True)
class Known:
    """What the owner knows of the endpoint id when it decides, and its clock."""

    #: The current record (None: absent, or deleted).
    current: Subscription | None
    #: The write request behind the current record, if any.
    last_request: str | None
    #: The version the next write gets (monotonic across deletes).
    next_version: int
    #: Now, as ISO text (created_at, updated_at) and as Unix seconds (secret expiry).
    now: str
    now_s: float
    #: The incarnation a create gives the endpoint.
    incarnation: str
    allow_insecure: bool
    #: The grace of a rotated-out secret when the request names none.
    rotation_grace: float


@dataclass(frozen=True, slots=True)
class Answer:
    """Nothing to write: answer ``status`` with ``version``."""

    status: int
    version: int | None


@dataclass(frozen=True, slots=True)
class Write:
    """Write ``new`` (None: delete, a tombstone), then answer ``status``."""

    new: Subscription | None
    status: int


def decide_write(req: WriteRequest, body: dict[str, Any] | None, known: Known) -> Answer | Write:
    """The decision on ``req`` (its ``body`` opened); raises what refuses it."""
    key = req.endpoint_id
    current = known.current
    if known.last_request == req.request_id:
        # Decided before a rebalance, not committed: answer the same again.
        return Answer(
            201 if req.op == "create" else 200, None if current is None else current.version
        )
    if req.op == "create" and current is not None:
        raise WriteRefused(409, f"subscription {key!r} already exists", "id")
    if current is not None and req.tenant is not None and current.tenant_id != req.tenant:
        current = None  # another tenant's endpoint is as absent (404) to a tenant token
    version, now = known.next_version, known.now
    if req.op == "create":
        sub = _parse(body or {}, key, known.allow_insecure)
        refuse_masks(sub.headers)
        if req.tenant is not None and sub.tenant_id != req.tenant:
            raise WriteRefused(403, "a tenant token can only name its own tenant", "tenant_id")
        # A new incarnation: whatever an earlier endpoint of this id left in the
        # status stores (another tenant's, maybe) is not this one's history.
        created = replace(
            sub, version=version, created_at=now, updated_at=now, incarnation=known.incarnation
        )
        return Write(created, 201)
    if current is None:
        raise WriteRefused(404, f"no subscription {key!r}")
    _stale(current, req.if_version)
    if req.op == "patch":
        merged = _merge(current, body or {}, known.allow_insecure)
        return Write(replace(merged, version=version, updated_at=now), 200)
    if req.op == "rotate":
        grace = float((body or {}).get("grace_s", known.rotation_grace))
        # The API chose the new secret, so that even a slow answer can show it.
        rotated = current.rotate_secret(
            now=known.now_s,
            grace_s=grace,
            new_secret=(body or {}).get("secret"),
            new_signing_key=(body or {}).get("signing_key"),
        )
        return Write(replace(rotated, version=version, updated_at=now), 200)
    if req.op == "disable":
        # Compare-and-set on the version the failures were counted against (_stale above):
        # a user's change since then (a fixed URL, a re-enable) wins; nothing is undone.
        if current.disabled:
            return Answer(200, current.version)
        return Write(replace(current, disabled=True, version=version, updated_at=now), 200)
    if req.op == "delete":
        return Write(None, 200)
    raise WriteRefused(400, f"unknown write operation {req.op!r}")


def _stale(current: Subscription, if_version: int | None) -> None:
    if if_version is not None and current.version != if_version:
        raise WriteRefused(
            412,
            f"subscription {current.id!r} is at version {current.version}, not {if_version}",
            "If-Match",
        )


def _parse(data: dict[str, Any], key: str, allow_insecure: bool) -> Subscription:
    """Validated as the API validates (raises InvalidSubscription: a 400)."""
    return parse_subscription(data, allow_insecure=allow_insecure, endpoint_id=key)


def _merge(current: Subscription, changes: dict[str, Any], allow_insecure: bool) -> Subscription:
    """``changes`` (a PATCH body) merged into the current record."""
    changes = dict(changes)
    if "tenant_id" in changes and changes["tenant_id"] != current.tenant_id:
        # Moving an endpoint (with its secret) to another tenant would let it receive
        # that tenant's events: delete and create instead.
        raise WriteRefused(
            400, "cannot be changed; delete and create the endpoint instead", "tenant_id"
        )
    moved = check_headers_follow_url(current.url, dict(current.headers), changes)
    if "headers" in changes and not moved:  # a masked value sent back keeps the current one
        changes["headers"] = unmask_headers(changes["headers"], dict(current.headers))
    changes.pop("incarnation", None)  # set at creation only
    stored = current.to_dict(include_secrets=True)
    refuse_auth_left_behind(moved, stored, changes)
    changes = keep_masked(changes, stored, moved)  # auth/tls secrets sent back as ****
    merged = _parse({**stored, **changes}, current.id, allow_insecure)
    if "headers" in changes:
        refuse_masks(merged.headers)
    return merged
