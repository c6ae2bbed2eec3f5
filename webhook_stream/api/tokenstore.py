"""Tenant-scoped API tokens: the compacted topic ``webhooks.tokens``, read whole by every worker.

A token is ``wst_`` + 32 random bytes (base64url); only its SHA-256 is stored, so neither
the topic nor a worker's memory holds a usable credential. Every worker tails the topic
with a group-less consumer from the beginning (the pattern of
:mod:`webhook_stream.subscriptions.registry`); a revocation is a tombstone and takes
effect on each worker as soon as its tail reads it (well under a second on a quiet broker).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

import orjson
from aiokafka import TopicPartition

from webhook_stream.core import kafka
from webhook_stream.core.records import iso_now
from webhook_stream.core.settings import Settings
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


class TokenStore:
    """Tails ``webhooks.tokens`` into memory; ``ready`` once caught up."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._by_id: dict[str, TenantToken] = {}
        self._by_digest: dict[str, str] = {}
        self.ready = asyncio.Event()
        self._positions: dict[int, int] = {}
        self._progress = asyncio.Condition()
        self._running = True

    def stop(self) -> None:
        self._running = False

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

    async def wait_applied(self, partition: int, offset: int, timeout: float) -> bool:
        """Wait until the record at ``partition``/``offset`` is applied (read your writes)."""

        def applied() -> bool:
            return self._positions.get(partition, 0) > offset

        async with self._progress:
            try:
                await asyncio.wait_for(self._progress.wait_for(applied), timeout)
            except TimeoutError:
                return False
        return True

    async def run(self) -> None:
        consumer = kafka.tail_consumer(self._settings)
        await consumer.start()
        try:
            await consumer.topics()
            parts = consumer.partitions_for_topic(TOKENS) or set()
            tps = [TopicPartition(TOKENS, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = {tp.partition: off for tp, off in (await consumer.end_offsets(tps)).items()}
            self._check_ready(end)
            while self._running:
                batch = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, records in batch.items():
                    for record in records:
                        self._apply(record.key, record.value, record.offset)
                    self._positions[tp.partition] = records[-1].offset + 1
                if batch:
                    async with self._progress:
                        self._progress.notify_all()
                if not self.ready.is_set():
                    self._check_ready(end)
        finally:
            await consumer.stop()

    def _check_ready(self, end: dict[int, int]) -> None:
        if all(self._positions.get(p, 0) >= off for p, off in end.items()):
            log.info("tenant tokens loaded: %d", len(self._by_id))
            self.ready.set()

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
