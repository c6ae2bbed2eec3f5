"""Crash safety and scale-out: kill -9, SIGTERM, retries surviving a crash.

Each test runs on a broker of its own: several worker processes of one app share its
consumer groups, and no other worker may consume the same topics meanwhile.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import orjson
from aiokafka import TopicPartition

from tests.support import Kafka, Receiver, Worker, event, eventually, uid
from webhook_stream.broker import EmbeddedBroker
from webhook_stream.core import kafka as ws_kafka
from webhook_stream.core.schemas import validation_errors
from webhook_stream.core.settings import Settings
from webhook_stream.core.topics import DELIVERIES, DELIVERY_PROGRESS, ENDPOINT_FLOW, PARKED
from webhook_stream.delivery.progress import decode_ranges

CRASH_ENV = {"WEBHOOK_STREAM_PARTITIONS": "8"}


async def produce_load(kafka: Kafka, types: list[str], n_events: int, n_keys: int) -> list[dict]:
    assert kafka.producer is not None
    sent, futures = [], []
    for seq in range(n_events):
        key = f"key-{seq % n_keys}"
        body = event(types[seq % len(types)], {"key": key, "seq": seq}, id=f"e{seq}")
        futures.append(
            await kafka.producer.send("events.load", orjson.dumps(body), key=key.encode())
        )
        sent.append(body)
    await asyncio.gather(*futures)
    return sent


def check_order_by_first_arrival(receiver: Receiver, paths: list[str]) -> None:
    for path in paths:
        first: dict[int, float] = {}
        keys: dict[int, str] = {}
        for r in receiver.at(path):
            seq = r.json["data"]["seq"]
            if seq not in first:
                first[seq] = len(first)
                keys[seq] = r.json["data"]["key"]
        per_key: dict[str, list[int]] = defaultdict(list)
        for seq in sorted(first, key=first.__getitem__):
            per_key[keys[seq]].append(seq)
        for key, seqs in per_key.items():
            assert seqs == sorted(seqs), (path, key, seqs[:20])


async def test_kill_minus_9_loses_nothing_and_keeps_order(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    rng = random.Random(3)

    async def jittery(_req: object) -> int:
        await asyncio.sleep(rng.uniform(0.0005, 0.003))
        return 200

    a = Worker(own_broker.url, tmp_path / "a", env=CRASH_ENV).start()
    b = Worker(own_broker.url, tmp_path / "b", env=CRASH_ENV).start()
    try:
        await a.wait_ready()
        await b.wait_ready()
        types = [f"load.t{i}" for i in range(5)]
        paths = [f"/ep{i}" for i in range(10)]
        for i, path in enumerate(paths):
            receiver.script[path] = jittery
            await a.create_subscription(
                id=f"ep{i}", url=receiver.url(path), event_types=[types[i % 5]]
            )
        await eventually(lambda: b_has_all(b, 10), timeout=20)
        n_events = 3000
        expected = n_events * 2  # each type has two endpoints
        await produce_load(own_kafka, types, n_events, n_keys=40)
        await eventually(lambda: len(receiver.requests) >= expected // 4, timeout=60)
        a.kill()
        killed_at = time.time()
        received_at_kill = len(receiver.requests)

        def distinct() -> set[tuple[str, str]]:
            return {(r.path, r.headers["webhook-id"]) for r in receiver.requests}

        await eventually(lambda: len(distinct()) >= expected, timeout=120, interval=0.2)
        recovery = time.time() - killed_at
        dups = len(receiver.requests) - len(distinct())
        print(
            f"\nkill -9 test: events={n_events} deliveries={expected} lost=0 duplicates={dups} "
            f"received_at_kill={received_at_kill} seconds_from_kill_to_all_delivered={recovery:.1f}"
        )
        # Every (event, endpoint) pair arrived; duplicates only from the killed worker's
        # in-flight and finished-but-uncommitted work, a small share of the load.
        per_path = Counter(r.path for r in receiver.requests)
        assert all(per_path[p] >= n_events // 5 for p in paths)
        assert dups < expected * 0.25, dups
        check_order_by_first_arrival(receiver, paths)
    finally:
        a.stop()
        b.stop()


async def b_has_all(worker: Worker, count: int) -> bool:
    return len(await worker.list_subscriptions()) >= count


async def test_sigterm_then_restart_has_no_loss_and_no_duplicates(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    w = Worker(own_broker.url, tmp_path / "w", env=CRASH_ENV).start()
    try:
        await w.wait_ready()
        types = ["term.a", "term.b"]
        paths = ["/a", "/b", "/c"]
        for i, path in enumerate(paths):
            await w.create_subscription(
                id=f"ep{i}", url=receiver.url(path), event_types=[types[i % 2]]
            )
        n_events = 2000
        expected = sum(1 for seq in range(n_events) for i in range(3) if i % 2 == seq % 2)
        await produce_load(own_kafka, types, n_events, n_keys=20)
        await eventually(lambda: len(receiver.requests) >= expected // 4, timeout=60)
        started = time.time()
        code = await w.terminate(timeout=60)
        print(
            f"\nSIGTERM: worker exited with {code} after {time.time() - started:.1f}s, "
            f"{len(receiver.requests)}/{expected} delivered"
        )
        assert code == 0
        assert "Traceback" not in w.log_text()
        w.start()
        await w.wait_ready()
        await eventually(lambda: len(receiver.requests) >= expected, timeout=120, interval=0.2)
        ids = Counter((r.path, r.headers["webhook-id"]) for r in receiver.requests)
        assert len(ids) == expected
        assert [k for k, n in ids.items() if n > 1] == []
        check_order_by_first_arrival(receiver, paths)
    finally:
        w.stop()


async def test_delivery_waiting_in_retry_topic_survives_a_crash(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    calls = {"n": 0}

    def first_fails(_req: object) -> int:
        calls["n"] += 1
        return 503 if calls["n"] == 1 else 200

    receiver.script["/r"] = first_fails
    w = Worker(own_broker.url, tmp_path / "w", env=CRASH_ENV).start()
    try:
        await w.wait_ready()
        await w.create_subscription(
            id="ep", url=receiver.url("/r"), event_types=["retry.crash"], retry_schedule=["6s"]
        )
        await own_kafka.send("events.retrycrash", event("retry.crash", id=uid("e")))
        (first,) = await receiver.wait_count("/r", 1, timeout=30)
        # Kill once the retry record is durably in a retry topic and the original delivery
        # is committed, so the only way to a second call is the retry itself.
        await eventually(lambda: _in_retry_topic(own_kafka), timeout=10)
        await eventually(own_kafka.deliveries_committed, timeout=10)
        w.kill()
        w.start()
        await w.wait_ready()
        _, second = await receiver.wait_count("/r", 2, timeout=60)
        assert second.headers["webhook-id"] == first.headers["webhook-id"]
        assert second.at - first.at >= 6.0
    finally:
        w.stop()


async def _in_retry_topic(kafka: Kafka) -> bool:
    return bool(await kafka.read_all("webhooks.retry.2s"))


async def test_kill_minus_9_redelivers_under_two_percent(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    """Two workers, 12,000 deliveries, one killed at 25 %: under 2 % are delivered again.

    Issue 16's target. Before the commit task this run repeated 7.9 %, with it 1.5-3.9 %:
    nearly all deliveries the killed worker had finished beyond its partitions' committed
    prefix (one endpoint's lane ahead of another's in the same partition). Those are now
    listed in webhooks.delivery_progress and skipped by the next owner."""
    await _kill_during_load(own_broker, own_kafka, receiver, tmp_path, kill_at=0.25)


async def test_kill_minus_9_while_its_fan_out_is_busy_redelivers_under_two_percent(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    """The same, killed as the first deliveries arrive: both fan-outs are mid-way through
    their events, each up to a commit's worth ahead of it. The killed one's uncommitted
    events are fanned out again by its successor (same delivery ids); the copies of those
    already attempted are skipped. Before that (CI, 2026-12-06): 2,000 of 12,000 again."""
    await _kill_during_load(own_broker, own_kafka, receiver, tmp_path, kill_at=0.02)


async def _kill_during_load(
    broker: EmbeddedBroker, kafka: Kafka, receiver: Receiver, tmp_path: Path, kill_at: float
) -> None:
    a = Worker(broker.url, tmp_path / "a", env=CRASH_ENV).start()
    b = Worker(broker.url, tmp_path / "b", env=CRASH_ENV).start()
    try:
        await a.wait_ready()
        await b.wait_ready()
        types = [f"dup.t{i}" for i in range(5)]
        paths = [f"/d{i}" for i in range(10)]
        for i, path in enumerate(paths):
            await a.create_subscription(
                id=f"d{i}", url=receiver.url(path), event_types=[types[i % 5]]
            )
        await eventually(lambda: b_has_all(b, 10), timeout=20)
        # The input topic made, and both fan-outs reading it, before the load.
        await produce_load(kafka, ["dup.none"], 40, n_keys=40)
        assigned = re.compile(r"^\| events\.load +\| \{[\d, ]+\} +\|$", re.M)  # the fan-out's
        await eventually(lambda: all(assigned.search(w.log_text()) for w in (a, b)), 30)
        n_events = 6000
        expected = n_events * 2  # each type has two endpoints
        await produce_load(kafka, types, n_events, n_keys=40)
        await eventually(lambda: len(receiver.requests) >= expected * kill_at, timeout=60)
        a.kill()
        killed_at = time.time()

        def distinct() -> int:
            return len({(r.path, r.headers["webhook-id"]) for r in receiver.requests})

        try:
            await eventually(lambda: distinct() >= expected, timeout=300, interval=0.2)
        finally:
            print(
                f"\n{distinct()} of {expected} distinct deliveries, {len(receiver.requests)} in all"
            )
        dups = len(receiver.requests) - distinct()
        seen: dict[tuple[str, str], float] = {}
        early = 0
        for r in receiver.requests:
            k = (r.path, r.headers["webhook-id"])
            if k in seen and seen[k] < killed_at:
                early += 1
            seen.setdefault(k, r.at)
        # Before the kill: the killed worker's uncommitted deliveries; after it: events its
        # fan-out had not committed, fanned out twice and attempted twice.
        print(f"first copy before the kill: {early}, after it: {dups - early}")
        print(f"kill -9 at {kill_at:.0%}: {dups} of {expected} again ({dups / expected:.2%})")
        assert dups < expected * 0.02, dups
    finally:
        a.stop()
        b.stop()


async def test_a_new_owner_skips_what_the_killed_one_finished_beyond_its_prefix(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    """One partition, two endpoints: a hanging one holds the committed prefix while the
    other's deliveries all finish. After a kill -9 its successor skips those (they are in
    webhooks.delivery_progress) and delivers every one of the hanging endpoint's."""
    release = asyncio.Event()

    async def hangs(_req: object) -> int:
        await release.wait()
        return 200

    receiver.script["/slow"] = hangs
    w = Worker(own_broker.url, tmp_path / "w", env={"WEBHOOK_STREAM_PARTITIONS": "1"}).start()
    settings = Settings.from_env({"WEBHOOK_STREAM_BROKER": own_broker.url})
    try:
        await w.wait_ready()
        await w.create_subscription(id="fast", url=receiver.url("/fast"), event_types=["skip.x"])
        await w.create_subscription(
            id="slow", url=receiver.url("/slow"), event_types=["skip.x"], timeout_s=60
        )
        n_events = 600  # more than an endpoint's share (500): the slow one parks the rest
        await produce_load(own_kafka, ["skip.x"], n_events, n_keys=1)
        await receiver.wait_count("/fast", n_events, timeout=60)
        assert len(receiver.at("/slow")) == 1  # the first one hangs: the prefix stays there
        beyond = await eventually(lambda: _progress_covers(settings, own_kafka, n_events), 30)
        w.kill()
        release.set()
        w.start()
        await w.wait_ready()

        def slow_ids() -> set[str]:
            return {r.headers["webhook-id"] for r in receiver.at("/slow")}

        await eventually(lambda: len(slow_ids()) >= n_events, timeout=120, interval=0.2)
        await eventually(lambda: _all_committed(settings, own_kafka), timeout=60)
        fast = Counter(r.headers["webhook-id"] for r in receiver.at("/fast"))
        print(
            f"\nskipped after kill -9: {len(beyond)} fast deliveries listed, "
            f"{sum(fast.values()) - len(fast)} delivered again; slow: {len(receiver.at('/slow'))} "
            f"requests for {len(slow_ids())} deliveries"
        )
        assert len(fast) == n_events
        assert [k for k, n in fast.items() if n > 1] == []
        assert len(beyond) >= n_events - 2  # nearly all were beyond the slow one's first
        assert "deliveries its last owner finished are skipped" in w.log_text()
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(w.url + "/metrics")).text
        skipped = next(
            float(line.split()[1])
            for line in metrics.splitlines()
            if line.startswith("webhook_takeover_skipped_total ")
        )
        assert skipped >= len(beyond)  # and the fast endpoint's copies read back from parking
        check_order_by_first_arrival(receiver, ["/fast", "/slow"])
        # What the worker wrote to its internal topics has a schema (schemas/*.avsc).
        for topic, schema in (
            (DELIVERY_PROGRESS, "delivery_progress"),
            (ENDPOINT_FLOW, "endpoint_flow"),
        ):
            written = [orjson.loads(r.value) for r in await own_kafka.read_all(topic) if r.value]
            assert written, topic
            assert [e for v in written for e in validation_errors(schema, v)] == [], topic
            if topic == ENDPOINT_FLOW:  # both kinds: endpoint states and takeover markers
                assert {type(v) for v in written} == {dict, list}
    finally:
        release.set()
        w.stop()


async def _progress_covers(settings: Settings, kafka: Kafka, n_events: int) -> set[int]:
    """The fast endpoint's offsets past the committed one, once the committed progress
    record lists them all (and the fan-out has committed every event)."""
    group = f"{settings.app_id}-deliver"
    fanned = await ws_kafka.committed(settings, f"{settings.app_id}-fanout", "events.load")
    if sum(fanned.values()) < n_events:
        return set()
    at = (await ws_kafka.committed(settings, group, DELIVERIES)).get(TopicPartition(DELIVERIES, 0))
    marked = await ws_kafka.committed(settings, group, DELIVERY_PROGRESS)
    mark = marked.get(TopicPartition(DELIVERY_PROGRESS, 0))
    if at is None or mark is None:
        return set()
    fast = {r.offset for r in await kafka.read_all(DELIVERIES) if r.key == b"fast"}
    beyond = {o for o in fast if o >= at}
    record = min(
        (r for r in await kafka.read_all(DELIVERY_PROGRESS) if r.offset >= mark - 1),
        key=lambda r: r.offset,
    )
    done = decode_ranges(orjson.loads(record.value)["deliveries"]["done"], at_least=at)
    return beyond if beyond and beyond <= done else set()


async def _all_committed(settings: Settings, kafka: Kafka) -> bool:
    """Every record of webhooks.deliveries and webhooks.parked is finished and committed."""
    group = f"{settings.app_id}-deliver"
    for topic in (DELIVERIES, PARKED):
        last = max((r.offset for r in await kafka.read_all(topic)), default=-1)
        committed = (await ws_kafka.committed(settings, group, topic)).get(
            TopicPartition(topic, 0), 0
        )
        if committed <= last:
            return False
    return True
