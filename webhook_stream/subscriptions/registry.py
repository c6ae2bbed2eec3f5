"""The subscription table: every worker reads ``webhooks.subscriptions`` whole.

A :class:`~webhook_stream.core.table.CompactedTable` reads the compacted topic from the
beginning into an indexed in-memory :class:`SubscriptionIndex`, and keeps tailing it.
Faust GlobalTables lost entries and crashed after a worker was killed (notes:
faust-on-tansu section 2); this is exact on Tansu and on Kafka, because each worker
replays the topic itself.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

import orjson
from aiokafka.structs import ConsumerRecord

from webhook_stream.core.errors import InvalidSubscription
from webhook_stream.core.sealing import SecretBox
from webhook_stream.core.settings import Settings
from webhook_stream.core.table import CompactedTable
from webhook_stream.core.topics import SUBSCRIPTIONS
from webhook_stream.subscriptions.index import SubscriptionIndex
from webhook_stream.subscriptions.model import Subscription
from webhook_stream.subscriptions.secrets import seal_subscription_secrets
from webhook_stream.subscriptions.validation import parse_stored

__all__ = ["SubscriptionRegistry"]

log = logging.getLogger(__name__)

#: Records in one fetch that make a bulk load (see `gc.freeze` below).
_BULK = 1000

OnInvalid = Callable[[ConsumerRecord, str], Awaitable[None]]

#: Header naming the write request a record of ``webhooks.subscriptions`` answers.
H_REQUEST = "ws-request-id"


class SubscriptionRegistry(CompactedTable):
    """Tails ``webhooks.subscriptions`` into ``self.index``; ``ready`` once caught up."""

    topic = SUBSCRIPTIONS

    def __init__(self, settings: Settings, on_invalid: OnInvalid | None = None) -> None:
        super().__init__(settings)
        self._on_invalid = on_invalid
        self._box = SecretBox.from_setting(settings.secret_key)
        self.index = SubscriptionIndex()
        #: Refused records met while loading, reported only if still the latest when
        #: loaded: after a key rotation and ``reseal``, superseded records sealed with a
        #: removed key stay in the log until compaction, and are not errors.
        self._refused: dict[str, tuple[ConsumerRecord, InvalidSubscription]] = {}
        #: Per endpoint: the write request that produced its current record (idempotence
        #: of a request decided twice across a rebalance), and the version a delete ended.
        self._last_request: dict[str, str] = {}
        self._deleted_version: dict[str, int] = {}
        #: Called with an endpoint id after each record of it is applied (put or removed).
        self.listeners: list[Callable[[str], None]] = []

    def stored_form(self, sub: Subscription) -> bytes:
        """The record value for ``sub`` on ``webhooks.subscriptions`` (secrets sealed if a
        ``WEBHOOK_STREAM_SECRET_KEY`` is set)."""
        return orjson.dumps(seal_subscription_secrets(sub.to_dict(include_secrets=True), self._box))

    def get(self, endpoint_id: str) -> Subscription | None:
        return self.index.get(endpoint_id)

    def after_batch(self, records: int) -> None:
        if records >= _BULK:
            # A bulk load (start-up, mass import): the table is long-lived, so take it out
            # of the collector's full passes (52 ms each with 100,000 subscriptions,
            # measured) -- CPU flat in subscriptions.
            gc.freeze()

    def last_request(self, endpoint_id: str) -> str | None:
        """Id of the write request behind ``endpoint_id``'s latest record, if any."""
        return self._last_request.get(endpoint_id)

    def next_version(self, endpoint_id: str) -> int:
        """The version the next write of ``endpoint_id`` gets (monotonic across deletes)."""
        sub = self.index.get(endpoint_id)
        if sub is not None:
            return sub.version + 1
        return self._deleted_version.get(endpoint_id, 0) + 1

    async def loaded(self) -> None:
        refused, self._refused = self._refused, {}
        for endpoint_id, (record, exc) in refused.items():
            await self._report(endpoint_id, record, exc)
        log.info("subscriptions loaded: %d endpoints", len(self.index))

    async def apply(self, record: ConsumerRecord) -> None:
        await self._apply(record)
        if record.key is not None and self.listeners:
            endpoint_id = record.key.decode("utf-8", "replace")
            for listener in self.listeners:
                listener(endpoint_id)

    async def _apply(self, record: ConsumerRecord) -> None:
        if record.key is None:
            log.warning("subscription record without key at offset %s ignored", record.offset)
            return
        endpoint_id = record.key.decode("utf-8", "replace")
        self._refused.pop(endpoint_id, None)
        request = next((v for k, v in record.headers or () if k == H_REQUEST), None)
        if request is not None:
            self._last_request[endpoint_id] = request.decode("utf-8", "replace")
        else:
            self._last_request.pop(endpoint_id, None)
        if record.value is None:
            gone = self.index.get(endpoint_id)
            if gone is not None:
                self._deleted_version[endpoint_id] = gone.version
            self.index.remove(endpoint_id)
            return
        try:
            sub = parse_stored(record.value, endpoint_id, self._box)
            if not sub.version:
                # Produced directly, without a version: the offset is one every worker
                # agrees on, survives compaction and exceeds every earlier version.
                sub = replace(sub, version=record.offset + 1)
            self.index.put(sub)
            self._deleted_version.pop(endpoint_id, None)
        except InvalidSubscription as exc:
            # Fail closed: an invalid update removes the endpoint rather than keep a stale one.
            self.index.remove(endpoint_id)
            if self.ready.is_set():
                await self._report(endpoint_id, record, exc)
            else:
                self._refused[endpoint_id] = (record, exc)

    async def _report(
        self, endpoint_id: str, record: ConsumerRecord, exc: InvalidSubscription
    ) -> None:
        log.warning("subscription %r refused and removed: %s", endpoint_id, exc)
        if self._on_invalid is not None:
            await self._on_invalid(record, f"invalid_subscription: {exc}")
