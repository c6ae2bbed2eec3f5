"""Events near the real default size limit never stop a worker (issue 16).

The shared test worker lowers ``MAX_EVENT_BYTES`` to 20,000; these tests run a worker of
their own at the production default (1 MiB), on a broker of their own, and produce
events just under and just over it with a producer whose own limit is larger.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.support import Kafka, Receiver, Worker, event, json_of, uid
from webhook_stream.broker import EmbeddedBroker
from webhook_stream.core.errors import ConfigError
from webhook_stream.core.produce import record_size
from webhook_stream.core.records import RejectedRecord, SourceRef
from webhook_stream.core.rejected import rejected_record
from webhook_stream.core.schemas import conforms
from webhook_stream.core.settings import Settings

LIMIT = Settings().max_event_bytes  # the real default, 1 MiB
DEFAULT_LIMIT_ENV = {"WEBHOOK_STREAM_MAX_EVENT_BYTES": str(LIMIT)}


def padded(etype: str, size: int, **extra: Any) -> bytes:
    """A valid JSON envelope of exactly ``size`` bytes."""
    base = orjson.dumps(event(etype, {"pad": ""}, **extra))
    value = orjson.dumps(event(etype, {"pad": "x" * (size - len(base))}, **extra))
    assert len(value) == size
    return value


async def test_oversized_events_are_rejected_and_the_same_worker_keeps_delivering(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    w = Worker(own_broker.url, tmp_path / "w", env=DEFAULT_LIMIT_ENV).start()
    big = AIOKafkaProducer(bootstrap_servers=own_broker.bootstrap, max_request_size=4 * LIMIT)
    await big.start()
    try:
        await w.wait_ready()
        etype = uid("big") + ".created"
        paths = ["/a", "/b", "/c"]
        for i, path in enumerate(paths):
            await w.create_subscription(id=f"ep{i}", url=receiver.url(path), event_types=[etype])
        key = uid("k").encode()
        sent = {
            # invalid JSON just under the limit: its rejected record (base64) cannot fit
            "invalid_under": b"{" + b"x" * (LIMIT - 64),
            # anything just over the limit
            "invalid_over": b"{" + b"x" * LIMIT,
            "valid_over": padded(etype, LIMIT + 1, id="e-over"),
            # valid and under the limit, but its delivery records are not
            "valid_under": padded(etype, LIMIT - 64, id="e-under"),
        }
        where: dict[str, tuple[int, int]] = {}
        for name, value in sent.items():
            md = await big.send_and_wait("events.big", value, key=key)
            where[name] = (md.partition, md.offset)
        # A large event whose records do fit is delivered, to every endpoint.
        fits = padded(etype, LIMIT // 2, id="e-half")
        await big.send_and_wait("events.big", fits, key=key)
        # Then a normal event: the same worker delivers it within seconds.
        await own_kafka.send("events.big", event(etype, {"n": 1}, id="e-normal"), key=key)
        for path in paths:
            await receiver.wait_count(path, 2, timeout=30)
        assert w.proc is not None and w.proc.poll() is None, w.log_tail()
        for path in paths:
            ids = [r.json["id"] for r in receiver.at(path)]
            assert ids == ["e-half", "e-normal"], (path, ids)
            assert len(receiver.at(path)[0].json["data"]["pad"]) > LIMIT // 2 - 200

        def ours(r: Any) -> bool:
            return json_of(r)["source"]["topic"] == "events.big"

        rejected = [
            json_of(r)
            for r in await own_kafka.wait_records("webhooks.rejected", ours, count=4, timeout=30)
        ]
        assert len(rejected) == 4, [r["reason"] for r in rejected]
        for name, (partition, offset) in where.items():
            (rec,) = [
                r
                for r in rejected
                if (r["source"]["partition"], r["source"]["offset"]) == (partition, offset)
            ]
            assert rec["reason"].startswith("too_large"), (name, rec["reason"])
            assert conforms("rejected", rec), name
            value = base64.b64decode(rec["value_b64"])
            # As much of the original as fits: a prefix of it, most of a record's room.
            assert sent[name].startswith(value), name
            assert len(value) > LIMIT // 2, (name, len(value))
            assert rec["value_bytes"] == len(sent[name])
            assert rec["truncated"] is True
            assert base64.b64decode(rec["key_b64"]) == key
        assert "MessageSizeTooLarge" not in w.log_text()
    finally:
        await big.stop()
        w.stop()


def test_max_event_bytes_over_the_producer_limit_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="WEBHOOK_STREAM_MAX_EVENT_BYTES") as info:
        Settings.from_env({"WEBHOOK_STREAM_MAX_EVENT_BYTES": str(2 * LIMIT)})
    assert "WEBHOOK_STREAM_MAX_RECORD_BYTES" in str(info.value)
    raised = Settings.from_env(
        {
            "WEBHOOK_STREAM_MAX_EVENT_BYTES": str(2 * LIMIT),
            "WEBHOOK_STREAM_MAX_RECORD_BYTES": str(3 * LIMIT),
        }
    )
    assert raised.max_record_bytes == 3 * LIMIT


def test_a_rejected_record_keeps_what_fits_and_always_its_source() -> None:
    limit = 100_000
    source = SourceRef("events.x", 3, 77)
    small = RejectedRecord("invalid_json: x", source, b"k", b"v" * 10, [("h", b"1")])
    key, value = rejected_record(small, limit)
    doc = orjson.loads(value)
    assert (key, doc["truncated"], doc["value_bytes"], doc["reason"]) == (
        b"k",
        False,
        10,
        "invalid_json: x",
    )
    huge_headers = [("h", b"x" * 60_000), ("i", b"y" * 60_000)]
    big = RejectedRecord("missing_type", source, b"k" * 200_000, b"v" * 300_000, huge_headers)
    key, value = rejected_record(big, limit)
    doc = orjson.loads(value)
    assert record_size(key, value) <= limit
    assert doc["reason"] == "too_large: missing_type"
    assert doc["source"] == {"topic": "events.x", "partition": 3, "offset": 77}
    assert doc["truncated"] is True and doc["value_bytes"] == 300_000
    assert doc["headers"] == [] and key is None  # neither fit beside the source
    assert len(base64.b64decode(doc["value_b64"])) > limit // 2
    assert conforms("rejected", doc)
