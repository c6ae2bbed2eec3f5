"""The fan-out runs in a child process of the worker: counted in the worker's /metrics and
/health, restarted when it dies (nothing lost), gone with its worker, and off on request."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import httpx
import pytest

from tests.support import Kafka, Receiver, Worker, event, eventually, uid
from webhook_stream.broker import EmbeddedBroker

pytestmark = pytest.mark.integration

CHILD = b"webhook_stream.ingest.process"


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in os.listdir(f"/proc/{p}/task"):
            with open(f"/proc/{p}/task/{task}/children") as f:
                kids = [int(c) for c in f.read().split()]
            found.extend(kids)
            todo.extend(kids)
    return found


def fanout_children(worker: Worker) -> list[int]:
    assert worker.proc is not None
    out = []
    for pid in descendants(worker.proc.pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if CHILD in f.read():
                    out.append(pid)
        except FileNotFoundError:
            continue
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def fanned_out(worker: Worker) -> float:
    async with worker.api() as client:
        text = (await client.get("/metrics")).text
    # One family, not one per process: the child's samples are added to the worker's.
    assert text.count("# TYPE webhook_events_total counter") == 1, text
    found = re.search(r'^webhook_events_total\{result="fanned_out"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_the_fan_out_runs_in_a_child_counted_in_the_workers_metrics(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    (child,) = fanout_children(worker)
    assert child != worker.proc.pid  # type: ignore[union-attr]
    etype = uid("child") + ".made"
    ep = uid("ep")
    await worker.create_subscription(id=ep, url=receiver.url(f"/{ep}"), event_types=[etype])
    before = await fanned_out(worker)
    for n in range(5):
        await kafka.send("events.child", event(etype, {"n": n}, id=uid("e")))
    got = await receiver.wait_count(f"/{ep}", 5)
    assert sorted(r.json["data"]["n"] for r in got) == [0, 1, 2, 3, 4]
    # Counted by the child, read through the worker's /metrics.
    await eventually(lambda: _at_least(worker, before + 5))
    async with httpx.AsyncClient() as client:
        health = (await client.get(worker.url + "/health")).json()
    assert health["checks"]["consumer_groups_joined"] is True, health


async def _at_least(worker: Worker, value: float) -> bool:
    return await fanned_out(worker) >= value


async def test_a_killed_fan_out_child_is_restarted_and_loses_nothing(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    kafka = own_kafka
    w = Worker(own_broker.url, tmp_path).start()
    try:
        await w.wait_ready()
        etype = uid("restart") + ".made"
        ep = uid("ep")
        await w.create_subscription(id=ep, url=receiver.url(f"/{ep}"), event_types=[etype])
        ids = [uid("e") for _ in range(40)]
        for i in ids[:20]:
            await kafka.send("events.restart", event(etype, {"id": i}, id=i))
        await receiver.wait_count(f"/{ep}", 1)
        (first,) = fanout_children(w)
        os.kill(first, signal.SIGKILL)
        for i in ids[20:]:
            await kafka.send("events.restart", event(etype, {"id": i}, id=i))

        async def all_delivered() -> bool:
            return {r.json["data"]["id"] for r in receiver.at(f"/{ep}")} == set(ids)

        await eventually(all_delivered, timeout=60)
        (second,) = await eventually(lambda: fanout_children(w))
        assert second != first
        assert "fan-out process exited with code -9; restarting" in w.log_text()
        await w.wait_ready()  # joined again
        # The worker goes, its child with it (its stdin closes), even after a SIGKILL.
        w.kill()
        await eventually(lambda: not alive(second), timeout=60)
    finally:
        w.stop()


async def test_fan_out_in_the_workers_own_process_when_asked(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    kafka = own_kafka
    env = {"WEBHOOK_STREAM_FANOUT_PROCESS": "false"}
    w = Worker(own_broker.url, tmp_path, env).start()
    try:
        await w.wait_ready()
        assert fanout_children(w) == []
        etype = uid("inproc") + ".made"
        ep = uid("ep")
        await w.create_subscription(id=ep, url=receiver.url(f"/{ep}"), event_types=[etype])
        before = await fanned_out(w)
        await kafka.send("events.inproc", event(etype, {"n": 1}, id=uid("e")))
        await receiver.wait_count(f"/{ep}", 1)
        assert await fanned_out(w) >= before + 1
    finally:
        w.stop()
