"""A stop that lands while a takeover is under way (units, no broker).

Found in the bench: a worker sent SIGTERM while it was taking over partitions gave them up
(``revoked(None)``) under the running takeover, which then failed with a KeyError and
stopped the worker as a crash instead of an orderly stop.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from webhook_stream.core.metrics import Metrics
from webhook_stream.core.settings import Settings
from webhook_stream.core.topics import DELIVERIES, PARKED
from webhook_stream.delivery.lanes import Lanes, OffsetTracker
from webhook_stream.delivery.parking import Parking


class Consumer:
    """What Parking.assigned asks of the consumer: every partition starts empty."""

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 0)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 0)

    async def committed(self, tp: TopicPartition) -> int | None:
        return None


class Producer:
    async def send(self, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(SimpleNamespace(offset=0))
        return done


async def _deliver(item: Any) -> None:
    return None


async def test_a_stop_during_the_takeover_leaves_it_unfinished_without_an_error() -> None:
    parking = Parking(
        Settings(),
        None,  # type: ignore[arg-type]
        Producer(),  # type: ignore[arg-type]
        Metrics(),
        Lanes(_deliver, 100, lambda exc: None),
        OffsetTracker(lambda n: None),
        lambda *args: None,
    )
    marked: list[int] = []

    async def load(parts: list[int]) -> None:
        parking.revoked(None)  # the worker stops while the flow state is being read

    async def mark_takeover(p: int, *args: Any) -> None:
        marked.append(p)

    parking.flow_states.load = load  # type: ignore[method-assign]
    parking.flow_states.mark_takeover = mark_takeover  # type: ignore[method-assign]
    tps = [TopicPartition(t, p) for t in (DELIVERIES, PARKED) for p in (4, 5)]
    await parking.assigned(Consumer(), tps)  # type: ignore[arg-type]
    assert marked == []  # nothing is marked for partitions already given up
