"""Tenant-scoped API tokens: the compacted topic ``webhooks.tokens``, read whole by every worker.

A token is ``wst_`` + 32 random bytes (base64url); only its SHA-256 is stored, so neither
the topic nor a worker's memory holds a usable credential. Every worker tails the topic
from the beginning (:class:`~webhook_stream.core.table.CompactedTable`, as the
subscription table does); a revocation is a tombstone and takes
effect on each worker as soon as its tail reads it (well under a second on a quiet broker).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

import orjson
from aiokafka.structs import ConsumerRecord

from webhook_stream.core.records import iso_now
from webhook_stream.core.settings import Settings
from webhook_stream.core.table import CompactedTable
from webhook_stream.core.topics import TOKENS

__all__ = ["TOKEN_PREFIX", "TenantToken", "TokenStore", "digest", "new_token"]

log = logging.getLogger(__name__)

TOKEN_PREFIX = "wst_"  # noqa: S105 (a prefix, not a secret)


def new_token() -> str:
    """A fresh token: ``wst_`` + base64url of 32 random bytes."""
    raw = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")
    return TOKEN_PREFIX + raw


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _ts(iso: str | None) -> float | None:
    return None if iso is None else datetime.fromisoformat(iso).timestamp()


@dataclass(frozen=True, slots=True)
class TenantToken:
    """One token as stored: never the token itself."""

    id: str
    tenant_id: str
    sha256: str
    created_at: str
    expires_at: str | None = None
    description: str | None = None

    @classmethod
    def issue(
        cls, tenant_id: str, *, expires_at: str | None, description: str | None
    ) -> tuple[TenantToken, str]:
        """A new stored form and the token it stands for (returned to the caller once)."""
        token = new_token()
        stored = cls(
            id="tok_" + secrets.token_hex(8),
            tenant_id=tenant_id,
            sha256=digest(token),
            created_at=iso_now(),
            expires_at=expires_at,
            description=description,
        )
        return stored, token

    def expired(self, now: float) -> bool:
        at = _ts(self.expires_at)
        return at is not None and at <= now

    def stored_form(self) -> bytes:
        return orjson.dumps(
            {
                "id": self.id,
                "tenant_id": self.tenant_id,
                "sha256": self.sha256,
                "created_at": self.created_at,
                "expires_at": self.expires_at,
                "description": self.description,
            }
        )

    def public(self) -> dict[str, str | None]:
        """What the API shows: everything but the hash."""
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "description": self.description,
        }


class TokenStore(CompactedTable):
    """Tails ``webhooks.tokens`` into memory; ``ready`` once caught up."""

    topic = TOKENS

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._by_id: dict[str, TenantToken] = {}
        self._by_digest: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def authenticate(self, presented: str, now: float) -> TenantToken | None:
        """The live token ``presented`` stands for, or None (unknown, revoked or expired)."""
        token_id = self._by_digest.get(digest(presented))
        found = None if token_id is None else self._by_id.get(token_id)
        if found is None or found.expired(now):
            return None
        return found

    def get(self, token_id: str) -> TenantToken | None:
        return self._by_id.get(token_id)

    def of_tenant(self, tenant_id: str) -> list[TenantToken]:
        """The tenant's tokens (expired ones included, until revoked), by id."""
        return sorted((t for t in self._by_id.values() if t.tenant_id == tenant_id), key=_id)

    async def loaded(self) -> None:
        log.info("tenant tokens loaded: %d", len(self._by_id))

    async def apply(self, record: ConsumerRecord) -> None:
        self._apply(record.key, record.value, record.offset)

    def _apply(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        if key is None:
            log.warning("token record without key at offset %s ignored", offset)
            return
        token_id = key.decode("utf-8", "replace")
        old = self._by_id.pop(token_id, None)
        if old is not None:
            self._by_digest.pop(old.sha256, None)
        if value is None:
            return
        try:
            doc = orjson.loads(value)
            token = TenantToken(
                id=token_id,
                tenant_id=str(doc["tenant_id"]),
                sha256=str(doc["sha256"]),
                created_at=str(doc["created_at"]),
                expires_at=doc.get("expires_at"),
                description=doc.get("description"),
            )
            _ts(token.expires_at)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            # Fail closed: an unreadable record revokes rather than keeps a stale token.
            log.warning("token record %r at offset %s unreadable: revoked", token_id, offset)
            return
        self._by_id[token_id] = token
        self._by_digest[token.sha256] = token_id


def _id(token: TenantToken) -> str:
    return token.id
