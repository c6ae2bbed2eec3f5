"""How the status view gathers one store transaction's records (``PartitionedView._gather``).

A transaction's commit is most of a small batch's cost, so a batch that starts as a flow
waits for more records (up to ``_LINGER``, or ``_MAX_BATCH`` records), and a trickle ends
at the first short wait that brings nothing, so a lone record is not held for the linger.
The fetches are scripted here: what is decided is when to stop asking, not how records
are read (the view's tests on the real broker cover that).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from webhook_stream.core.settings import Settings
from webhook_stream.status import view as view_module
from webhook_stream.status.view import PartitionedView

TP = TopicPartition("webhooks.deliveries", 0)


class Record:
    def __init__(self, offset: int) -> None:
        self.offset = offset


class Fetches:
    """Answers each ``getmany`` from a script; records every call's timeout."""

    def __init__(self, answers: Iterator[int]) -> None:
        self._answers = answers
        self._next = 0
        self.timeouts: list[int] = []

    async def __call__(
        self, consumer: Any, *_: Any, timeout_ms: int = 0, max_records: int = 0, **__: Any
    ) -> Any:
        self.timeouts.append(timeout_ms)
        count = min(next(self._answers, 0), max_records)
        records = [Record(self._next + i) for i in range(count)]
        self._next += count
        return {TP: records} if records else {}


def view_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answers: Iterator[int]) -> Any:
    view = PartitionedView(Settings(), tmp_path / "s.sqlite3", "http://127.0.0.1:1")
    view._pos[TP] = 0
    fetches = Fetches(answers)
    monkeypatch.setattr(view_module.fetch, "getmany", fetches)
    return view, fetches


async def test_a_flow_gathers_up_to_a_full_batch_across_empty_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 300 records a fetch, as a third of a busy cluster gets, with a fetch held empty
    # by the broker in between: still one transaction of 2,000.
    answers = iter([300, 300, 0, 300, 300, 300, 300, 300, 300])
    view, fetches = view_with(tmp_path, monkeypatch, answers)
    batch = await view._gather(None)
    assert sum(map(len, batch.values())) == view_module._MAX_BATCH
    assert len(fetches.timeouts) == 8
    assert fetches.timeouts[1] > view_module._GAP * 1000  # it waits the linger's rest
    view.store.close()


async def test_a_trickle_is_written_once_a_short_wait_brings_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lone record: written after one short wait, not the whole linger.
    view, fetches = view_with(tmp_path, monkeypatch, iter([1, 0, 5]))
    batch = await view._gather(None)
    assert [r.offset for r in batch[TP]] == [0]
    assert len(fetches.timeouts) == 2
    assert fetches.timeouts[1] <= view_module._GAP * 1000 < view_module._LINGER * 1000
    view.store.close()


async def test_a_reassignment_while_gathering_drops_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    view, fetches = view_with(tmp_path, monkeypatch, iter([10, 10]))
    real = fetches.__call__

    async def reassigning(*args: Any, **kwargs: Any) -> Any:
        got = await real(*args, **kwargs)
        if len(fetches.timeouts) == 2:
            view._epoch += 1  # a revocation or an assignment meanwhile
        return got

    monkeypatch.setattr(view_module.fetch, "getmany", reassigning)
    assert await view._gather(None) == {}
    view.store.close()
