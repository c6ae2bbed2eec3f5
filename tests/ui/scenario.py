"""Two tenants with healthy, failing and dead-lettered endpoints, for the console tests.

Also used by ``docs/screenshots.py``. Everything goes through the real API, the real
delivery path and a real receiver on 127.0.0.1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support import SECRETS_USED, Received, Receiver, Worker, eventually


@dataclass
class Scenario:
    """Tenants ``acme`` (3 endpoints) and ``globex`` (2), their tokens and dead letters.

    Endpoint ids are the names of :data:`ENDPOINTS`.
    """

    worker: Worker
    receiver: Receiver
    tokens: dict[str, str]
    endpoints: dict[str, dict[str, Any]]
    #: Endpoint name -> the delivery id of its first test event.
    deliveries: dict[str, str] = field(default_factory=dict)
    #: Paths answering 500 until removed from here (``/flaky`` recovers on demand).
    failing: set[str] = field(default_factory=lambda: {"/billing", "/flaky", "/globex-legacy"})

    def ep(self, name: str) -> str:
        return str(self.endpoints[name]["id"])

    def secret(self, name: str) -> str:
        return str(self.endpoints[name]["secret"])

    def answer(self, got: Received) -> web.Response:
        if got.path in self.failing:
            return web.Response(status=500, text='{"error": "database unavailable"}')
        return web.Response(status=200, text="ok")


#: name -> (tenant, path, event types, extra fields)
ENDPOINTS: dict[str, tuple[str, str, list[str], dict[str, Any]]] = {
    "acme-orders": ("acme", "/orders", ["order.*"], {"description": "Order events to the shop"}),
    "acme-billing": ("acme", "/billing", ["invoice.*"], {"max_attempts": 2}),
    "acme-flaky": ("acme", "/flaky", ["shipment.*"], {"max_attempts": 1}),
    "globex-orders": ("globex", "/globex", ["order.*"], {}),
    "globex-legacy": ("globex", "/globex-legacy", ["order.refunded"], {"max_attempts": 1}),
}


async def build(worker: Worker, receiver: Receiver) -> Scenario:
    """Create the tenants' tokens and endpoints, send one test event each, wait for them."""
    tokens = {
        t: (await worker.issue_token(t, description="console"))["token"] for t in ("acme", "globex")
    }
    sc = Scenario(worker, receiver, tokens, {})
    for path in {p for _, p, _, _ in ENDPOINTS.values()}:
        receiver.script[path] = sc.answer
    async with worker.api() as client:
        for name, (tenant, path, types, extra) in ENDPOINTS.items():
            body = {
                "id": name,
                "url": receiver.url(path),
                "event_types": types,
                "tenant_id": tenant,
                **extra,
            }
            r = await client.post("/subscriptions", json=body)
            assert r.status_code == 201, r.text
            SECRETS_USED.append(r.json()["secret"])
            sc.endpoints[name] = r.json()
        for name in ENDPOINTS:
            r = await client.post(f"/subscriptions/{sc.ep(name)}/test")
            assert r.status_code == 202, r.text
            sc.deliveries[name] = r.json()["delivery_id"]

        expected = {
            "acme-orders": "succeeded",
            "acme-billing": "dead_lettered",
            "acme-flaky": "dead_lettered",
            "globex-orders": "succeeded",
            "globex-legacy": "dead_lettered",
        }

        async def settled() -> bool:
            for name, status in expected.items():
                r = await client.get(f"/deliveries/{sc.deliveries[name]}")
                if r.status_code != 200 or r.json()["status"] != status:
                    return False
            r = await client.get("/deadletters")
            return r.status_code == 200 and len(r.json()["items"]) >= 3

        await eventually(settled, timeout=60, interval=0.3)
    return sc
