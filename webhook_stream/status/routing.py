"""Status queries answered where the data is: locally, or forwarded to the owner.

A worker asks its status view first. If another worker owns the endpoint's partition,
the request is forwarded there once (marked with :data:`FORWARDED`, so the owner answers
from its own store or says it cannot, and never forwards again). A delivery asked for by
id alone is looked up locally, then at each other owner. Whatever cannot be answered
with certainty -- a rebalance, a partition still catching up, an owner that does not
answer -- is a 503 with ``Retry-After``, never a partial or stale history.

The console's summaries (dead letters, per-endpoint counters, the overview) span every
partition: each owner answers for the partitions it serves (its *share*, with the list of
partitions it covers), and the asking worker merges the shares; unless together they cover
every partition, the answer is a 503.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from webhook_stream.core.errors import StatusUnavailable
from webhook_stream.status.process import StatusProcess
from webhook_stream.status.stats import overview_body

__all__ = ["FORWARDED", "RETRY_AFTER_S", "Answer", "StatusRouter"]

log = logging.getLogger(__name__)

#: Header on a forwarded status query: the receiver answers from its own store only.
FORWARDED = "X-Webhook-Stream-Forwarded"
#: What a 503 tells the client to wait; a rebalance takes a few seconds on the defaults.
RETRY_AFTER_S = 2
_FORWARD_TIMEOUT = 5.0


@dataclass
class Answer:
    """An HTTP answer for a status route."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def error(status: int, code: str, message: str, field_name: str | None = None) -> Answer:
    err: dict[str, Any] = {"code": code, "message": message}
    if field_name is not None:
        err["field"] = field_name
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else {}
    return Answer(status, {"error": err}, headers)


def unavailable(reason: str) -> Answer:
    return error(503, "unavailable", f"{reason}; retry in {RETRY_AFTER_S}s")


class StatusRouter:
    """The worker's entry point for the two status routes."""

    def __init__(self, process: StatusProcess) -> None:
        self.process = process
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def attempts(
        self,
        endpoint_id: str,
        query: dict[str, Any],
        *,
        forwarded: bool,
        path_qs: str,
        auth: str,
        incarnation: str = "",
    ) -> Answer:
        """A page of attempts of the endpoint's ``incarnation`` ('' for none)."""
        try:
            found = await self.process.attempts(
                endpoint_id, query, local=forwarded, incarnation=incarnation
            )
        except StatusUnavailable as exc:
            return unavailable(str(exc))
        if "forward" in found:
            return await self._forward(found["forward"], path_qs, auth)
        return self._answer(found, f"no attempts for {endpoint_id!r}")

    async def operational(
        self, endpoint_id: str, *, forwarded: bool, path_qs: str, auth: str, incarnation: str = ""
    ) -> Answer:
        """The recent operational events of the endpoint's ``incarnation``."""
        try:
            found = await self.process.operational(endpoint_id, incarnation, local=forwarded)
        except StatusUnavailable as exc:
            return unavailable(str(exc))
        if "forward" in found:
            return await self._forward(found["forward"], path_qs, auth)
        return self._answer(found, f"no operational events for {endpoint_id!r}")

    async def delivery(
        self,
        delivery_id: str,
        endpoint_id: str | None,
        *,
        forwarded: bool,
        path_qs: str,
        auth: str,
    ) -> Answer:
        try:
            found = await self.process.delivery(delivery_id, endpoint_id, local=forwarded)
        except StatusUnavailable as exc:
            return unavailable(str(exc))
        missing = f"no delivery {delivery_id!r} in the status retention"
        if "forward" in found:
            return await self._forward(found["forward"], path_qs, auth)
        if "ask" in found:
            answers = await asyncio.gather(*(self._forward(u, path_qs, auth) for u in found["ask"]))
            for answer in answers:
                if answer.status == 200:
                    return answer
            if all(a.status == 404 for a in answers):
                return error(404, "not_found", missing)
            return unavailable("a worker owning status partitions did not answer")
        return self._answer(found, missing)

    # -- summaries over every partition
    async def deadletters(
        self, query: dict[str, Any], *, forwarded: bool, path_qs: str, auth: str
    ) -> Answer:
        """Dead letters, newest first: ``{"items", "next"}`` (``next``: the last key)."""
        return await self._page("deadletters", query, forwarded, path_qs, auth)

    async def rejected(
        self, query: dict[str, Any], *, forwarded: bool, path_qs: str, auth: str
    ) -> Answer:
        """Rejected records, newest first, as :meth:`deadletters`."""
        return await self._page("rejected", query, forwarded, path_qs, auth)

    async def _page(
        self, op: str, query: dict[str, Any], forwarded: bool, path_qs: str, auth: str
    ) -> Answer:
        shares = await self._gather(op, (query,), forwarded, path_qs, auth)
        if isinstance(shares, Answer):
            return shares
        merged = sorted(
            (
                (k, item)
                for share in shares
                for k, item in zip(share["keys"], share["items"], strict=True)
            ),
            key=lambda pair: pair[0],
            reverse=True,
        )
        limit = query.get("limit", 50)
        page = merged[:limit]
        nxt = page[-1][0] if len(merged) > limit else None
        return Answer(200, {"items": [item for _, item in page], "next": nxt})

    async def endpoint_stats(
        self, scopes: list[list[str]], *, forwarded: bool, path_qs: str, auth: str
    ) -> Answer:
        """Counters of ``[endpoint id, incarnation]`` pairs (one incarnation per id)."""
        shares = await self._gather("endpoint_stats", (scopes,), forwarded, path_qs, auth)
        if isinstance(shares, Answer):
            return shares
        by_id = {item["endpoint_id"]: item for share in shares for item in share}
        items = [by_id[e] for e, _ in scopes if e in by_id]
        return Answer(200, {"items": items, "next": None})

    async def overview(
        self, scopes: list[list[str]] | None, *, forwarded: bool, path_qs: str, auth: str
    ) -> Answer:
        """Attempts per minute and dead letters of these endpoint incarnations (None: all)."""
        shares = await self._gather("overview", (scopes,), forwarded, path_qs, auth)
        if isinstance(shares, Answer):
            return shares
        return Answer(200, overview_body(shares, int(time.time() * 1000)))

    async def _gather(
        self, op: str, args: tuple[Any, ...], forwarded: bool, path_qs: str, auth: str
    ) -> list[Any] | Answer:
        """Every owner's share of ``op``; an :class:`Answer` when that is not all of it.

        Forwarded: this worker's share alone, as ``{"share", "covered"}``.
        """
        try:
            found = await getattr(self.process, op)(*args)
        except StatusUnavailable as exc:
            return unavailable(str(exc))
        if "ok" not in found:
            return unavailable(str(found.get("unavailable", "status unavailable")))
        if forwarded:
            return Answer(200, {"share": found["ok"], "covered": found["covered"]})
        answers = await asyncio.gather(
            *(self._forward(url, path_qs, auth) for url in found["others"])
        )
        shares, covered = [found["ok"]], set(found["covered"])
        for answer in answers:
            if answer.status != 200 or "share" not in answer.body:
                return unavailable("a worker owning status partitions did not answer")
            shares.append(answer.body["share"])
            covered.update(answer.body["covered"])
        missing = set(range(found["partitions"])) - covered
        if missing:
            return unavailable(f"status partitions {sorted(missing)} are catching up")
        return shares

    @staticmethod
    def _answer(found: dict[str, Any], missing: str) -> Answer:
        if "ok" in found:
            return Answer(200, found["ok"])
        if "missing" in found:
            return error(404, "not_found", missing)
        return unavailable(str(found.get("unavailable", "status unavailable")))

    async def _forward(self, base_url: str, path_qs: str, auth: str) -> Answer:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=_FORWARD_TIMEOUT)
            )
        headers = {FORWARDED: "1", "Authorization": auth}
        try:
            async with self._session.get(base_url + path_qs, headers=headers) as r:
                body = orjson.loads(await r.read())
                keep = {k: v for k, v in r.headers.items() if k.lower() == "retry-after"}
                return Answer(r.status, body, keep)
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            # The owner died or is leaving: the group will move its partitions.
            log.info("status owner %s did not answer: %s", base_url, type(exc).__name__)
            return unavailable("the worker owning this status partition did not answer")
