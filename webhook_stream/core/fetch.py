"""Reading a topic past batches that cannot be decoded: :func:`getmany`; and the one way
to read a topic to its end (:func:`open_topic` or :func:`partitions_of`, then
:func:`read_to_end`) that every whole-topic reader uses.

aiokafka decodes a partition's batches while ``getmany`` hands out its records. A batch it
cannot decode (a codec it lacks or does not know, a corrupt payload, a bad CRC) raises out
of ``getmany`` -- every time, since the partition's position stays before it -- so the
consumer of a topic any producer can write would stop for good on one batch. Worse, the
records other partitions gave in that same call are lost: aiokafka has already moved
their positions past them.

:func:`getmany` wraps the call. When it raises, every partition is put back where it was
before the call, the assigned partitions are fetched once more, directly, and decoded here
with aiokafka's own decoder; a partition whose data fails to decode gets back the records
in front of the bad batch, then an :class:`Undecodable` for the offsets skipped (the rest
of that batch), and its position moves past them. Nothing found: the error was not about
data (the broker, authorization, a bug) and is raised as before.

aiokafka's fetcher offers no hook for this, so the code below reads a few of its private
attributes (the assignment's positions, the client, the isolation level). aiokafka is
pinned; ``tests/core/test_fetch.py`` fails if they move.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.consumer.fetcher import PartitionRecords
from aiokafka.errors import ConsumerStoppedError, IllegalStateError, KafkaError
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import ConsumerRecord

from webhook_stream.core import fetch_waits
from webhook_stream.core.produce import record_size
from webhook_stream.core.records import RejectedRecord, SourceRef
from webhook_stream.core.topics import REJECTED

__all__ = [
    "UNDECODABLE",
    "Undecodable",
    "decode_partition",
    "getmany",
    "open_topic",
    "partitions_of",
    "read_to_end",
    "reject_undecodable",
    "undecodable_record",
]

log = logging.getLogger(__name__)

#: The rejection reason of skipped offsets (SPEC section 10).
UNDECODABLE = "undecodable"

#: Errors of the consumer itself, never about a batch: raised as they are.
_NOT_DATA = (ConsumerStoppedError, IllegalStateError)
#: Kept free below the record limit for the JSON around the raw batch.
_SLACK = 1024


@dataclass(frozen=True, slots=True)
class Undecodable:
    """Offsets ``first_offset..offset`` of one partition that could not be decoded.

    It stands in a batch's list where those records would be, and like a record its
    ``offset + 1`` is where reading goes on (the offset to commit past it).
    """

    topic: str
    partition: int
    first_offset: int
    #: The last offset skipped.
    offset: int
    #: What decoding raised (type and message).
    error: str
    #: The batch as the broker stores it; empty when its bounds could not be read.
    raw: bytes = b""


async def getmany(
    consumer: AIOKafkaConsumer,
    *partitions: TopicPartition,
    timeout_ms: int = 0,
    max_records: int | None = None,
    idle_ms: int = 0,
) -> dict[TopicPartition, list[Any]]:
    """``consumer.getmany(...)``, where an undecodable batch becomes an :class:`Undecodable`.

    The lists hold :class:`ConsumerRecord` objects and, last in a partition's list, at most
    one :class:`Undecodable`. Callers handle it as a record they refuse (reject it, count
    it) and commit past it like any record. With ``idle_ms`` above ``timeout_ms``, a quiet
    consumer waits up to ``idle_ms`` instead (records are returned as soon as they are
    fetched; :func:`~webhook_stream.core.fetch_waits.wake` ends the wait).
    """
    if idle_ms > timeout_ms and fetch_waits.quiet(consumer):
        got = await _getmany(consumer, partitions, 0, max_records)
        if got:
            return got
        await fetch_waits.until_records(consumer, idle_ms / 1000)
        timeout_ms = 0
    return await _getmany(consumer, partitions, timeout_ms, max_records)


async def _getmany(
    consumer: AIOKafkaConsumer,
    partitions: tuple[TopicPartition, ...],
    timeout_ms: int,
    max_records: int | None,
) -> dict[TopicPartition, list[Any]]:
    before = await _settled_positions(consumer, timeout_ms)
    try:
        return await consumer.getmany(*partitions, timeout_ms=timeout_ms, max_records=max_records)
    except _NOT_DATA:
        raise
    except Exception:
        # Records aiokafka drained from other partitions in this call are gone: read again.
        # (A partition assigned during the call has no position from before it; that
        # narrow case is not covered.)
        after, _ = _positions(consumer)
        _seek_to(consumer, before)
        wanted = [tp for tp in _positions(consumer)[0] if not partitions or tp in partitions]
        found = await _probe(consumer, wanted)
        if not found:
            # Not about data (aiokafka loses nothing then, and may have moved on: keep that).
            _seek_to(consumer, after)
            raise
        # aiokafka raised before it had max_records of a partition: each list found is
        # no longer than that (their sum can be, when several partitions fail at once).
        for tp, records in found.items():
            skipped = records[-1]
            log.warning(
                "skipping undecodable records %s[%d]@%d..%d: %s",
                tp.topic,
                tp.partition,
                skipped.first_offset,
                skipped.offset,
                skipped.error,
            )
            consumer.seek(tp, skipped.offset + 1)
        return found


def decode_partition(
    tp: TopicPartition,
    raw: bytes,
    fetch_offset: int,
    aborted: list[Any] | None = None,
    isolation_level: int = 0,
    end: int | None = None,
) -> tuple[list[ConsumerRecord], Undecodable | None]:
    """Decode fetched bytes of ``tp`` as aiokafka does: its records up to the first failure.

    Returns the records and, when decoding failed, the offsets skipped: from the first
    offset not returned to the last offset of the batch it failed in (just that offset when
    the batch's header is unreadable). A header's claim never reaches past the next batch
    or ``end`` (the partition's high watermark).
    """
    records = PartitionRecords(
        tp, MemoryRecords(raw), aborted, fetch_offset, None, None, True, isolation_level
    )
    got: list[ConsumerRecord] = []
    try:
        got.extend(records)
    except Exception as exc:  # noqa: BLE001 - whatever decoding raises is about the data
        first = records.next_fetch_offset
        last, batch = _batch_around(raw, first, end)
        error = str(exc)
        if not error.startswith(type(exc).__name__):
            error = f"{type(exc).__name__}: {error}"
        return got, Undecodable(tp.topic, tp.partition, first, last, error[:500], batch)
    return got, None


async def reject_undecodable(
    producer: AIOKafkaProducer, skipped: Undecodable, limit: int
) -> asyncio.Future[Any]:
    """Queue the ``webhooks.rejected`` record of ``skipped``; returns the send's future."""
    return await producer.send(REJECTED, undecodable_record(skipped, limit))


def undecodable_record(skipped: Undecodable, limit: int) -> bytes:
    """The ``webhooks.rejected`` value for ``skipped``, at most ``limit`` bytes as a record.

    ``value_b64`` is the raw batch (a prefix, ``truncated``, when it does not fit);
    ``source.offset`` is the first offset skipped, ``last_offset`` the last.
    """
    rejected = RejectedRecord(
        reason=f"{UNDECODABLE}: {skipped.error}"[:1024],
        source=SourceRef(skipped.topic, skipped.partition, skipped.first_offset),
        key=None,
        value=skipped.raw or None,
        headers=[],
        value_bytes=len(skipped.raw) if skipped.raw else None,
        last_offset=skipped.offset,
    )
    encoded = rejected.encode()
    if record_size(None, encoded) <= limit:
        return encoded
    rejected.value, rejected.truncated = b"", True
    room = limit - record_size(None, rejected.encode()) - _SLACK
    rejected.value = skipped.raw[: max(0, room) * 3 // 4]  # base64 grows it by a third
    return rejected.encode()


# ----------------------------------------------------------------------------- internals


def _assignment(consumer: AIOKafkaConsumer) -> Any:
    subscription = consumer._subscription.subscription
    return None if subscription is None else subscription.assignment


async def _settled_positions(
    consumer: AIOKafkaConsumer, timeout_ms: int
) -> dict[TopicPartition, int]:
    """The positions of the assigned partitions, once those being looked up are known.

    Just assigned, a partition's position is looked up (committed offset, reset) by the
    fetcher; waited for here, so that a call which raises finds every partition's start.
    """
    positions, pending = _positions(consumer)
    if pending:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(consumer.position(tp) for tp in pending), return_exceptions=True),
                timeout=max(timeout_ms, 100) / 1000,
            )
        positions, _ = _positions(consumer)
    return positions


def _positions(
    consumer: AIOKafkaConsumer,
) -> tuple[dict[TopicPartition, int], list[TopicPartition]]:
    """Positions of the unpaused assigned partitions, and those without one yet.

    On every call of the hot paths: one pass over aiokafka's partition states.
    """
    positions: dict[TopicPartition, int] = {}
    pending: list[TopicPartition] = []
    assignment = _assignment(consumer)
    if assignment is not None:
        for tp, state in assignment._tp_state.items():
            if state._paused:
                continue
            if state._position is None:
                pending.append(tp)
            else:
                positions[tp] = state._position
    return positions, pending


def _seek_to(consumer: AIOKafkaConsumer, positions: dict[TopicPartition, int]) -> None:
    for tp, position in positions.items():
        if _position(consumer, tp) not in (None, position):
            consumer.seek(tp, position)


def _position(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    assignment = _assignment(consumer)
    state = None if assignment is None else assignment.state_value(tp)
    return state.position if state is not None and state.has_valid_position else None


async def _probe(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition]
) -> dict[TopicPartition, list[Any]]:
    """Fetch ``tps`` at their positions and decode them here; the partitions that fail."""
    client = consumer._client
    fetcher = consumer._fetcher
    by_node: dict[int, list[tuple[TopicPartition, int]]] = defaultdict(list)
    for tp in tps:
        node = client.cluster.leader_for_partition(tp)
        position = _position(consumer, tp)
        if node is not None and node >= 0 and position is not None:
            by_node[node].append((tp, position))
    found: dict[TopicPartition, list[Any]] = {}
    for node, wanted in by_node.items():
        offsets = dict(wanted)
        topics: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
        for tp, position in wanted:
            topics[tp.topic].append((tp.partition, position, fetcher._max_partition_fetch_bytes))
        # A wait of 0 gets no data from Tansu; with data there, Kafka answers at once.
        wait = max(fetcher._fetch_max_wait_ms, 100)
        request = FetchRequest(
            wait, 1, fetcher._fetch_max_bytes, fetcher._isolation_level, list(topics.items())
        )
        try:
            response = await client.send(node, request)
        except KafkaError as exc:
            log.warning("could not fetch again from node %s to find a bad batch: %r", node, exc)
            continue
        for topic, parts in response.topics:
            for partition, error_code, highwater, *data in parts:
                tp = TopicPartition(topic, partition)
                if error_code != 0:
                    continue  # the consumer's own fetch reports that
                aborted = None
                if response.API_VERSION >= 11:
                    aborted = data[2]
                elif response.API_VERSION >= 4:
                    aborted = data[-2]
                records, skipped = decode_partition(
                    tp, data[-1], offsets[tp], aborted, fetcher._isolation_level, highwater
                )
                if skipped is not None:
                    found[tp] = [*records, skipped]
    return found


#: Header of a record batch (v2) or message (v0/v1): base offset, length; magic at 16.
_HEAD = struct.Struct(">qi")
_LAST_OFFSET_DELTA = struct.Struct(">i")


def _batch_around(raw: bytes, offset: int, end: int | None = None) -> tuple[int, bytes]:
    """The last offset and bytes of the first batch in ``raw`` that reaches ``offset``.

    Read from the headers alone, so it works where decoding does not. A header that
    cannot be read gives ``(offset, b"")``: one offset at a time, reading still moves on.
    A corrupt header's last offset is believed only up to the next batch's base offset
    and ``end``: a skip never passes records that can be read, nor the end of the log.
    """
    at = 0
    try:
        while at + _HEAD.size + 5 <= len(raw):
            base, length = _HEAD.unpack_from(raw, at)
            stop = at + _HEAD.size + length
            magic = raw[at + 16]
            if length <= 0 or stop > len(raw) or magic > 2:
                break
            # v2: lastOffsetDelta after leaderEpoch(4) magic(1) crc(4) attributes(2).
            # v0/v1: the (wrapper) message's offset is its last.
            last = base + _LAST_OFFSET_DELTA.unpack_from(raw, at + 23)[0] if magic == 2 else base
            if last >= offset:
                if stop + _HEAD.size <= len(raw):
                    last = min(last, _HEAD.unpack_from(raw, stop)[0] - 1)
                if end is not None:
                    last = min(last, end - 1)
                return max(last, offset), raw[at:stop]
            at = stop
    except (struct.error, IndexError):
        pass
    return offset, b""


# -- reading a topic -------------------------------------------------------------------


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """Every partition of ``topic``, in order, from fresh metadata ([] if it does not exist)."""
    await consumer.topics()  # refresh metadata
    parts = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(parts)]


async def open_topic(
    consumer: AIOKafkaConsumer, topic: str, *, at: Literal["beginning", "end"] = "beginning"
) -> list[TopicPartition]:
    """Assign every partition of ``topic`` to a group-less consumer, at its beginning or end."""
    tps = await partitions_of(consumer, topic)
    consumer.assign(tps)
    if at == "beginning":
        await consumer.seek_to_beginning(*tps)
    else:
        await consumer.seek_to_end(*tps)
    return tps


async def read_to_end(
    consumer: AIOKafkaConsumer,
    end: dict[TopicPartition, int],
    *,
    max_records: int | None = None,
) -> AsyncIterator[tuple[TopicPartition, ConsumerRecord]]:
    """The records of the assigned partitions from their positions until ``end`` is reached.

    Undecodable batches are skipped (:func:`getmany` logs them). A
    fetch may return records at or past ``end`` (written since): they are yielded too, the
    caller decides what they mean.
    """
    remaining = {tp for tp in end if await consumer.position(tp) < end[tp]}
    while remaining:
        batch = await getmany(consumer, *remaining, timeout_ms=500, max_records=max_records)
        for tp, records in batch.items():
            for record in records:
                if not isinstance(record, Undecodable):
                    yield tp, record
            if await consumer.position(tp) >= end[tp]:
                remaining.discard(tp)
