"""Unit tests of the done-set behind ``webhooks.delivery_progress``: tracker, encoding, writer."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from webhook_stream.core.metrics import Metrics
from webhook_stream.core.settings import Settings
from webhook_stream.core.topics import DELIVERY_PROGRESS
from webhook_stream.delivery.lanes import OffsetTracker, Tracked
from webhook_stream.delivery.progress import Progress, decode_ranges, encode_ranges

TP = TopicPartition("webhooks.deliveries", 0)
OTHER = TopicPartition("webhooks.parked", 0)


def attempted(tracker: OffsetTracker, entry: Tracked) -> None:
    entry.attempted = True
    tracker.done(entry)


def test_done_beyond_lists_only_attempted_records_past_the_prefix() -> None:
    tracker = OffsetTracker()
    entries = {o: tracker.track(TP, o) for o in range(10, 20)}
    assert tracker.done_beyond(TP) == []
    attempted(tracker, entries[12])
    attempted(tracker, entries[13])
    tracker.done(entries[15])  # parked only: not skippable
    attempted(tracker, entries[17])
    assert tracker.done_beyond(TP) == [12, 13, 17]
    assert tracker.head(TP) == 10
    assert tracker.take_grown() == {TP}
    assert tracker.take_grown() == set()  # unchanged since: nothing to write
    # The prefix moves over 10..13: those are committable, no longer "beyond".
    attempted(tracker, entries[10])
    attempted(tracker, entries[11])
    assert tracker.committable() == {TP: 14}
    assert tracker.done_beyond(TP) == [17]
    assert tracker.head(TP) == 14
    # Finishing the head is not growth beyond the prefix.
    assert tracker.take_grown() == set()
    assert tracker.done_beyond(OTHER) == []


def test_grown_is_given_back_and_forgotten_with_the_partition() -> None:
    tracker = OffsetTracker()
    first, second = tracker.track(TP, 0), tracker.track(TP, 1)
    other = [tracker.track(OTHER, 0), tracker.track(OTHER, 1)]
    attempted(tracker, second)
    attempted(tracker, other[1])
    grown = tracker.take_grown()
    assert grown == {TP, OTHER}
    tracker.regrow(grown)  # the progress record was not written
    assert tracker.take_grown() == {TP, OTHER}
    tracker.regrow(grown)
    tracker.forget([OTHER])
    assert tracker.take_grown() == {TP}
    assert tracker.done_beyond(OTHER) == []
    attempted(tracker, first)
    assert tracker.done_beyond(TP) == []
    assert tracker.committable() == {TP: 2}


def test_ranges_round_trip() -> None:
    offsets = [5, 3, 4, 9, 10, 11, 20, 4]
    ranges = encode_ranges(offsets)
    assert ranges == [[3, 6], [9, 12], [20, 21]]
    wire = orjson.loads(orjson.dumps(ranges))
    assert decode_ranges(wire) == {3, 4, 5, 9, 10, 11, 20}
    assert encode_ranges([]) == []
    assert decode_ranges([]) == set()


def test_decoding_keeps_offsets_at_or_past_the_committed_one() -> None:
    assert decode_ranges([[3, 6], [9, 12]], at_least=5) == {5, 9, 10, 11}
    assert decode_ranges([[3, 6]], at_least=6) == set()


def test_decoding_ignores_what_is_not_a_range_and_is_bounded() -> None:
    junk = [[1, 3], "x", [4], [5, "6"], None, [7.0, 9], [True, 2], [10, 11]]
    assert decode_ranges(junk) == {1, 2, 10}
    assert decode_ranges({"a": 1}) == set()
    assert decode_ranges(None) == set()
    assert len(decode_ranges([[0, 10**12]], limit=1000)) == 1000
    assert decode_ranges([[0, 5], [10, 15]], limit=7) == {0, 1, 2, 3, 4, 10, 11}


def test_encoding_within_a_budget_drops_the_highest_offsets() -> None:
    offsets = list(range(0, 10_000, 2))  # no two adjacent: one range each
    ranges = encode_ranges(offsets, budget=1000)
    assert ranges == encode_ranges(offsets)[: len(ranges)]
    assert 0 < len(ranges) < len(offsets)
    assert len(orjson.dumps(ranges)) <= 1000
    assert ranges[0] == [0, 1]


def test_a_copy_attempted_makes_its_source_skippable() -> None:
    tracker = OffsetTracker()
    head = tracker.track(TP, 0)
    sources = [tracker.track(TP, o) for o in (1, 2, 3)]
    for source in sources:
        tracker.done(source)  # parked: done, not skippable
    assert tracker.done_beyond(TP) == []
    tracker.take_grown()
    copy = tracker.track(OTHER, 7)
    copy.source = (TP, 2)  # the copy of offset 2, read back from parking
    attempted(tracker, copy)
    assert tracker.done_beyond(TP) == [2]
    assert tracker.take_grown() == {TP}  # the copy itself was the head of its partition
    # A copy whose source is committable already (or unknown) changes nothing.
    attempted(tracker, head)
    late = tracker.track(OTHER, 8)
    late.source = (TP, 1)
    attempted(tracker, late)
    gone = tracker.track(OTHER, 9)
    gone.source = (TP, 99)
    attempted(tracker, gone)
    assert tracker.done_beyond(TP) == []
    assert tracker.committable() == {TP: 4, OTHER: 10}


def test_a_source_marked_before_it_is_done_counts_once_done() -> None:
    tracker = OffsetTracker()
    tracker.track(TP, 0)
    source = tracker.track(TP, 1)
    copy = tracker.track(OTHER, 0)
    copy.source = (TP, 1)
    attempted(tracker, copy)  # the copy finished before its source's gate was acknowledged
    assert tracker.done_beyond(TP) == []
    tracker.take_grown()
    tracker.done(source)
    assert tracker.done_beyond(TP) == [1]
    assert tracker.take_grown() == {TP}


async def test_a_record_carries_what_the_last_owner_finished_and_is_not_reached_yet() -> None:
    sent: list[tuple[bytes, int]] = []

    class Producer:
        async def send(self, topic: str, value: bytes, *, key: bytes, partition: int) -> Any:
            sent.append((value, partition))
            done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            done.set_result(SimpleNamespace(offset=41))
            return done

    tracker = OffsetTracker()
    progress = Progress(Settings(), Producer(), tracker, Metrics())  # type: ignore[arg-type]
    progress.skips[TP] = {30, 31, 40}  # listed by the last owner, not taken yet
    entries = [tracker.track(TP, o) for o in range(20, 25)]
    attempted(tracker, entries[2])
    marks = TopicPartition(DELIVERY_PROGRESS, 0)
    offsets = await progress.write(tracker.take_grown(), {marks})
    assert offsets == {marks: OffsetAndMetadata(42, "")}
    ((value, partition),) = sent
    assert partition == 0
    assert orjson.loads(value) == {
        "deliveries": {"committed": 20, "done": [[22, 23], [30, 32], [40, 41]]}
    }
    # Not ours (no partition of the progress topic assigned): nothing written.
    attempted(tracker, entries[3])
    assert await progress.write(tracker.take_grown(), set()) == {}
    assert len(sent) == 1
