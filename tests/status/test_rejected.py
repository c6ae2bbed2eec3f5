"""Rejected records in the status store: rows, filters, tenant attribution, paging,
retention (pure units, the records built as ``core/rejected.py`` writes them)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from tests.status.test_store import Rec
from webhook_stream.core.records import RejectedRecord, SourceRef, to_iso
from webhook_stream.core.rejected import rejected_record
from webhook_stream.core.topics import ATTEMPTS, DEADLETTER, DELIVERIES, REJECTED
from webhook_stream.status import rejected as rejected_rows
from webhook_stream.status.owners import OwnerAssignor
from webhook_stream.status.rejected import rejected_page
from webhook_stream.status.store import StatusStore


def rejected(
    off: int,
    reason: str,
    value: bytes | None,
    topic: str = "events.a",
    at: float | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> Rec:
    at = time.time() if at is None else at
    record = RejectedRecord(
        reason=reason,
        source=SourceRef(topic, 0, 100 + off),
        key=None,
        value=value,
        headers=headers or [],
        rejected_at=to_iso(at),
    )
    _, encoded = rejected_record(record, 1 << 20)
    return Rec(off, b"", encoded, int(at * 1000))


def page(store: StatusStore, **query: Any) -> dict[str, Any]:
    return rejected_page(store.db, [0, 1], **query)


def test_rows_filters_tenants_and_pages(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "s.sqlite3", retention_s=3600)
    now = time.time()
    batch = [
        rejected(0, "invalid_json: unexpected character", b"{not json", at=now - 50),
        rejected(1, "missing_type", b'{"tenant_id": "acme", "data": {}}', at=now - 40),
        rejected(
            2,
            "unknown_schema: schema id 7 is not in the registry",
            b"\x00\x00\x00\x00\x07\x02",
            topic="events.b",
            at=now - 30,
        ),
        rejected(
            3,
            "unsupported_content_type: 'image/png'",
            b"\x89PNG",
            headers=[("ce_tenantid", b"beta"), ("authorization", b"Bearer s3cret-value")],
            at=now - 20,
        ),
    ]
    assert store.apply((REJECTED, 0, r) for r in batch) == 4
    everything = page(store)
    assert [i["code"] for i in everything["items"]] == [
        "unsupported_content_type",
        "unknown_schema",
        "missing_type",
        "invalid_json",
    ]
    png, schema, missing, bad = everything["items"]
    assert schema["source"] == {"topic": "events.b", "partition": 0, "offset": 102}
    assert schema["tenant_id"] is None
    assert missing["tenant_id"] == "acme" and missing["preview"].startswith('{"tenant_id"')
    assert png["tenant_id"] == "beta" and png["header_names"] == ["ce_tenantid", "authorization"]
    assert b"s3cret-value" not in orjson.dumps(everything)  # header values never shown
    assert bad["preview"] == "{not json"
    # Filters: topic, reason code, tenant (scoped), time.
    assert [i["code"] for i in page(store, topic="events.b")["items"]] == ["unknown_schema"]
    assert [i["code"] for i in page(store, reason="invalid_json")["items"]] == ["invalid_json"]
    assert [i["code"] for i in page(store, scoped=True, tenant_id="acme")["items"]] == [
        "missing_type"
    ]
    assert page(store, scoped=True, tenant_id="nobody")["items"] == []
    since = int((now - 35) * 1000)
    assert len(page(store, since_ms=since)["items"]) == 2
    assert len(page(store, until_ms=since)["items"]) == 2
    # Pages: limit + 1 rows and keys to go on from.
    first = page(store, limit=2)
    assert len(first["items"]) == 3
    rest = page(store, limit=2, after=first["keys"][1])
    assert [i["code"] for i in rest["items"]] == ["missing_type", "invalid_json"]
    # Read again after a restart: nothing doubled.
    store.apply((REJECTED, 0, r) for r in batch)
    assert len(page(store)["items"]) == 4
    store.close()


def test_retention_and_the_cap_per_partition(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(rejected_rows, "KEPT_PER_PARTITION", 3)
    store = StatusStore(tmp_path / "s.sqlite3", retention_s=3600)
    now = time.time()
    old = rejected(0, "missing_type", b"{}", at=now - 7200)
    store.apply(
        [(REJECTED, 0, old)] + [(REJECTED, 0, rejected(i, "x", b"{}")) for i in range(1, 6)]
    )
    store.expire()
    assert [i["source"]["offset"] for i in page(store)["items"]] == [105, 104, 103]
    store.forget(0)
    assert page(store)["items"] == []
    store.close()


def test_the_assignor_gives_each_member_only_the_topics_it_subscribes() -> None:
    """A rolling upgrade: a worker of the previous version tails three status topics, the
    new ones four (webhooks.rejected); aiokafka refuses a partition of a topic it does
    not subscribe, so each gets only its own, the partition numbers shared."""

    class Cluster:
        def partitions_for_topic(self, topic: str) -> set[int]:
            return set(range(4))

    old = [DELIVERIES, ATTEMPTS, DEADLETTER]
    members = {
        "a-old": ConsumerProtocolMemberMetadata(0, old, b'{"url": "http://a"}'),
        "b-new": ConsumerProtocolMemberMetadata(0, [*old, REJECTED], b'{"url": "http://b"}'),
    }
    out = OwnerAssignor("http://b", dict).assign(Cluster(), members)
    topics = {m: {t for t, _ in a.assignment} for m, a in out.items()}
    assert topics == {"a-old": set(old), "b-new": {*old, REJECTED}}
    parts = {m: {tuple(ps) for _, ps in a.assignment} for m, a in out.items()}
    assert all(len(p) == 1 for p in parts.values())  # one partition set per member
    assert sorted(p for ps in parts.values() for p in next(iter(ps))) == [0, 1, 2, 3]
