"""Load generators without Kafka or the worker: the HTTP ceilings and the baseline.

Both sign every request the way webhook-stream does (Standard Webhooks headers, HMAC-SHA256
over ``<webhook-id>.<webhook-timestamp>.<body>``), so the comparison is like for like.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from confluent_kafka import Producer

from webhook_stream.core.records import iso_now
from webhook_stream.core.settings import Settings
from webhook_stream.delivery.signing import decode_secret, sign
from webhook_stream.http.proxied import egress_client
from webhook_stream.subscriptions.model import generate_secret

#: Padding that makes a webhook body about 1 KB.
PAD = "x" * 880
USER_AGENT = "webhook-stream-bench"


def event_doc(event_id: str, event_type: str, i: int) -> dict[str, Any]:
    """An ``events.*`` JSON envelope with about 1 KB of data; ``sent_at`` is produce time."""
    return {
        "id": event_id,
        "type": event_type,
        "occurred_at": iso_now(),
        "data": {"sent_at": time.time(), "i": i, "pad": PAD},
    }


def signed_headers(key: bytes, msg_id: str, body: bytes) -> dict[str, str]:
    ts = int(time.time())
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign([key], msg_id, ts, body),
    }


def webhook_body(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {"id": doc["id"], "type": doc["type"], "timestamp": doc["occurred_at"], "data": doc["data"]}
    )


def new_session(limit: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, keepalive_timeout=30)
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        skip_auto_headers=("User-Agent",),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


@dataclass
class LoadResult:
    done: int
    errors: int
    seconds: float
    timed_out: bool

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


#: The clients a ceiling can be measured with.
CLIENTS = ("aiohttp", "webhook-stream", "webhook-stream-proxied")

Post = Callable[[str, bytes, dict[str, str]], Awaitable[bool]]


@contextlib.asynccontextmanager
async def poster(client: str, connections: int, proxy: str = "") -> AsyncIterator[Post]:
    """A POST function (True on 200) over aiohttp's client or webhook-stream's own (proxied
    through ``proxy`` for ``webhook-stream-proxied``)."""
    if client == "aiohttp":
        async with new_session(connections) as session:
            yield lambda url, body, headers: _post(session, url, body, headers)
        return
    env = {
        "WEBHOOK_STREAM_ALLOW_INSECURE_TARGETS": "1",
        "WEBHOOK_STREAM_HTTP_POOL_PER_HOST": str(connections),
    }
    if client == "webhook-stream-proxied":
        env["WEBHOOK_STREAM_EGRESS_PROXY"] = proxy
    http = egress_client(Settings.from_env(env))
    await http.start()

    async def post(url: str, body: bytes, headers: dict[str, str]) -> bool:
        return (await http.post(url, body, headers, 30.0)).status == 200

    try:
        yield post
    finally:
        await http.close()


async def ceiling(
    base_url: str,
    total: int,
    concurrency: int,
    time_limit: float,
    client: str = "aiohttp",
    proxy: str = "",
) -> LoadResult:
    """``concurrency`` lanes, one path each, one request in flight per lane; no Kafka."""
    key = decode_secret(generate_secret())
    per_lane = max(1, total // concurrency)
    deadline = time.monotonic() + time_limit
    done = errors = 0
    timed_out = False

    async with poster(client, concurrency + 10, proxy) as post:

        async def lane(i: int) -> None:
            nonlocal done, errors, timed_out
            url = f"{base_url}/ceil/{i}"
            for j in range(per_lane):
                if time.monotonic() > deadline:
                    timed_out = True
                    return
                doc = event_doc(f"evt_ceil_{i}_{j}", f"bench.ceil.e{i}", j)
                body = webhook_body(doc)
                headers = signed_headers(key, f"msg_ceil_{i}_{j}", body)
                if await post(url, body, headers):
                    done += 1
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(lane(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
    return LoadResult(done, errors, elapsed, timed_out)


async def _post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> bool:
    """POST and read the answer; True on 200."""
    async with session.post(url, data=body, headers=headers) as resp:
        await resp.read()
        return resp.status == 200


async def produce(
    producer: AIOKafkaProducer, topic: str, records: Iterator[tuple[bytes, bytes]]
) -> int:
    """Send every (key, value) without waiting for each; return once all are acknowledged."""
    futures = [await producer.send(topic, value, key=key) for key, value in records]
    await asyncio.gather(*futures)
    return len(futures)


def produce_rdkafka(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes]], rate: float = 0.0
) -> int:
    """Like :func:`produce`, with librdkafka (its C threads do the sending and most of the
    encoding): it blocks, so run it in a thread. Keys go to the partitions aiokafka and
    the Java client pick (murmur2). With ``rate``, at most that many records a second
    (handed over every 10 ms), as a service producing steadily would."""
    errors: list[Any] = []
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "partitioner": "murmur2_random",
            "queue.buffering.max.messages": 1_000_000,
        }
    )

    def done(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    n, began = 0, time.monotonic()
    for key, value in records:
        if rate and n % max(1, int(rate / 100)) == 0:
            ahead = began + n / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)  # the pace of the load, not a wait for anything
        producer.produce(topic, value, key, on_delivery=done)
        producer.poll(0)
        n += 1
    left = producer.flush(60)
    if left or errors:
        raise RuntimeError(f"librdkafka: {left} not acknowledged, errors {errors[:3]}")
    return n


async def baseline(
    bootstrap: str, topic: str, base_url: str, total: int, paths: int, time_limit: float
) -> LoadResult:
    """A hand-written relay: a group-less aiokafka consumer POSTing each event in turn.

    The events must already be on ``topic``; the clock runs from the first fetch to the last
    response.
    """
    key = decode_secret(generate_secret())
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    done = errors = 0
    timed_out = False
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        async with new_session(10) as session:
            started = time.perf_counter()
            deadline = time.monotonic() + time_limit
            while done + errors < total:
                if time.monotonic() > deadline:
                    timed_out = True
                    break
                batch = await consumer.getmany(timeout_ms=200, max_records=1000)
                for records in batch.values():
                    for record in records:
                        doc = orjson.loads(record.value)
                        body = webhook_body(doc)
                        msg_id = "msg_" + doc["id"]
                        url = f"{base_url}/base/{(done + errors) % paths}"
                        headers = signed_headers(key, msg_id, body)
                        if await _post(session, url, body, headers):
                            done += 1
                        else:
                            errors += 1
            elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
    return LoadResult(done, errors, elapsed, timed_out)
