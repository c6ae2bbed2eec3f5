"""The status view across workers: any worker answers for every endpoint, exactly once.

Every worker tails the attempt log of all partitions, its own writes included. Partitions
change hands when a worker leaves and when one joins: no attempt may go missing or be
listed twice, on any worker. Runs on a broker of its own (several workers of one app).
The view runs in a child process of each worker: it is restarted when it dies and never
outlives its worker.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import orjson
import pytest

from tests.support import Kafka, Receiver, Worker, event, eventually
from webhook_stream.broker import EmbeddedBroker, free_port
from webhook_stream.core.errors import StatusUnavailable
from webhook_stream.core.records import delivery_id_for
from webhook_stream.core.settings import Settings
from webhook_stream.status.process import StatusProcess

ENV = {"WEBHOOK_STREAM_PARTITIONS": "8"}
ENDPOINTS = [f"sv{i}" for i in range(12)]


async def send_round(kafka: Kafka, round_: int, per_round: int = 4) -> list[str]:
    assert kafka.producer is not None
    ids = [f"evt_sv_{round_}_{i}" for i in range(per_round)]
    for event_id in ids:
        body = event("sv.changed", {"round": round_}, id=event_id)
        await kafka.producer.send_and_wait("events.sv", orjson.dumps(body), key=event_id.encode())
    return ids


async def sees_exactly(worker: Worker, event_ids: list[str]) -> bool:
    """Every endpoint's attempt log holds one succeeded attempt per event, no more."""
    async with worker.api() as client:
        for ep in ENDPOINTS:
            data = (await client.get(f"/subscriptions/{ep}/attempts")).json()["items"]
            got = sorted(a["delivery_id"] for a in data)
            want = sorted(delivery_id_for(e, ep) for e in event_ids)
            if got != want or {a["outcome"] for a in data} != {"succeeded"}:
                return False
        for e in event_ids[-2:]:
            r = await client.get(f"/deliveries/{delivery_id_for(e, ENDPOINTS[0])}")
            if r.status_code != 200 or r.json()["status"] != "succeeded":
                return False
    return True


async def all_received(receiver: Receiver, count: int) -> bool:
    return all(len(receiver.at(f"/{ep}")) >= count for ep in ENDPOINTS)


async def test_attempts_listed_once_by_every_worker_across_hand_overs(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    a = Worker(own_broker.url, tmp_path / "a", env=ENV).start()
    b = Worker(own_broker.url, tmp_path / "b", env=ENV).start()
    c: Worker | None = None
    try:
        await a.wait_ready()
        await b.wait_ready()
        for ep in ENDPOINTS:
            await a.create_subscription(id=ep, url=receiver.url(f"/{ep}"), event_types=["sv.*"])
        sent = await send_round(own_kafka, 1)
        await eventually(lambda: all_received(receiver, len(sent)), timeout=60)
        for w in (a, b):  # each owns some partitions and tails the others
            await eventually(lambda w=w: sees_exactly(w, sent), timeout=30)

        # b leaves: a now delivers for every partition.
        assert await b.terminate() == 0
        sent += await send_round(own_kafka, 2)
        await eventually(lambda: all_received(receiver, len(sent)), timeout=90)
        await eventually(lambda: sees_exactly(a, sent), timeout=30)

        # c joins: a hands partitions over and tails them again.
        c = Worker(own_broker.url, tmp_path / "c", env=ENV).start()
        await c.wait_ready()
        sent += await send_round(own_kafka, 3)
        await eventually(lambda: all_received(receiver, len(sent)), timeout=90)
        for w in (a, c):
            await eventually(lambda w=w: sees_exactly(w, sent), timeout=30)
        # exactly once at the receiver too: a clean hand-over repeats nothing
        assert all(len(receiver.at(f"/{ep}")) == len(sent) for ep in ENDPOINTS)
    finally:
        for w in (a, b, c):
            if w is not None:
                w.stop()


def status_views(pid: int) -> list[int]:
    """Process ids of the worker's status view children."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"webhook_stream.status.process" in cmdline:
                found.append(int(child))
    return found


def running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_status_view_process_restarts_and_never_outlives_its_worker(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    w = Worker(own_broker.url, tmp_path / "w", env=ENV).start()
    try:
        await w.wait_ready()
        assert w.proc is not None
        await w.create_subscription(id="svp", url=receiver.url("/svp"), event_types=["sv.*"])
        assert own_kafka.producer is not None
        body = orjson.dumps(event("sv.changed", {}, id="evt_svp"))
        await own_kafka.producer.send_and_wait("events.sv", body, key=b"evt_svp")
        path = f"/deliveries/{delivery_id_for('evt_svp', 'svp')}"

        async def succeeded() -> bool:
            async with w.api() as client:
                r = await client.get(path)
            return r.status_code == 200 and r.json()["status"] == "succeeded"

        await eventually(succeeded, timeout=30)
        [first] = status_views(w.proc.pid)

        os.kill(first, signal.SIGKILL)
        # A new view starts and reads the window again from Kafka.
        second = await eventually(
            lambda: next((p for p in status_views(w.proc.pid) if p != first), None), timeout=15
        )
        await eventually(succeeded, timeout=30)
        assert "status view process exited with code -9; restarting" in w.log_text()

        w.kill()  # SIGKILL: the worker cannot stop its view, the view notices by itself
        await eventually(lambda: not running(second), timeout=15)
    finally:
        w.stop()


async def test_status_view_process_answers_and_stops(broker: EmbeddedBroker) -> None:
    view = StatusProcess(Settings(broker=broker.url))
    with pytest.raises(StatusUnavailable, match="not running"):
        await view.delivery("dl_unknown")
    task = asyncio.create_task(view.run())
    try:

        async def answers() -> bool:
            try:
                return await view.delivery("dl_unknown") is None
            except StatusUnavailable:
                return False

        await eventually(answers, timeout=15)
        assert await view.attempts("no_such_endpoint", limit=5) == []
    finally:
        view.stop()
        await asyncio.wait_for(task, 15)


async def test_a_view_that_cannot_start_is_restarted_ever_more_slowly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    view = StatusProcess(Settings(broker=f"kafka://127.0.0.1:{free_port()}"))  # no broker
    task = asyncio.create_task(view.run())
    try:

        def delays() -> list[str]:
            return [
                r.getMessage().rsplit(" ", 1)[1]
                for r in caplog.records
                if "restarting in" in r.getMessage()
            ]

        assert await eventually(lambda: len(delays()) >= 2, timeout=30)
        assert delays()[:2] == ["1s", "2s"]
        with pytest.raises(StatusUnavailable):
            await view.delivery("dl_any")
    finally:
        view.stop()
        await asyncio.wait_for(task, 15)
