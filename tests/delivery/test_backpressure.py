"""Back-pressure: a worker holds at most MAX_PENDING_DELIVERIES; the rest waits in Kafka.

One endpoint holds at most its share of them (a quarter here): the rest of its backlog is
parked in webhooks.parked and read back under MAX_PARKED_HELD.

On a broker of its own: the worker runs with a small bound and must not share topics.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson

from tests.support import Kafka, Receiver, Worker, event
from webhook_stream.broker import EmbeddedBroker

BOUND = 40
SHARE = BOUND // 4
HELD = 20


async def test_a_stuck_endpoint_fills_the_bound_then_everything_arrives_in_order(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    release = asyncio.Event()

    async def stuck(_req: object) -> int:
        await release.wait()
        return 200

    receiver.script["/stuck"] = stuck
    env = {
        "WEBHOOK_STREAM_MAX_PENDING_DELIVERIES": str(BOUND),
        "WEBHOOK_STREAM_MAX_PARKED_HELD": str(HELD),
    }
    w = Worker(own_broker.url, tmp_path / "w", env=env).start()
    try:
        await w.wait_ready()
        await w.create_subscription(
            id="stuck", url=receiver.url("/stuck"), event_types=["bp.tick"], timeout_s=60
        )
        # Within the read-back window (10 x HELD copies past the first deferred one): a
        # backlog that fills it for PATIENCE_S (2 s) is dead-lettered by design
        # (test_parked_backlog), so with more the order below would race that timer.
        n = 10 * HELD
        assert own_kafka.producer is not None
        sends = [
            await own_kafka.producer.send(
                "events.bp", orjson.dumps(event("bp.tick", {"seq": i}, id=f"e{i}")), key=b"one"
            )
            for i in range(n)
        ]
        await asyncio.gather(*sends)

        # The endpoint takes its share, the rest is parked, and parked ones are read back
        # up to their own budget; sample that for a bounded period.
        peak = 0.0
        deadline = time.monotonic() + 20
        async with w.api() as api:
            while time.monotonic() < deadline:
                peak = max(peak, await w.metric("webhook_pending_deliveries", api))
                if peak > SHARE and len(receiver.at("/stuck")) == 1:
                    break
                await asyncio.sleep(0.05)  # sampling interval of a measurement, not a sync
            assert SHARE < peak <= SHARE + HELD, peak
            for _ in range(20):
                assert await w.metric("webhook_pending_deliveries", api) <= SHARE + HELD
        assert len(receiver.at("/stuck")) == 1  # max_in_flight 1: one call, hanging

        release.set()
        got = await receiver.wait_count("/stuck", n, timeout=90)
        seqs = [r.json["data"]["seq"] for r in got]
        assert seqs == list(range(n)), "lost, repeated or reordered deliveries"
        assert "could not hand" not in w.log_text()
    finally:
        release.set()
        w.stop()
