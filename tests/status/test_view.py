"""The partitioned status store across workers, on the real broker.

Each worker keeps only the status partitions the ``<app_id>-status`` group gives it, in a
SQLite store on disk, and forwards queries about other endpoints to their owner. Any
worker answers for every endpoint; a worker killed with SIGKILL hands its partitions over
with the history intact; a restarted worker serves again without re-reading the topics.
The view runs in a child process of each worker: it is restarted when it dies and never
outlives its worker.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import time
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


class Answers:
    """Every status answer a test saw: a 200 must be the whole truth, a 503 says retry."""

    def __init__(self) -> None:
        self.wrong: list[str] = []
        self.unavailable = 0

    async def sees_exactly(self, worker: Worker, event_ids: list[str], *, final: bool) -> bool:
        """Every endpoint's attempt log holds one succeeded attempt per event, no more.

        With ``final``, every event's attempts are known to be in Kafka already: any 200
        that is not exactly the history is wrong data, which must never be served.
        """
        async with worker.api() as client:
            for ep in ENDPOINTS:
                r = await client.get(f"/subscriptions/{ep}/attempts", params={"limit": "500"})
                if r.status_code == 503:
                    assert r.headers["Retry-After"] == "2", r.text
                    self.unavailable += 1
                    return False
                assert r.status_code == 200, r.text
                items = r.json()["items"]
                got = sorted(a["delivery_id"] for a in items)
                want = sorted(delivery_id_for(e, ep) for e in event_ids)
                if got != want or {a["outcome"] for a in items} != {"succeeded"}:
                    if final:
                        self.wrong.append(f"{worker.port} {ep}: {len(got)} of {len(want)}")
                    return False
            for e in event_ids[-2:]:
                r = await client.get(f"/deliveries/{delivery_id_for(e, ENDPOINTS[0])}")
                if r.status_code == 503:
                    self.unavailable += 1
                    return False
                if r.status_code != 200 or r.json()["status"] != "succeeded":
                    if final:
                        self.wrong.append(f"{worker.port} delivery {e}: {r.status_code}")
                    return False
        return True


async def all_received(receiver: Receiver, count: int) -> bool:
    return all(len(receiver.at(f"/{ep}")) >= count for ep in ENDPOINTS)


def stored_attempts(worker: Worker) -> int:
    """Attempts in the worker's own status store (its SQLite file, read directly)."""
    path = worker.workdir / "webhook-stream-status" / f"webhook-stream-{worker.port}.sqlite3"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT count(*) FROM attempts").fetchone()[0]
    finally:
        db.close()


def served_lines(worker: Worker) -> list[tuple[float, int]]:
    """(seconds after start, records read) of each 'status partitions served' log line."""
    pattern = r"served, ([\d.]+)s after start, (\d+) records read"
    return [(float(s), int(n)) for s, n in re.findall(pattern, worker.log_text())]


async def test_three_workers_answer_every_endpoint_through_kill_and_restart(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    workers = [Worker(own_broker.url, tmp_path / n, env=ENV).start() for n in "abc"]
    a, b, c = workers
    answers = Answers()
    try:
        for w in workers:
            await w.wait_ready()
        for ep in ENDPOINTS:
            await a.create_subscription(id=ep, url=receiver.url(f"/{ep}"), event_types=["sv.*"])
        sent = await send_round(own_kafka, 1)
        await eventually(lambda: all_received(receiver, len(sent)), timeout=60)
        for w in workers:  # each answers for every endpoint, its own or forwarded
            await eventually(lambda w=w: answers.sees_exactly(w, sent, final=False), timeout=30)
        # One copy of the history for the cluster, not one per worker.
        total = len(sent) * len(ENDPOINTS)
        shares = [stored_attempts(w) for w in workers]
        assert sum(shares) == total and max(shares) < total, shares

        # kill -9: within 40 s the others answer with the history intact, never less. Once
        # every delivery is committed: an uncommitted one is (rightly) delivered again by
        # the next owner, which adds an attempt to the history.
        await eventually(own_kafka.deliveries_committed, timeout=20)
        b.kill()
        killed = time.monotonic()
        for w in (a, c):
            await eventually(lambda w=w: answers.sees_exactly(w, sent, final=True), timeout=40)
        failover_s = time.monotonic() - killed
        assert answers.wrong == []

        # Events while b is down, then b restarts on its store (same port, same file).
        sent += await send_round(own_kafka, 2)
        await eventually(lambda: all_received(receiver, len(sent)), timeout=60)
        for w in (a, c):
            await eventually(lambda w=w: answers.sees_exactly(w, sent, final=False), timeout=30)
        started = time.monotonic()
        b.start()
        await b.wait_ready()
        await eventually(lambda: answers.sees_exactly(b, sent, final=True), timeout=40)
        restart_s = time.monotonic() - started
        for w in (a, c):
            await eventually(lambda w=w: answers.sees_exactly(w, sent, final=True), timeout=30)
        assert answers.wrong == []
        serving = await eventually(lambda: served_lines(b)[-1:], timeout=10)
        # What the restarted store read is what it missed, not the whole topics: the
        # three topics hold a record per delivery and one per attempt, for all rounds.
        whole = 2 * len(sent) * len(ENDPOINTS)
        assert serving[0][1] < whole, (serving, whole)
        print(
            f"\nfailover after kill -9: answers intact after {failover_s:.1f}s "
            f"({answers.unavailable} answers 503 meanwhile); restart: serving after "
            f"{restart_s:.1f}s, store caught up {serving[0][0]:.2f}s after start, "
            f"{serving[0][1]} records read (the topics hold {whole})"
        )
    finally:
        for w in workers:
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
        # A new view starts on the same store and resumes from its applied offsets.
        second = await eventually(
            lambda: next((p for p in status_views(w.proc.pid) if p != first), None), timeout=15
        )
        await eventually(succeeded, timeout=30)
        assert "status view process exited with code -9; restarting" in w.log_text()

        w.kill()  # SIGKILL: the worker cannot stop its view, the view notices by itself
        await eventually(lambda: not running(second), timeout=15)
    finally:
        w.stop()


async def test_status_view_process_answers_and_stops(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = Settings(broker=broker.url, app_id=f"sv-{free_port()}")
    view = StatusProcess(settings, str(tmp_path / "store.sqlite3"), "http://127.0.0.1:1")
    with pytest.raises(StatusUnavailable, match="not running"):
        await view.delivery("dl_unknown", None, local=False)
    task = asyncio.create_task(view.run())
    try:

        async def answers() -> bool:
            try:
                return await view.delivery("dl_unknown", None, local=False) == {"missing": True}
            except StatusUnavailable:
                return False

        await eventually(answers, timeout=30)
        query = {"limit": 5, "after": None, "outcome": None}
        page = await view.attempts("no_such_endpoint", query, local=False)
        assert page == {"ok": {"items": [], "next": None}}
        info = await view.info()  # the only member: it owns and serves every partition
        assert info["owned"] and info["ready"] == info["owned"]
    finally:
        view.stop()
        await asyncio.wait_for(task, 15)


async def test_a_view_that_cannot_start_is_restarted_ever_more_slowly(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    settings = Settings(broker=f"kafka://127.0.0.1:{free_port()}")  # no broker
    view = StatusProcess(settings, str(tmp_path / "store.sqlite3"), "http://127.0.0.1:1")
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
            await view.delivery("dl_any", None, local=False)
    finally:
        view.stop()
        await asyncio.wait_for(task, 15)


async def console_view(worker: Worker, ids: list[str]) -> dict | None:
    """Dead letters (paged by 3), per-endpoint counters and the overview, as one worker says.

    None while any of them answers 503 (partitions moving or catching up).
    """
    async with worker.api() as client:
        dead, after = [], None
        while True:
            params = {"limit": "3", **({"after": after} if after else {})}
            r = await client.get("/deadletters", params=params)
            if r.status_code == 503:
                assert r.headers["Retry-After"] == "2"
                return None
            assert r.status_code == 200, r.text
            dead += [i["delivery_id"] for i in r.json()["items"]]
            after = r.json()["next"]
            if after is None:
                break
        stats = await client.get("/endpoint-stats", params={"ids": ",".join(ids)})
        overview = await client.get("/overview")
        if 503 in (stats.status_code, overview.status_code):
            return None
        per_endpoint = {
            s["endpoint_id"]: (s["succeeded_last_hour"], s["failed_last_hour"], s["dead_letters"])
            for s in stats.json()["items"]
        }
        o = overview.json()
        return {
            "dead": dead,
            "stats": per_endpoint,
            "overview": (o["succeeded_last_hour"], o["failed_last_hour"], o["dead_letters"]),
        }


async def test_console_summaries_are_whole_from_every_worker(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    """Dead letters, endpoint counters and the overview span every status partition.

    Each worker holds only its partitions' history; asked anything, it merges every owner's
    share, so both workers give the same, complete answer (or a 503, never a part)."""
    workers = [Worker(own_broker.url, tmp_path / n, env=ENV).start() for n in "ab"]
    failing = ENDPOINTS[:4]
    try:
        for w in workers:
            await w.wait_ready()
        for ep in ENDPOINTS:
            if ep in failing:
                receiver.script[f"/{ep}"] = lambda _req: 500
            await workers[0].create_subscription(
                id=ep, url=receiver.url(f"/{ep}"), event_types=["sv.*"], max_attempts=1
            )
        sent = await send_round(own_kafka, 1, per_round=5)
        total = len(sent) * len(ENDPOINTS)
        await eventually(lambda: all_received(receiver, len(sent)), timeout=60)
        want = {
            "dead": sorted(delivery_id_for(e, ep) for e in sent for ep in failing),
            "stats": {
                ep: (0, len(sent), len(sent)) if ep in failing else (len(sent), 0, 0)
                for ep in ENDPOINTS
            },
            "overview": (total - len(failing) * len(sent), len(failing) * len(sent), 20),
        }

        async def whole(w: Worker) -> bool:
            got = await console_view(w, ENDPOINTS)
            if got is None:
                return False
            assert len(got["dead"]) == len(set(got["dead"])), got["dead"]  # no repeats
            return {**got, "dead": sorted(got["dead"])} == want

        for w in workers:
            await eventually(lambda w=w: whole(w), timeout=60)
        # One copy of the history, split between the two.
        shares = [stored_attempts(w) for w in workers]
        assert sum(shares) == total and min(shares) > 0, shares
    finally:
        for w in workers:
            w.stop()
