"""One broker and one worker per module, at the production budgets.

The budgets (MAX_PENDING_DELIVERIES, ..._PER_ENDPOINT, ..._PER_TENANT, MAX_PARKED_HELD,
MAX_IN_FLIGHT_PER_TENANT) are never lowered here: the claims must hold at the defaults.
Attackers and the victim have receivers of their own (other hosts, as in production).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support import Kafka, Receiver, Worker, eventually
from webhook_stream.broker import EmbeddedBroker, free_port

TOPIC = "events.iso"


@dataclass
class Iso:
    worker: Worker
    kafka: Kafka
    victim: Receiver
    attacker: Receiver
    sent: int = 0

    async def create(self, **sub: Any) -> None:
        async with self.worker.api() as client:
            r = await client.post("/subscriptions", json=sub)
        assert r.status_code == 201, r.text

    async def delete(self, endpoint_id: str) -> None:
        async with self.worker.api() as client:
            r = await client.delete(f"/subscriptions/{endpoint_id}")
        assert r.status_code in (200, 202, 204), r.text

    async def flood(self, tenant: str, type_: str, n: int) -> None:
        """``n`` events of ``tenant`` (each fans out to its matching endpoints)."""
        producer = self.kafka.producer
        assert producer is not None
        sends = []
        for i in range(n):
            doc = {"type": type_, "tenant_id": tenant, "data": {"i": i}}
            sends.append(await producer.send(TOPIC, orjson.dumps(doc), key=f"{tenant}{i}".encode()))
        for fut in sends:
            await fut

    async def victim_latencies(self, n: int = 5, within: float = 5.0) -> list[float]:
        """Send ``n`` events of tenant ``vic``; seconds from produce to receipt of each."""
        producer = self.kafka.producer
        assert producer is not None
        start = self.sent
        sent_at: dict[int, float] = {}
        for i in range(start, start + n):
            doc = {"type": "vic.ping", "tenant_id": "vic", "data": {"i": i}}
            sent_at[i] = time.time()
            await producer.send_and_wait(TOPIC, orjson.dumps(doc), key=f"v{i}".encode())
        self.sent += n

        def arrived() -> dict[int, float]:
            got = {r.json["data"]["i"]: r.at for r in self.victim.at("/vic")}
            return got if all(i in got for i in sent_at) else {}

        got = await eventually(arrived, timeout=within + 10)
        return [got[i] - sent_at[i] for i in sorted(sent_at)]

    async def parked_burst(self, endpoint_id: str, tenant: str, n: int) -> float:
        """A victim endpoint of ``tenant`` on its own path, sent ``n`` events under one key
        while its receiver holds the first call, so its lane fills (500) and the rest parks;
        then released. Seconds from the release until all ``n`` arrived (at most 60); their
        first receipts are in the burst's order (a repeat may follow, never overtake)."""
        path, type_ = f"/{endpoint_id}", f"{tenant}.burst"
        gate = asyncio.Event()

        async def held(_: object) -> int:
            await gate.wait()
            return 200

        self.victim.script[path] = held
        await self.create(
            id=endpoint_id, url=self.victim.url(path), event_types=[type_], tenant_id=tenant
        )
        throttled = '{budget="endpoint"}'
        before = await self.metric("webhook_throttled_total", throttled)
        producer = self.kafka.producer
        assert producer is not None
        sends = []
        for i in range(n):
            doc = {"type": type_, "tenant_id": tenant, "data": {"i": i}}
            # One key: one events partition, so the endpoint's order is the burst's order.
            sends.append(await producer.send(TOPIC, orjson.dumps(doc), key=tenant.encode()))
        for fut in sends:
            await fut

        async def parking() -> bool:
            return await self.metric("webhook_throttled_total", throttled) > before

        await eventually(parking, timeout=30, interval=0.2)
        t0 = time.monotonic()
        gate.set()
        self.victim.script[path] = 200

        def arrived() -> set[int]:
            return {r.json["data"]["i"] for r in self.victim.at(path)}

        try:
            await eventually(lambda: len(arrived()) >= n, timeout=60, interval=0.1)
        finally:
            took = time.monotonic() - t0
            print(f"victim burst of {n} (parked beyond 500): {len(arrived())} in {took:.2f}s")
        firsts = list(dict.fromkeys(r.json["data"]["i"] for r in self.victim.at(path)))
        assert firsts == sorted(firsts), "the victim's order was broken"
        return took

    async def metrics(self) -> str:
        async with self.worker.api() as client:
            return (await client.get("/metrics")).text

    async def metric(self, name: str, labels: str = "") -> float:
        text = await self.metrics()
        found = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
        return float(found.group(1)) if found else 0.0

    async def health(self) -> dict[str, Any]:
        async with self.worker.api() as client:
            return (await client.get("/health")).json()


@pytest.fixture(scope="module")
def iso_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("iso-broker") / "tansu.log"
    with EmbeddedBroker(port=free_port(), log_file=log) as b:
        yield b


@pytest.fixture(scope="module")
async def iso(
    iso_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Iso]:
    workdir: Path = tmp_path_factory.mktemp("iso-worker")
    kafka = await Kafka(iso_broker.bootstrap).start()
    victim = await Receiver().start()
    attacker = await Receiver().start()
    # The production attempt timeout (the test default is 2 s).
    w = Worker(iso_broker.url, workdir, env={"WEBHOOK_STREAM_HTTP_TIMEOUT": "10s"}).start()
    try:
        await w.wait_ready()
        state = Iso(w, kafka, victim, attacker)
        await state.create(
            id="vic_ep", url=victim.url("/vic"), event_types=["vic.*"], tenant_id="vic"
        )
        assert max(await state.victim_latencies(1, within=30.0)) < 30  # warm
        yield state
    finally:
        w.stop()
        await attacker.stop()
        await victim.stop()
        await kafka.stop()
