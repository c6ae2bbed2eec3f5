"""Screenshots of the console for the README: ``docs/console-*.png``.

Starts an embedded broker, a worker and a receiver on 127.0.0.1, builds the console tests'
scenario (two tenants, a failing endpoint, dead letters), sends events for a few minutes so
the overview chart has something to show, then photographs the main pages in headless
Chromium (``apt-get install -y chromium``)::

    PYTHONPATH=. .venv/bin/python docs/screenshots.py            # about 3 minutes
    PYTHONPATH=. .venv/bin/python docs/screenshots.py --minutes 1
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402
from playwright.async_api import Page, expect  # noqa: E402

from tests.support import TOKEN, Kafka, Received, Receiver, Worker, event, uid  # noqa: E402
from tests.ui.browser import chromium, new_page  # noqa: E402
from tests.ui.scenario import build  # noqa: E402
from webhook_stream.broker import EmbeddedBroker, free_port  # noqa: E402

DOCS = ROOT / "docs"

#: (tenant, event type, share of the traffic)
TRAFFIC = [
    ("acme", "order.created", 0.45),
    ("acme", "invoice.paid", 0.12),  # to acme-billing, which fails now and then
    ("acme", "shipment.sent", 0.15),
    ("globex", "order.created", 0.26),
    ("globex", "order.refunded", 0.02),  # to globex-legacy, which always answers 500
]


def sometimes_failing(rng: random.Random) -> Any:
    """acme-billing for the pictures: a 500 on about a third of the requests."""

    def answer(got: Received) -> web.Response:
        if rng.random() < 0.35:
            return web.Response(status=500, text='{"error": "database unavailable"}')
        return web.Response(status=200, text="ok")

    return answer


async def traffic(kafka: Kafka, minutes: float) -> None:
    """Events at a rate that rises and falls, so the chart has a shape."""
    rng = random.Random(20)
    end = time.monotonic() + minutes * 60
    start = time.monotonic()
    while time.monotonic() < end:
        phase = (time.monotonic() - start) / 60
        rate = 4 + 3 * abs(((phase * 1.7) % 2) - 1)  # events per second
        tenant, etype, _ = rng.choices(TRAFFIC, weights=[w for *_, w in TRAFFIC])[0]
        body = event(etype, {"n": rng.randint(1, 10_000)}, id=uid("evt"), tenant_id=tenant)
        await kafka.send("events.shop", body)
        await asyncio.sleep(1 / rate)


async def shoot(page: Page, name: str) -> None:
    await page.wait_for_timeout(300)  # let the last paint land
    path = DOCS / f"console-{name}.png"
    await page.screenshot(path=str(path))  # the viewport: what one sees first
    print("wrote", path.relative_to(ROOT))


async def main(minutes: float) -> None:
    work = Path(tempfile.mkdtemp(prefix="ws-shots-"))
    with EmbeddedBroker(port=free_port(), log_file=work / "tansu.log") as broker:
        worker = Worker(broker.url, work / "worker").start()
        receiver = await Receiver().start()
        kafka = await Kafka(broker.bootstrap).start()
        try:
            await worker.wait_ready()
            sc = await build(worker, receiver)
            sc.failing.discard("/flaky")  # it recovers; its dead letter stays until replayed
            receiver.script["/billing"] = sometimes_failing(random.Random(7))
            print(f"sending events for {minutes} min ...")
            await traffic(kafka, minutes)
            async with chromium(work / "profile") as browser:
                page, errors = await new_page(browser)
                await page.set_viewport_size({"width": 1280, "height": 900})
                base = f"{worker.url}/ui/"
                await page.goto(f"{base}#token={quote(sc.tokens['acme'], safe='')}")
                await expect(page.locator("#endpoints tbody tr[data-id]")).to_have_count(3)
                await shoot(page, "endpoints")
                await page.evaluate("location.hash = '#/endpoints/acme-billing'")
                await expect(
                    page.locator("#attempts tbody tr[data-delivery]").first
                ).to_be_visible()
                await shoot(page, "endpoint")
                await page.get_by_role("button", name="Sign out").click()
                await page.fill("#token", TOKEN)
                await page.click("#signin button[type=submit]")
                await expect(page.locator("#who")).to_have_text("admin")
                await page.evaluate("location.hash = '#/deadletters'")
                await expect(
                    page.locator("#deadletters tbody tr[data-delivery]").first
                ).to_be_visible()
                await shoot(page, "deadletters")
                await page.evaluate("location.hash = '#/overview'")
                await expect(page.locator("#overview-chart rect").first).to_be_attached()
                await shoot(page, "overview")
                errors.assert_none()
        finally:
            await kafka.stop()
            await receiver.stop()
            worker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="traffic before the shots")
    asyncio.run(main(parser.parse_args().minutes))
