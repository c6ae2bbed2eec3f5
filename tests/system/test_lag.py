"""``webhook_consumer_lag{group,topic,partition}`` and ``webhook_consumer_lag_seconds{group}``:
both rise while a receiver is down and are back to 0 after; the status group's too."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.support import Kafka, Receiver, Worker, event, eventually, uid
from webhook_stream.broker import EmbeddedBroker

EVENTS = 12


async def samples_of(worker: Worker, name: str) -> list[Sample]:
    async with httpx.AsyncClient() as client:
        r = await client.get(worker.url + "/metrics", timeout=5)
    assert r.status_code == 200
    return [s for f in text_string_to_metric_families(r.text) if f.name == name for s in f.samples]


async def lag_of(worker: Worker) -> dict[tuple[str, str, str], float]:
    return {
        (s.labels["group"], s.labels["topic"], s.labels["partition"]): s.value
        for s in await samples_of(worker, "webhook_consumer_lag")
    }


async def age_of(worker: Worker) -> dict[str, float]:
    return {
        s.labels["group"]: s.value for s in await samples_of(worker, "webhook_consumer_lag_seconds")
    }


async def test_lag_rises_while_receiver_down_and_returns_to_zero(
    own_broker: EmbeddedBroker, own_kafka: Kafka, tmp_path: Path
) -> None:
    """A receiver that answers 503: its deliveries wait on a retry topic, uncommitted by
    the retry group until due, so lag shows them; once it answers 200 they are delivered
    and every group's lag is 0. (Deliveries parked behind a busy endpoint are counted by
    ``webhook_parked_deliveries``, not as lag: a slow receiver must not scale workers out.)"""
    down = True
    answered: list[int] = []

    def answer(_req: object) -> int:
        answered.append(503 if down else 200)
        return answered[-1]

    receiver = await Receiver(script={"/down": answer}).start()
    worker = Worker(
        own_broker.url,
        tmp_path,
        env={
            "WEBHOOK_STREAM_LAG_INTERVAL": "0.3s",
            "WEBHOOK_STREAM_RETRY_SCHEDULE": "5s,5s,5s",
            "WEBHOOK_STREAM_RETRY_JITTER": "0",
        },
    ).start()
    try:
        await worker.wait_ready()
        ep = uid("ep")
        etype = uid("lag") + ".x"
        await worker.create_subscription(id=ep, url=receiver.url("/down"), event_types=[etype])

        status = "webhook-stream-status"

        async def caught_up() -> bool:
            lag, age = await lag_of(worker), await age_of(worker)
            groups = {g for g, _, _ in lag}
            return (
                status in groups
                and groups <= age.keys()
                and not any([*lag.values(), *age.values()])
            )

        await eventually(caught_up, timeout=30)  # sampled, nothing behind yet
        for n in range(EVENTS):
            await own_kafka.send("events.lag", event(etype, id=f"e{n}"), key=b"k")

        retry = "webhook-stream-retry"

        async def behind() -> float:
            lag = await lag_of(worker)
            waiting = sum(
                v for (g, t, _), v in lag.items() if (g, t) == (retry, "webhooks.retry.5s")
            )
            return waiting if waiting >= EVENTS // 2 else 0.0

        try:
            await eventually(behind, timeout=30)
        except AssertionError:
            raise AssertionError(await lag_of(worker)) from None
        lag = await lag_of(worker)
        groups = {g for g, _, _ in lag}
        assert {"webhook-stream-deliver", "webhook-stream-fanout", retry, status} <= groups, lag
        assert all(t != "webhooks.delivery_progress" for _, t, _ in lag)

        async def retry_waits() -> float:
            return (await age_of(worker)).get(retry, 0.0)

        # The deliveries wait 5 s on the retry topic: the oldest's age is seen growing.
        assert await eventually(retry_waits, timeout=15) > 0

        assert await eventually(lambda: answered.count(503) >= EVENTS)
        down = False  # the receiver is back: every delivery succeeds on its retry
        await eventually(lambda: answered.count(200) >= EVENTS, timeout=60)
        await eventually(caught_up, timeout=30)
    finally:
        await worker.terminate()
        await receiver.stop()
