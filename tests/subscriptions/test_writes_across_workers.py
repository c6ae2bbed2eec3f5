"""Subscription writes from two workers: versions, If-Match, create-if-absent, auto-disable.

Two workers of one app on a broker of this module's own; every write may land on either,
and the owner of the endpoint id's partition of ``webhooks.subscription_requests`` decides.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support import SECRETS_USED, Kafka, Receiver, Worker, event, eventually, json_of, uid
from webhook_stream.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration  # starts brokers and workers itself


@pytest.fixture(scope="module")
async def pair(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Worker, Worker, Kafka]]:
    base: Path = tmp_path_factory.mktemp("writes")
    with EmbeddedBroker(port=free_port(), log_file=base / "tansu.log") as broker:
        a = Worker(broker.url, base / "a").start()
        b = Worker(broker.url, base / "b").start()
        kafka = await Kafka(broker.bootstrap).start()
        try:
            await a.wait_ready()
            await b.wait_ready()
            yield a, b, kafka
        finally:
            await kafka.stop()
            a.stop()
            b.stop()


def sub_body(ep: str, receiver: Receiver, path: str = "/w") -> dict:
    return {"id": ep, "url": receiver.url(path), "event_types": [f"{ep}.x"]}


async def test_two_workers_racing_a_create_give_one_201_and_one_409(
    pair: tuple[Worker, Worker, Kafka], receiver: Receiver
) -> None:
    a, b, kafka = pair
    async with a.api() as ca, b.api() as cb:
        for _ in range(5):
            ep = uid("race")
            ra, rb = await asyncio.gather(
                ca.post("/subscriptions", json=sub_body(ep, receiver)),
                cb.post("/subscriptions", json=sub_body(ep, receiver)),
            )
            assert sorted([ra.status_code, rb.status_code]) == [201, 409], (ra.text, rb.text)
            won, lost = (ra, rb) if ra.status_code == 201 else (rb, ra)
            SECRETS_USED.append(won.json()["secret"])
            assert won.json()["version"] == 1 and won.headers["ETag"] == '"1"'
            assert "secret" not in lost.text and won.json()["secret"] not in lost.text
            stored = [
                r for r in await kafka.read_all("webhooks.subscriptions") if r.key == ep.encode()
            ]
            assert len(stored) == 1  # the loser wrote nothing: no second secret anywhere

            async def both_agree(ep: str = ep) -> bool:
                got = [(await c.get(f"/subscriptions/{ep}")) for c in (ca, cb)]
                return all(g.status_code == 200 and g.headers["ETag"] == '"1"' for g in got)

            await eventually(both_agree, timeout=10)


async def test_stale_if_match_gives_412_on_either_worker(
    pair: tuple[Worker, Worker, Kafka], receiver: Receiver
) -> None:
    a, b, _ = pair
    ep = uid("etag")
    created = await a.create_subscription(**sub_body(ep, receiver))
    assert created["version"] == 1
    async with a.api() as ca, b.api() as cb:
        await eventually(lambda: _status(cb, ep, 200), timeout=10)
        r = await ca.patch(
            f"/subscriptions/{ep}", json={"description": "one"}, headers={"If-Match": '"1"'}
        )
        assert r.status_code == 200 and r.headers["ETag"] == '"2"' and r.json()["version"] == 2
        # b may not have applied version 2 yet; the owner refuses the stale version anyway.
        r = await cb.patch(
            f"/subscriptions/{ep}", json={"description": "two"}, headers={"If-Match": '"1"'}
        )
        assert r.status_code == 412, r.text
        err = r.json()["error"]
        assert err["code"] == "precondition_failed" and err["field"] == "If-Match"
        assert "version 2" in err["message"]
        r = await cb.delete(f"/subscriptions/{ep}", headers={"If-Match": '"1"'})
        assert r.status_code == 412
        assert (await ca.get(f"/subscriptions/{ep}")).json()["description"] == "one"
        # Without If-Match, a PATCH merges on the current version (no lost update).
        r = await cb.patch(f"/subscriptions/{ep}", json={"max_in_flight": 2})
        assert (
            r.status_code == 200 and r.json()["description"] == "one" and r.json()["version"] == 3
        )
        bad = await ca.patch(f"/subscriptions/{ep}", json={}, headers={"If-Match": "nope"})
        assert bad.status_code == 400
        assert (await ca.patch(f"/subscriptions/{ep}", json={"version": 9})).status_code == 400
        r = await ca.delete(f"/subscriptions/{ep}", headers={"If-Match": '"3"'})
        assert r.status_code == 200 and r.json()["deleted"] is True
        await eventually(lambda: _status(cb, ep, 404), timeout=10)


async def test_patch_racing_an_auto_disable_is_never_undone(
    pair: tuple[Worker, Worker, Kafka], receiver: Receiver
) -> None:
    """The endpoint answers 410 (disable at once) while the user moves it to a working URL:
    the 410 is held until the user's PATCH is applied, so the auto-disable is decided on
    the version before the fix. The user's change must survive; deliveries go on."""
    a, b, kafka = pair
    ep = uid("gone")
    etype = f"{ep}.x"
    answered_410 = asyncio.Event()
    release = asyncio.Event()

    async def gone(_req: object) -> int:
        answered_410.set()
        await asyncio.wait_for(release.wait(), 30)
        return 410

    receiver.script["/old"] = gone
    await a.create_subscription(id=ep, url=receiver.url("/old"), event_types=[etype])
    async with a.api() as ca, b.api() as cb:
        await eventually(lambda: _status(cb, ep, 200), timeout=10)
        await kafka.send("events.writes", event(etype, {"n": 1}, id=uid("e")))
        await asyncio.wait_for(answered_410.wait(), 30)
        for client in (ca, cb):  # whichever worker holds the 410, the fix is on both
            r = await client.patch(f"/subscriptions/{ep}", json={"url": receiver.url("/new")})
            assert r.status_code == 200, r.text

        async def fixed_everywhere() -> bool:
            new = receiver.url("/new")
            return await _field(ca, ep, "url", new) and await _field(cb, ep, "url", new)

        await eventually(fixed_everywhere, timeout=10)
        release.set()
        await kafka.wait_records(
            "webhooks.attempts",
            lambda r: json_of(r)["endpoint_id"] == ep and json_of(r)["status_code"] == 410,
        )
        await kafka.send("events.writes", event(etype, {"n": 2}, id=uid("e")))
        (got,) = await receiver.wait_count("/new", 1, timeout=20)
        assert got.json["data"] == {"n": 2}
        for client in (ca, cb):
            now = (await client.get(f"/subscriptions/{ep}")).json()
            assert now["url"] == receiver.url("/new") and now["disabled"] is False, now
        # The 410 was counted against version 1: its disable was refused, not applied.
        (asked,) = await kafka.wait_records(
            "webhooks.subscription_requests",
            lambda r: json_of(r)["endpoint_id"] == ep and json_of(r)["op"] == "disable",
        )
        assert json_of(asked)["if_version"] == 1
        rid = json_of(asked)["request_id"]
        (answer,) = await kafka.wait_records(
            "webhooks.subscription_results", lambda r: json_of(r)["request_id"] == rid
        )
        assert json_of(answer)["status"] == 412
        statuses = await kafka.read_all("webhooks.endpoint_status")
        assert not [r for r in statuses if json_of(r)["endpoint_id"] == ep]


async def _status(client, ep: str, code: int) -> bool:
    return (await client.get(f"/subscriptions/{ep}")).status_code == code


async def _field(client, ep: str, name: str, value: object) -> bool:
    r = await client.get(f"/subscriptions/{ep}")
    return r.status_code == 200 and r.json()[name] == value


async def test_masked_headers_are_resolved_by_the_owner_on_the_current_record(
    pair: tuple[Worker, Worker, Kafka], receiver: Receiver
) -> None:
    """Issue 18's masks with the merge on the owner: a PATCH through b that sends back the
    mask a just showed keeps a's latest value, even if b has not applied it yet."""
    a, b, kafka = pair
    ep = uid("mask")
    first, second = "key-value-number-one-1111", "key-value-number-two-2222"
    await a.create_subscription(**sub_body(ep, receiver, "/masked"), headers={"X-Key": first})
    async with a.api() as ca, b.api() as cb:
        await eventually(lambda: _status(cb, ep, 200), timeout=10)
        r = await ca.patch(f"/subscriptions/{ep}", json={"headers": {"X-Key": second}})
        assert r.status_code == 200 and r.json()["headers"] == {"X-Key": "****2222"}
        r = await cb.patch(
            f"/subscriptions/{ep}", json={"headers": {"X-Key": "****2222", "X-Team": "t"}}
        )
        assert r.status_code == 200, r.text
        assert r.json()["headers"] == {"X-Key": "****2222", "X-Team": "****"}
        bad = await cb.patch(f"/subscriptions/{ep}", json={"headers": {"X-Key": "****1111"}})
        assert bad.status_code == 400, bad.text
        assert bad.json()["error"]["field"] == "headers.X-Key"
        # A stale rotation is refused too, and the secret it would have shown is not given.
        stale = await cb.post(f"/subscriptions/{ep}/rotate-secret", headers={"If-Match": '"1"'})
        assert stale.status_code == 412 and "secret" not in stale.json()
    await kafka.send("events.writes", event(f"{ep}.x", {"n": 1}, id=uid("e")))
    (got,) = await receiver.wait_count("/masked", 1, timeout=20)
    assert got.headers["X-Key"] == second and got.headers["X-Team"] == "t"


async def test_a_tenant_token_writes_only_its_own_endpoints_on_either_worker(
    pair: tuple[Worker, Worker, Kafka], receiver: Receiver
) -> None:
    a, b, _ = pair
    mine, theirs = uid("t-own"), uid("t-other")
    await a.create_subscription(**sub_body(mine, receiver), tenant_id="acme")
    await a.create_subscription(**sub_body(theirs, receiver), tenant_id="globex")
    token = (await a.issue_token("acme"))["token"]
    async with b.api() as cb:
        cb.headers["Authorization"] = f"Bearer {token}"
        await eventually(lambda: _status(cb, mine, 200), timeout=10)
        assert (
            await cb.patch(f"/subscriptions/{mine}", json={"description": "x"})
        ).status_code == 200
        for r in (
            await cb.patch(f"/subscriptions/{theirs}", json={"description": "x"}),
            await cb.delete(f"/subscriptions/{theirs}"),
            await cb.post(f"/subscriptions/{theirs}/rotate-secret"),
        ):
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
        r = await cb.patch(f"/subscriptions/{mine}", json={"tenant_id": "globex"})
        assert r.status_code == 400 and r.json()["error"]["field"] == "tenant_id"
        r = await cb.post("/subscriptions", json={**sub_body(theirs, receiver)})
        assert r.status_code == 409  # the id is taken (by another tenant): nothing written
    async with a.api() as ca:
        assert (await ca.get(f"/subscriptions/{theirs}")).json()["description"] is None
