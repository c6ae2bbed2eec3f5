"""The console's event-type pages, type picker and filter check, in headless Chromium
against a real worker and broker (this module's own: the catalog is broker-wide)."""

from __future__ import annotations

import json
from urllib.parse import quote

from playwright.async_api import BrowserContext, Page, expect

from tests.support import SECRETS_USED, Receiver, Worker, eventually
from tests.ui.browser import new_page

SCHEMA = {
    "type": "object",
    "description": "An order as placed in the shop.",
    "required": ["amount", "customer"],
    "properties": {
        "amount": {"type": "number", "minimum": 0, "description": "Total in cents"},
        "customer": {
            "type": "object",
            "properties": {"country": {"type": "string", "enum": ["DE", "FR", "US"]}},
        },
    },
}
EXAMPLE = {"amount": 4200, "customer": {"country": "DE"}}


async def _setup(worker: Worker, receiver: Receiver) -> str:
    """The catalog, a tenant endpoint with a filter; returns the tenant's token."""
    async with worker.api() as admin:
        r = await admin.put(
            "/event-types/order.created",
            json={"description": "An order was placed.", "schema": SCHEMA, "examples": [EXAMPLE]},
        )
        assert r.status_code == 201, r.text
        r = await admin.put(
            "/event-types/order.refunded", json={"description": "Old refunds", "deprecated": True}
        )
        assert r.status_code == 201, r.text
    token = (await worker.issue_token("shop"))["token"]
    async with worker.api() as admin:
        r = await admin.post(
            "/subscriptions",
            json={
                "id": "shop-orders",
                "url": receiver.url("/shop"),
                "event_types": ["order.created"],
                "tenant_id": "shop",
                "filter": {"data": {"amount": {"$gte": 1000}}},
            },
        )
        assert r.status_code == 201, r.text
        SECRETS_USED.append(r.json()["secret"])

        async def status_view_up() -> bool:
            # Until the status view has loaded, /endpoint-stats answers 503 (the page says
            # so too); this test is about the catalog and the filter, not that wait.
            r = await admin.get("/endpoint-stats", params={"ids": "shop-orders"})
            return r.status_code == 200

        await eventually(status_view_up, timeout=60, interval=0.3)
    return token


async def _sign_in(page: Page, worker: Worker, token: str) -> None:
    await page.goto(f"{worker.url}/ui/#token={quote(token, safe='')}")
    await expect(page.locator("#nav")).to_be_visible()


async def test_catalog_pages_filter_check_and_type_picker(
    browser: BrowserContext, ui_worker: Worker
) -> None:
    receiver = await Receiver().start()
    try:
        token = await _setup(ui_worker, receiver)
        page, errors = await new_page(browser)
        await _sign_in(page, ui_worker, token)

        # The catalog, as a tenant sees it: a list, then one type's schema, readably.
        await page.get_by_role("link", name="Event types").click()
        rows = page.locator("#event-types tbody tr[data-name]")
        await expect(rows).to_have_count(2)
        refunded = page.locator('tr[data-name="order.refunded"]')
        await expect(refunded).to_contain_text("deprecated")
        await page.get_by_role("link", name="order.created").click()
        await expect(page.locator("h1")).to_contain_text("order.created")
        await expect(page.locator("#type-description")).to_have_text("An order was placed.")
        amount = page.locator('#schema-table tr[data-path="amount"]')
        await expect(amount).to_contain_text("number")
        await expect(amount).to_contain_text("required")
        await expect(amount).to_contain_text("minimum: 0")
        await expect(amount).to_contain_text("Total in cents")
        country = page.locator('#schema-table tr[data-path="customer.country"]')
        await expect(country).to_contain_text('enum: ["DE","FR","US"]')
        example = await page.locator("pre.example").first.text_content()
        assert json.loads(example or "") == EXAMPLE

        # The endpoint page: its filter, and the check against a pasted event (prefilled
        # with the catalog's example).
        await page.evaluate("() => { location.hash = '#/endpoints/shop-orders'; }")
        await expect(page.locator("#filter-shown")).to_contain_text('"$gte": 1000')
        await expect(page.locator('#settings [data-field="filter"]')).to_contain_text("$gte")
        prefilled = json.loads(await page.locator("#check-event").input_value())
        assert prefilled["type"] == "order.created" and prefilled["data"] == EXAMPLE
        await page.click("#check-filter")
        await expect(page.locator("#filter-result")).to_have_attribute("data-matches", "true")
        await page.fill("#check-event", json.dumps({"amount": 5}))  # just the data
        await page.click("#check-filter")
        await expect(page.locator("#filter-result")).to_have_attribute("data-matches", "false")
        await expect(page.locator("#filter-result")).to_contain_text("does not match")
        # A webhook body as receivers get it is read as the event.
        body = {"id": "evt_1", "type": "order.created", "timestamp": "2026-01-01T00:00:00Z"}
        await page.fill("#check-event", json.dumps({**body, "data": {"amount": 1500}}))
        await page.click("#check-filter")
        await expect(page.locator("#filter-result")).to_have_attribute("data-matches", "true")

        # An edited, invalid filter: the check names its path, as a save would.
        await page.get_by_role("button", name="Edit").click()
        await page.fill("#filter-input", json.dumps({"data": {"amount": {"$regex": "^4"}}}))
        await page.click("#check-filter")
        await expect(page.locator("#error")).to_contain_text("filter.data.amount.$regex")

        # Pick a type from the catalog and save a new filter: the warning comes back.
        await page.select_option("#type-picker", "order.refunded")
        types = page.locator("#edit input[name=event_types]")
        await expect(types).to_have_value("order.created, order.refunded")
        await page.fill("#filter-input", json.dumps({"data": {"customer": {"country": "FR"}}}))
        await page.click("#edit button[type=submit]")
        await expect(page.locator("#notice")).to_contain_text("Saved: event_types, filter")
        await expect(page.locator("#warnings")).to_contain_text("'order.refunded' is deprecated")
        await expect(page.locator("#filter-shown")).to_contain_text('"country": "FR"')
        await page.click("#check-filter")  # the prefilled example is from DE
        await expect(page.locator("#filter-result")).to_have_attribute("data-matches", "false")
        async with ui_worker.api() as admin:
            saved = (await admin.get("/subscriptions/shop-orders")).json()
        assert saved["filter"] == {"data": {"customer": {"country": "FR"}}}
        assert saved["event_types"] == ["order.created", "order.refunded"]
        errors.assert_none(400)
        await page.close()
    finally:
        await receiver.stop()
