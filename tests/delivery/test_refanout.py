"""A fan-out repeated by its successor (a kill -9 before its commit) sends nothing twice.

The copies are what a successor writes: the same delivery, fanned out again from the same
source record. The delivery owner that attempted the first skips them; a retry, and
another event that reuses the id, still go out.
"""

from __future__ import annotations

from dataclasses import replace

from tests.support import Kafka, Receiver, Worker, event, uid
from webhook_stream.core.records import Delivery, SourceRef, iso_now
from webhook_stream.core.topics import DELIVERIES

SKIPPED = "webhook_duplicates_skipped_total"


async def test_a_repeated_fan_out_is_not_delivered_again(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    etype = uid("refan") + ".made"
    ep = uid("ep")
    await worker.create_subscription(id=ep, url=receiver.url(f"/{ep}"), event_types=[etype])
    await kafka.send("events.refanout", event(etype, {"n": 0}, id=uid("e")))
    await receiver.wait_count(f"/{ep}", 1)
    (record,) = await kafka.wait_records(DELIVERIES, lambda r: r.key == ep.encode())
    before = await worker.metric(SKIPPED)

    first = Delivery.decode(record.value)
    again = replace(first, created_at=iso_now())  # the successor's fan-out of the same record
    retry = replace(first, attempts=1)  # meant to go again
    src = first.event.source
    reused = replace(  # another event with the same id: another source record
        first, event=replace(first.event, source=SourceRef(src.topic, src.partition, 10**9))
    )
    for copy in (again, again, retry, reused):
        await kafka.send(DELIVERIES, copy.encode(), key=ep, headers=record.headers)
    # After the copies in the endpoint's partition, and so handled after them.
    await kafka.send("events.refanout", event(etype, {"n": 1}, id=uid("e")))

    got = await receiver.wait_count(f"/{ep}", 4)
    ids = [r.headers["webhook-id"] for r in got]
    assert ids[:3] == [first.delivery_id] * 3, ids  # first, the retry, the reused id
    assert [r.json["data"]["n"] for r in got] == [0, 0, 0, 1]
    assert len(receiver.at(f"/{ep}")) == 4  # the marker came last: nothing else follows
    assert await worker.metric(SKIPPED) == before + 2
