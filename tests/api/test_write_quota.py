"""A tenant's share of the API's writes (issue 28): a tenant token that writes in a loop
gets 429 ``rate_limited`` with ``Retry-After`` once its burst is spent, at the production
defaults, while another tenant and the admin write on unaffected; reads are never counted."""

from __future__ import annotations

import httpx

from tests.api.conformance import Conformance
from tests.support import TOKEN, Receiver, Worker, uid
from webhook_stream.api.tenancy.quota import WriteQuota
from webhook_stream.core.settings import Settings


def test_bucket_allows_the_burst_then_the_rate() -> None:
    q = WriteQuota(rate_per_s=2.0, burst=3)
    assert [q.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert q.take("a", 0.0) == 0.5  # one token comes back after 1/rate
    assert q.take("b", 0.0) == 0.0  # another tenant has its own bucket
    assert q.take("a", 0.5) == 0.0
    assert q.take("a", 0.5) > 0
    assert q.take("a", 100.0) == 0.0  # refilled, never beyond the burst
    assert [q.take("a", 100.0) for _ in range(3)][-1] > 0


def test_buckets_are_bounded_and_forgetting_only_refills() -> None:
    q = WriteQuota(rate_per_s=1.0, burst=1, max_tenants=100)
    for i in range(1000):
        q.take(f"t{i}", 0.0)
    assert len(q) == 100
    assert q.take("t999", 0.0) > 0  # the recent ones are remembered
    assert q.take("t0", 0.0) == 0.0  # a forgotten one starts full


def test_invalid_quota_refused() -> None:
    for rate, burst in ((0.0, 1), (1.0, 0), (-1.0, 5)):
        try:
            WriteQuota(rate, burst)
        except ValueError:
            continue
        raise AssertionError((rate, burst))


async def test_a_tenant_writing_in_a_loop_gets_429_others_do_not(
    worker: Worker, receiver: Receiver
) -> None:
    settings = Settings()
    burst = settings.tenant_write_burst  # the production defaults: 50, then 10/s
    ta, tb = uid("quota-a"), uid("quota-b")
    tok_a = (await worker.issue_token(ta))["token"]
    tok_b = (await worker.issue_token(tb))["token"]
    async with httpx.AsyncClient(base_url=worker.url, timeout=30) as http:
        doc = (await http.get("/openapi.json")).json()
    conformance = Conformance(doc)
    a = conformance.client(worker.url, tok_a)
    b = conformance.client(worker.url, tok_b)
    admin = conformance.client(worker.url, TOKEN)
    async with a, b, admin:
        r = await a.post("/subscriptions", json={"url": receiver.url("/q"), "event_types": ["q.x"]})
        assert r.status_code == 201, r.text
        ep = r.json()["id"]
        limited = None
        for i in range(burst * 3):  # bounded: far fewer than 3 x burst fit in the time taken
            r = await a.post(f"/subscriptions/{ep}/test")
            if r.status_code == 429:
                limited = (i, r)
                break
            assert r.status_code == 202, r.text
        assert limited is not None, "a tenant's writes were never limited"
        i, r = limited
        assert i >= burst - 1, i  # the whole burst went through first
        error = r.json()["error"]
        assert error["code"] == "rate_limited" and "Retry-After" in error["message"]
        assert int(r.headers["Retry-After"]) >= 1
        # Reads are not writes; another tenant and the admin are not limited by it.
        assert (await a.get(f"/subscriptions/{ep}")).status_code == 200
        r = await b.post("/subscriptions", json={"url": receiver.url("/q"), "event_types": ["q.x"]})
        assert r.status_code == 201, r.text
        assert (await b.post(f"/subscriptions/{r.json()['id']}/test")).status_code == 202
        assert (await admin.post(f"/subscriptions/{ep}/test")).status_code == 202
        assert (await admin.delete(f"/subscriptions/{ep}")).status_code in (200, 202)
