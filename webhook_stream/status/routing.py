"""Status queries answered where the data is: locally, or forwarded to the owner.

A worker asks its status view first. If another worker owns the endpoint's partition,
the request is forwarded there once (marked with :data:`FORWARDED`, so the owner answers
from its own store or says it cannot, and never forwards again). A delivery asked for by
id alone is looked up locally, then at each other owner. Whatever cannot be answered
with certainty -- a rebalance, a partition still catching up, an owner that does not
answer -- is a 503 with ``Retry-After``, never a partial or stale history.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from webhook_stream.core.errors import StatusUnavailable
from webhook_stream.status.process import StatusProcess

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
    return error(503, "status_unavailable", f"{reason}; retry in {RETRY_AFTER_S}s")


class StatusRouter:
    """The worker's entry point for the two status routes."""

    def __init__(self, process: StatusProcess) -> None:
        self.process = process
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def attempts(
        self, endpoint_id: str, query: dict[str, Any], *, forwarded: bool, path_qs: str, auth: str
    ) -> Answer:
        try:
            found = await self.process.attempts(endpoint_id, query, local=forwarded)
        except StatusUnavailable as exc:
            return unavailable(str(exc))
        if "forward" in found:
            return await self._forward(found["forward"], path_qs, auth)
        return self._answer(found, f"no attempts for {endpoint_id!r}")

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
