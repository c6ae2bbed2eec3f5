"""A fresh copy of a delivery this worker already attempted is skipped, not sent again.

A fan-out killed or stalled after handing an event's deliveries to Kafka and before
committing the event leaves its successor to fan it out again: the same delivery ids,
the same event, a second copy in each endpoint's partition after the first. The delivery
owner remembers the last :data:`RECENT` fresh deliveries it attempted (origin ``event``,
no attempt before) and skips a later fresh copy of one: the first copy's own outcome
(delivered, a retry, a dead letter) stands for both.

Retries, replays and test sends are never skipped: they are meant to go again. The key
is the delivery id (event id and endpoint) with the event's source record (topic,
partition, offset), as a 128-bit digest: another event that reuses an id is another
record, never taken for a copy. Best effort by design (receivers deduplicate on
``webhook-id`` in any case): a copy whose first was attempted by another worker, or more
than :data:`RECENT` fresh deliveries ago, is sent again.
"""

from __future__ import annotations

from collections import deque
from hashlib import blake2b

from prometheus_client import Counter

from webhook_stream.core.records import Delivery

__all__ = ["RECENT", "RecentDeliveries", "fresh_key"]

#: Fresh deliveries remembered per worker: about 160 bytes each, 8 MB at most. A fan-out's
#: successor writes its copies a session timeout and a join (~15 s) after a kill -9: this
#: covers them at up to ~3,000 deliveries/s per worker; beyond that, the older are sent again.
RECENT = 50_000


def fresh_key(delivery: Delivery) -> bytes | None:
    """The key of a fan-out's delivery never attempted; None for any other (not skipped)."""
    if delivery.origin != "event" or delivery.attempts:
        return None
    src = delivery.event.source
    text = f"{delivery.delivery_id}\x00{src.topic}\x00{src.partition}\x00{src.offset}"
    return blake2b(text.encode(), digest_size=16).digest()


class RecentDeliveries:
    """The keys of the last ``capacity`` fresh deliveries attempted, oldest forgotten first."""

    __slots__ = ("_keys", "_order", "_skipped")

    def __init__(self, skipped: Counter | None = None, capacity: int = RECENT) -> None:
        self._keys: set[bytes] = set()
        self._order: deque[bytes] = deque(maxlen=capacity)
        self._skipped = skipped

    def claim(self, delivery: Delivery) -> bool:
        """False for a fresh copy of a delivery claimed before (counted); True otherwise.

        Claimed before its attempt (a copy may come up in another lane slot meanwhile);
        the caller forgets it again when the attempt ends without an outcome (called off
        by a lapsed lease, cancelled by a drain): it is read and tried again then.
        """
        key = fresh_key(delivery)
        if key is None:
            return True
        if key in self._keys:
            if self._skipped is not None:
                self._skipped.inc()
            return False
        order = self._order
        if len(order) == order.maxlen:
            self._keys.discard(order[0])  # the deque drops it on the append below
        order.append(key)
        self._keys.add(key)
        return True

    def forget(self, delivery: Delivery) -> None:
        """No outcome after all (its place in the order is left to run out)."""
        key = fresh_key(delivery)
        if key is not None:
            self._keys.discard(key)

    def __len__(self) -> int:
        return len(self._keys)
