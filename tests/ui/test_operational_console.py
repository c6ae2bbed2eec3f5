"""Issue 37 in the console: the overview lists the disabled endpoints the caller may see;
an endpoint's page shows its recent operational events (from the status stores)."""

from __future__ import annotations

from urllib.parse import quote

from playwright.async_api import BrowserContext, Page, expect

from tests.support import eventually
from tests.ui.browser import new_page
from tests.ui.scenario import Scenario


async def sign_in(page: Page, sc: Scenario, token: str) -> None:
    await page.goto(f"{sc.worker.url}/ui/#token={quote(token, safe='')}")
    await expect(page.locator("#nav")).to_be_visible()
    await page.evaluate("f => { location.hash = f; }", "#/overview")


async def test_the_overview_lists_disabled_endpoints_of_the_callers_tenant(
    browser: BrowserContext, scenario: Scenario
) -> None:
    sc = scenario
    orders = sc.ep("globex-orders")
    async with sc.worker.api() as admin:
        r = await admin.patch(f"/subscriptions/{orders}", json={"disabled": True})
        assert r.status_code == 200, r.text

        async def recorded() -> bool:
            got = await admin.get(f"/subscriptions/{orders}/operational-events")
            return got.status_code == 200 and any(
                e["type"] == "webhook.endpoint.disabled" for e in got.json()["items"]
            )

        await eventually(recorded, timeout=30, interval=0.5)
    page, errors = await new_page(browser)
    await sign_in(page, sc, sc.tokens["globex"])
    listed = page.locator("#disabled-endpoints a")
    await expect(listed).to_have_text([orders])
    await listed.click()
    await expect(page.locator("h1")).to_contain_text(orders)
    await expect(page.locator('#settings [data-field="disabled"]')).to_have_text("true")
    ops = page.locator("#operational-events tr[data-type]")
    await expect(ops.first).to_have_attribute("data-type", "webhook.endpoint.disabled")
    await expect(ops.first).to_contain_text("reason: manual")
    created = page.locator('#operational-events tr[data-type="webhook.endpoint.created"]')
    await expect(created).to_have_count(1)

    errors.assert_none()
    await page.close()

    other, other_errors = await new_page(browser)  # a tab of its own: its own session
    await sign_in(other, sc, sc.tokens["acme"])  # another tenant: not its endpoint
    await expect(other.locator("#overview-chart")).to_be_attached()
    await expect(other.locator("#disabled-endpoints")).to_be_attached()
    await expect(other.locator("#disabled-endpoints a")).to_have_count(0)
    other_errors.assert_none()
    await other.close()
