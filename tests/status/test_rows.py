"""What a batch of status records writes (:func:`rows_of`), decided without a store."""

from __future__ import annotations

import orjson

from tests.status.test_store import Rec, attempt
from webhook_stream.core.fetch import Undecodable
from webhook_stream.core.records import H_DELIVERY, H_INCARNATION, H_STATUS
from webhook_stream.core.topics import ATTEMPTS, DEADLETTER, DELIVERIES
from webhook_stream.status.rows import DeliveryRow, MinuteCount, fold, rows_of

T = 1_800_000_000.0


def delivery(off: int, did: str, at_ms: int, *, replay: bool = False, inc: str = "") -> Rec:
    headers = [(H_DELIVERY, did.encode()), (H_INCARNATION, inc.encode())]
    if replay:
        headers.append((H_STATUS, b"replay"))
    return Rec(off, b"ep1", b"{}", at_ms, headers)


def test_a_delivery_and_its_attempt_in_one_batch_fold_into_one_row() -> None:
    at = int(T * 1000)
    rows = rows_of(
        [
            (DELIVERIES, 2, delivery(7, "msg_a", at)),
            (ATTEMPTS, 2, attempt(3, "ep1", "msg_a", "retrying", T + 1)),
        ],
        {},
    )
    assert rows.n == 2 and rows.ends == {(DELIVERIES, 2): 8, (ATTEMPTS, 2): 4}
    # The row carries its attempt's key in the log (partition 2, offset 3).
    expected = DeliveryRow("msg_a", "ep1", 2, "retrying", at + 1000, at, "", "2:3;")
    assert rows.deliveries == [expected]
    (row,) = rows.attempts
    assert (row.part, row.off, row.delivery, row.outcome, row.ts_ms) == (
        2,
        3,
        "msg_a",
        "retrying",
        at + 1000,
    )
    assert rows.minutes == {("ep1", "", (at + 1000) // 60_000): MinuteCount(2, 0, 1)}


def test_records_already_applied_are_left_out_and_undecodable_ones_only_counted() -> None:
    batch = [
        (ATTEMPTS, 0, attempt(4, "ep1", "msg_old", "succeeded", T)),
        (ATTEMPTS, 0, attempt(5, "ep1", "msg_new", "succeeded", T)),
        (ATTEMPTS, 0, Undecodable(ATTEMPTS, 0, 6, 9, "codec")),
    ]
    rows = rows_of(batch, {(ATTEMPTS, 0): 5})
    assert rows.n == 2 and rows.ends == {(ATTEMPTS, 0): 10}
    assert [r.delivery for r in rows.attempts] == ["msg_new"]


def test_a_dead_letter_sets_its_delivery_and_a_replay_makes_it_pending_again() -> None:
    at = int(T * 1000)
    dead = Rec(
        9,
        b"ep1",
        orjson.dumps({"tenant_id": "acme", "dead_lettered_at": "2027-01-15T08:00:00+00:00"}),
        at,
        [(H_DELIVERY, b"msg_d"), (H_INCARNATION, b"inc_1")],
    )
    rows = rows_of(
        [
            (DEADLETTER, 1, dead),
            (DELIVERIES, 1, delivery(3, "msg_d", at + 5, replay=True, inc="inc_1")),
        ],
        {},
    )
    (row,) = rows.deliveries  # the replay is newer: pending wins
    assert (row.status, row.status_ms, row.seen_ms, row.inc) == ("pending", at + 5, at, "inc_1")
    (dead_row,) = rows.dead
    assert (dead_row.tenant, dead_row.id, dead_row.inc) == ("acme", "msg_d", "inc_1")


def test_fold_keeps_the_first_sighting_and_the_newest_status() -> None:
    rows = [
        DeliveryRow("m", "ep", 0, "pending", -1, 10, ""),
        DeliveryRow("m", "ep", 0, "retrying", 20, 20, ""),
        DeliveryRow("m", "ep", 0, "pending", -1, 30, ""),  # sets no status
        DeliveryRow("m", "ep", 0, "succeeded", 40, 40, "inc_2"),  # another incarnation
    ]
    assert fold(rows) == [
        DeliveryRow("m", "ep", 0, "retrying", 20, 10, ""),
        DeliveryRow("m", "ep", 0, "succeeded", 40, 40, "inc_2"),
    ]


def test_fold_adds_up_the_attempt_keys_of_a_delivery() -> None:
    rows = [
        DeliveryRow("m", "ep", 0, "pending", -1, 10, ""),
        DeliveryRow("m", "ep", 0, "retrying", 20, 20, "", "0:5;"),
        DeliveryRow("m", "ep", 0, "succeeded", 30, 30, "", "0:9;"),
        DeliveryRow("m", "ep", 0, "retrying", 40, 40, "inc_2", "0:11;"),
    ]
    assert fold(rows) == [
        DeliveryRow("m", "ep", 0, "succeeded", 30, 10, "", "0:5;0:9;"),
        DeliveryRow("m", "ep", 0, "retrying", 40, 40, "inc_2", "0:11;"),
    ]
