"""A strict endpoint over its tenant's read-back share (MAX_PARKED_HELD_PER_TENANT, 100)
while its copies are deferred and read again, and a kill -9 in the middle: the next owner
delivers every event, and no attempt of event k reaches the receiver before every event
j < k has succeeded there (the strict promise; repeats of succeeded ones allowed).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import orjson
import pytest

from tests.delivery.test_strict import Scripted
from tests.support import Kafka, Receiver, Worker, event, eventually, uid
from webhook_stream.broker import EmbeddedBroker

pytestmark = pytest.mark.integration

N = 1200  # the head's 1,197 followers park; read back 100 at a time (the tenant's share)


async def test_a_strict_endpoint_deferred_and_read_again_keeps_its_order_across_a_kill_minus_9(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    strict = Scripted(head=2, fail_times=2)
    receiver.script["/strict"] = strict
    env = {"WEBHOOK_STREAM_RETRY_SCHEDULE": "4s,4s"}
    a = Worker(own_broker.url, tmp_path / "a", env=env).start()
    b: Worker | None = None
    try:
        await a.wait_ready()
        await a.create_subscription(
            id="strict-share",
            url=receiver.url("/strict"),
            event_types=["s.x"],
            ordering="strict",
            tenant_id="ts",
        )
        assert own_kafka.producer is not None
        sends = [
            await own_kafka.producer.send(
                "events.strict",
                orjson.dumps(event("s.x", {"seq": i}, id=uid("e"), tenant_id="ts")),
                key=b"k",
            )
            for i in range(N)
        ]
        await asyncio.gather(*sends)

        # The head succeeded; its followers come back from parking under the share, the
        # rest deferred and read again.
        async def deferred() -> bool:
            async with a.api() as client:
                text = (await client.get("/metrics")).text
            found = re.search(r"^webhook_parked_deferred (\S+)$", text, re.M)
            return found is not None and float(found.group(1)) > 0

        await eventually(deferred, timeout=90, interval=0.05)
        await eventually(lambda: len(strict.succeeded()) >= 300, timeout=90, interval=0.02)
        a.kill()
        assert len(strict.succeeded()) < N, "finished before the kill: nothing was tested"
        b = Worker(own_broker.url, tmp_path / "b", env=env).start()
        await b.wait_ready()
        await eventually(lambda: strict.succeeded() == set(range(N)), timeout=120)
        strict.assert_strict(N)
        assert "could not hand" not in b.log_text()
    finally:
        a.stop()
        if b is not None:
            b.stop()
