"""A repeated fan-out's copy of a delivery already attempted is recognised; nothing else is."""

from __future__ import annotations

from dataclasses import replace

from prometheus_client import CollectorRegistry, Counter

from webhook_stream.core.records import Delivery, Event, SourceRef
from webhook_stream.delivery.duplicates import RecentDeliveries, fresh_key


def delivery(offset: int = 7, **changes: object) -> Delivery:
    source = SourceRef("events.x", 0, offset)
    event = Event("evt_1", "order.created", "2026-01-01T00:00:00Z", "{}", source)
    made = Delivery("msg_1", "ep_1", "acme", event, "2026-01-01T00:00:00Z")
    return replace(made, **changes)  # type: ignore[arg-type]


def test_a_fresh_copy_of_a_claimed_delivery_is_refused_and_counted() -> None:
    skipped = Counter("skipped", "", registry=CollectorRegistry())
    recent = RecentDeliveries(skipped)
    assert recent.claim(delivery())
    # The same source record fanned out again: another record, another created_at.
    assert not recent.claim(delivery(created_at="2026-01-01T00:00:09Z"))
    assert not recent.claim(delivery())
    assert skipped._value.get() == 2


def test_retries_replays_and_test_sends_are_never_keyed_or_refused() -> None:
    recent = RecentDeliveries()
    recent.claim(delivery())
    for changes in ({"attempts": 1}, {"origin": "replay"}, {"origin": "retry"}, {"origin": "test"}):
        assert fresh_key(delivery(**changes)) is None, changes
        assert recent.claim(delivery(**changes)), changes
        assert recent.claim(delivery(**changes)), changes  # and again
    assert len(recent) == 1


def test_another_event_reusing_the_id_or_another_endpoint_is_not_a_copy() -> None:
    recent = RecentDeliveries()
    assert recent.claim(delivery())
    assert recent.claim(delivery(offset=8))  # the same id, another record
    assert recent.claim(delivery(delivery_id="msg_2"))
    moved = replace(delivery().event, source=SourceRef("events.y", 0, 7))
    assert recent.claim(delivery(event=moved))


def test_the_oldest_are_forgotten_at_capacity() -> None:
    recent = RecentDeliveries(capacity=3)
    for n in range(5):
        assert recent.claim(delivery(offset=n))
        assert not recent.claim(delivery(offset=n))  # twice: one place still
    assert len(recent) == 3
    # Newest first: a copy refused changes nothing, a claim would evict the oldest.
    claimed = [recent.claim(delivery(offset=n)) for n in (4, 3, 2, 1, 0)]
    assert claimed == [False, False, False, True, True]


def test_a_delivery_forgotten_is_claimed_again() -> None:
    recent = RecentDeliveries()
    assert recent.claim(delivery())
    recent.forget(delivery())  # its attempt was called off before the request left
    assert recent.claim(delivery())
