"""The web console in a real headless Chromium, against a real worker, broker and receiver.

What a token sees is decided by the API the page calls: a tenant token's page lists only
its tenant's endpoints and dead letters, and another tenant's endpoint opened by URL is
the API's 404. Every test also asserts that the page raised no JavaScript error.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import httpx
from playwright.async_api import BrowserContext, Dialog, Page, Route, expect

from tests.support import SECRETS_USED, TENANT_TOKENS_USED, TOKEN, eventually
from tests.tls import make_client_pki
from tests.ui.browser import new_page, require_chromium
from tests.ui.scenario import Scenario
from webhook_stream.delivery.signing import verify


def test_chromium_is_installed() -> None:
    """First, so that a missing browser is one clear failure naming the package."""
    require_chromium()


async def sign_in_by_link(page: Page, sc: Scenario, token: str) -> None:
    await page.goto(f"{sc.worker.url}/ui/#token={quote(token, safe='')}")
    await expect(page.locator("#nav")).to_be_visible()


async def go(page: Page, fragment: str) -> None:
    await page.evaluate("f => { location.hash = f; }", fragment)


async def test_tenant_sees_only_its_endpoints_a_failing_one_and_rotates_a_secret(
    browser: BrowserContext, scenario: Scenario
) -> None:
    sc = scenario
    page, errors = await new_page(browser)
    await sign_in_by_link(page, sc, sc.tokens["acme"])
    await expect(page.locator("#who")).to_have_text("tenant acme")
    # The token left the address bar (and history) for the tab's sessionStorage.
    assert "token" not in page.url
    stored = await page.evaluate("sessionStorage.getItem('webhook-stream-token')")
    assert stored == sc.tokens["acme"]

    table = page.locator("#endpoints tbody tr[data-id]")
    await expect(table).to_have_count(3)
    ids = await table.evaluate_all("rs => rs.map(r => r.dataset.id)")
    assert sorted(ids) == ["acme-billing", "acme-flaky", "acme-orders"]
    await expect(page.locator("#endpoints")).not_to_contain_text("globex")
    await expect(page.locator('tr[data-id="acme-orders"]')).to_have_attribute(
        "data-status", "enabled"
    )
    billing_row = page.locator('tr[data-id="acme-billing"]')
    await expect(billing_row).to_have_attribute("data-status", "failing")
    await expect(billing_row).to_contain_text("500")
    await expect(page.locator('tr[data-id="acme-orders"]')).to_contain_text("100 %")

    # The failing endpoint: its attempt log shows the receiver's 500 and body.
    await page.click('#endpoints a[href="#/endpoints/acme-billing"]')
    await expect(page.locator("h1")).to_contain_text("acme-billing")
    attempts = page.locator("#attempts tbody tr[data-delivery]")
    await expect(attempts).to_have_count(2)  # max_attempts 2: retried once, then failed
    await expect(attempts.first).to_contain_text("500")
    await expect(page.locator("#attempts")).to_contain_text("database unavailable")
    await page.select_option("#attempt-filters select[name=status]", "failed")
    await page.click("#attempt-filters button[type=submit]")
    await expect(page.locator("#attempts tbody tr[data-outcome]")).to_have_count(1)
    await expect(page.locator('#attempts tr[data-outcome="failed"]')).to_have_count(1)
    await page.fill("#attempt-filters input[name=since]", "1m")
    await page.fill("#attempt-filters input[name=until]", "not a time")
    await page.click("#attempt-filters button[type=submit]")
    await expect(page.locator("#error")).to_contain_text("until")  # the API's 400, shown

    # Rotate a secret: the new one is shown once and signs the next delivery.
    await go(page, "#/endpoints/acme-orders")
    await expect(page.locator("h1")).to_contain_text("acme-orders")
    await page.get_by_role("button", name="Rotate secret").click()
    secret = (await page.locator("#new-secret").inner_text()).strip()
    assert secret.startswith("whsec_") and secret != sc.secret("acme-orders")
    SECRETS_USED.append(secret)
    await page.get_by_role("button", name="Send test event").click()
    delivery_id = (await page.locator("#test-delivery").inner_text()).strip()
    got = await eventually(
        lambda: [r for r in sc.receiver.at("/orders") if r.headers.get("webhook-id") == delivery_id]
    )
    verify(secret, got[0].headers, got[0].body)  # raises if not signed with the new secret
    # Clicked at once: the status store may not have read the delivery yet (a 404 the page
    # looks up again until it is there).
    await page.click("#test-delivery")
    await expect(page.locator("#delivery-status")).to_have_text("succeeded")
    # A fragment never reaches the server: the token is in no request line of the log.
    assert sc.tokens["acme"] not in sc.worker.log_text()
    errors.assert_none(400, 404)  # the bad `until` above; the delivery not read yet
    await page.close()


async def test_tenant_replays_a_dead_letter_and_the_receiver_gets_it(
    browser: BrowserContext, scenario: Scenario
) -> None:
    sc = scenario
    page, errors = await new_page(browser)
    await sign_in_by_link(page, sc, sc.tokens["acme"])
    await go(page, "#/deadletters")
    dead = page.locator("#deadletters tbody tr[data-delivery]")
    await expect(dead).to_have_count(2)  # acme-billing and acme-flaky; not globex's
    await expect(page.locator("#deadletters")).not_to_contain_text("globex")
    flaky = sc.deliveries["acme-flaky"]
    row = page.locator(f'#deadletters tr[data-delivery="{flaky}"]')
    await expect(row).to_contain_text("acme-flaky")
    # Filter by endpoint.
    await page.fill("#dl-filters input[name=endpoint_id]", "acme-flaky")
    await page.click("#dl-filters button[type=submit]")
    await expect(dead).to_have_count(1)

    sc.failing.discard("/flaky")  # the receiver is fixed
    before = len(sc.receiver.at("/flaky"))
    await row.get_by_role("button", name="Replay").click()
    await expect(page.locator("#notice")).to_contain_text("1 re-queued")
    await expect(row).to_have_count(0)  # it leaves the list at once (it stayed, disabled)
    got = await sc.receiver.wait_count("/flaky", before + 1)
    assert got[-1].headers["webhook-id"] == flaky  # same webhook-id: receivers deduplicate

    await page.click(f'#notice a[href="#/deliveries/{flaky}"]')
    await expect(page.locator("#delivery-status")).to_have_text("succeeded")  # it polls
    await expect(page.locator('#delivery-attempts tr[data-outcome="succeeded"]')).to_have_count(1)
    await go(page, "#/deadletters")
    await expect(dead).to_have_count(1)  # a replayed delivery leaves the list
    await expect(page.locator(f'#deadletters tr[data-delivery="{flaky}"]')).to_have_count(0)
    errors.assert_none()
    await page.close()


async def test_admin_signs_in_with_the_form_and_sees_both_tenants(
    browser: BrowserContext, scenario: Scenario
) -> None:
    sc = scenario
    page, errors = await new_page(browser)
    await page.goto(f"{sc.worker.url}/ui/")
    await page.fill("#token", TOKEN)
    await page.click("#signin button[type=submit]")
    await expect(page.locator("#who")).to_have_text("admin")
    table = page.locator("#endpoints tbody tr[data-id]")
    await expect(table).to_have_count(5)
    tenants = await page.locator("#endpoints tbody tr[data-id] td:nth-child(2)").all_inner_texts()
    assert sorted(set(tenants)) == ["acme", "globex"]
    await page.fill("input[name=tenant_id]", "globex")
    await page.click("form.filters button[type=submit]")
    await expect(table).to_have_count(2)

    await go(page, "#/deadletters")
    await expect(page.locator("#deadletters tr[data-delivery]").first).to_be_visible()
    await expect(page.locator("#deadletters")).to_contain_text("globex-legacy")
    await expect(page.locator("#deadletters")).to_contain_text("acme-billing")

    await go(page, "#/overview")
    await expect(page.locator("#overview-chart rect").first).to_be_attached()
    failed = int(await page.locator("#stat-failed").inner_text())
    assert failed >= 4  # billing 2, flaky 1, legacy 1
    assert int(await page.locator("#stat-dlq").inner_text()) >= 2
    assert int(await page.locator("#stat-ok").inner_text()) >= 2
    errors.assert_none()
    await page.close()


async def test_a_tenant_overview_counts_only_its_own(
    browser: BrowserContext, scenario: Scenario
) -> None:
    sc = scenario
    page, errors = await new_page(browser)
    await sign_in_by_link(page, sc, sc.tokens["globex"])
    await go(page, "#/overview")
    await expect(page.locator("#stat-dlq")).to_have_text("1")  # globex-legacy only
    await expect(page.locator("#stat-failed")).to_have_text("1")
    # Another tenant's endpoint by URL: the API's 404, and nothing of it on the page.
    await go(page, "#/endpoints/acme-orders")
    await expect(page.locator("#error")).to_contain_text("404")
    await expect(page.locator("#error")).to_contain_text("not_found")
    await expect(page.locator("#settings")).to_have_count(0)
    errors.assert_none(404)
    await page.close()


async def test_a_wrong_token_sees_nothing(browser: BrowserContext, scenario: Scenario) -> None:
    sc = scenario
    page, errors = await new_page(browser)
    await page.goto(f"{sc.worker.url}/ui/#token=wst_not-a-real-token")
    await expect(page.locator("#error")).to_contain_text("401")
    await expect(page.locator("#signin")).to_be_visible()
    await expect(page.locator("#nav")).to_be_hidden()
    assert await page.evaluate("sessionStorage.getItem('webhook-stream-token')") is None
    # Navigating by hand to a page shows the sign-in form, never data.
    await go(page, "#/endpoints/acme-orders")
    await expect(page.locator("#signin")).to_be_visible()
    await expect(page.locator("table")).to_have_count(0)
    assert "acme" not in await page.locator("main").inner_text()
    errors.assert_none(401)
    await page.close()


async def test_a_token_revoked_while_signed_in_returns_to_the_sign_in_form(
    browser: BrowserContext, scenario: Scenario
) -> None:
    sc = scenario
    issued = await sc.worker.issue_token("acme", description="revoked in a test")
    page, errors = await new_page(browser)
    await sign_in_by_link(page, sc, issued["token"])
    await expect(page.locator("#endpoints tbody tr[data-id]")).to_have_count(3)
    async with sc.worker.api() as admin:
        r = await admin.delete(f"/tenants/acme/tokens/{issued['id']}")
        assert r.status_code in (200, 202), r.text

    async def refused() -> bool:
        async with httpx.AsyncClient(base_url=sc.worker.url) as client:
            r = await client.get("/whoami", headers={"Authorization": f"Bearer {issued['token']}"})
        return r.status_code == 401

    await eventually(refused, timeout=15)
    await page.click('#nav a[data-page="deadletters"]')
    await expect(page.locator("#signin")).to_be_visible()
    await expect(page.locator("#error")).to_contain_text("401")
    await expect(page.locator("table")).to_have_count(0)
    assert await page.evaluate("sessionStorage.getItem('webhook-stream-token')") is None
    errors.assert_none(401)
    await page.close()


async def test_strict_ordering_and_a_blocked_flow_are_shown_when_the_api_has_them(
    browser: BrowserContext, scenario: Scenario
) -> None:
    """``ordering`` and ``flow`` come with strict ordering (another change): this worker's
    answers are amended in the browser to carry them, to check how the page renders them."""
    sc = scenario
    page, errors = await new_page(browser)
    since = "2026-12-01T10:00:00.000Z"

    def amend(sub: dict) -> dict:
        if sub.get("id") == "acme-orders":
            return {**sub, "ordering": "strict"}
        return {**sub, "ordering": "best_effort"}

    async def subscriptions(route: Route) -> None:
        response = await route.fetch()
        body = await response.json()
        if "items" in body:
            body["items"] = [amend(s) for s in body["items"]]
        elif body.get("id") == "acme-orders":
            body = {**amend(body), "flow": {"blocked_by": {"delivery_id": "msg_x", "since": since}}}
        await route.fulfill(response=response, json=body)

    await page.route(re.compile(r".*/subscriptions(\?.*|/acme-orders)?$"), subscriptions)
    await sign_in_by_link(page, sc, sc.tokens["acme"])
    orders = page.locator('tr[data-id="acme-orders"]')
    await expect(orders).to_contain_text("strict")
    await expect(orders).to_contain_text("blocked")  # read from the one-endpoint GET
    await expect(page.locator('tr[data-id="acme-billing"]')).to_contain_text("best effort")
    await expect(page.locator('tr[data-id="acme-billing"]')).not_to_contain_text("blocked")
    await go(page, "#/endpoints/acme-orders")
    await expect(page.locator("#blocked")).to_contain_text("blocked since 2026-12-01 10:00:00Z")
    await expect(page.locator('[data-field="flow"]')).to_contain_text("msg_x")
    errors.assert_none()
    await page.close()


async def test_the_console_edits_disables_and_enables_without_if_match(
    browser: BrowserContext, scenario: Scenario
) -> None:
    """The console's PATCHes carry no If-Match: decided by the id's owner all the same,
    each moves the version by one and shows at once (read your writes)."""
    sc = scenario
    sent: list[dict[str, str]] = []
    page, errors = await new_page(browser)
    page.on("request", lambda r: sent.append(r.headers) if r.method == "PATCH" else None)
    await sign_in_by_link(page, sc, sc.tokens["globex"])
    async with sc.worker.api() as admin:
        before = (await admin.get("/subscriptions/globex-orders")).json()["version"]
    await go(page, "#/endpoints/globex-orders")
    await expect(page.locator("h1")).to_contain_text("globex-orders")

    await page.get_by_role("button", name="Edit").click()
    await page.fill("#edit input[name=description]", "Orders, edited in the console")
    await page.fill("#edit input[name=max_in_flight]", "3")
    await page.click("#edit button[type=submit]")
    await expect(page.locator("#notice")).to_contain_text("Saved: description, max_in_flight")
    field = page.locator('#settings [data-field="description"]')
    await expect(field).to_have_text("Orders, edited in the console")
    await expect(page.locator('#settings [data-field="max_in_flight"]')).to_have_text("3")

    await page.get_by_role("button", name="Disable").click()
    await expect(page.locator("#notice")).to_contain_text("Endpoint disabled.")
    await expect(page.locator('#settings [data-field="disabled"]')).to_have_text("true")
    await page.get_by_role("button", name="Enable").click()
    await expect(page.locator("#notice")).to_contain_text("Endpoint enabled.")
    await expect(page.locator('#settings [data-field="disabled"]')).to_have_text("false")

    assert len(sent) == 3 and not any("if-match" in h for h in sent)
    async with sc.worker.api() as admin:
        r = await admin.get("/subscriptions/globex-orders")
    assert r.json()["version"] == before + 3 and r.headers["etag"] == f'"{before + 3}"'
    assert r.json()["description"] == "Orders, edited in the console"
    assert r.json()["disabled"] is False
    errors.assert_none()
    await page.close()


async def test_the_console_sets_what_a_receiver_demands_and_never_shows_a_secret(
    browser: BrowserContext, scenario: Scenario
) -> None:
    """Signature scheme, OAuth2 and a client certificate from the edit form: secrets are
    write-only (blank keeps them), the public key is shown, rotation shows the new one."""
    sc = scenario
    client_secret = "console-client-secret-5150"
    pki = make_client_pki("console")
    key_body = pki.key.splitlines()[1]  # a line of the key's base64
    async with sc.worker.api() as admin:
        r = await admin.post(
            "/subscriptions",
            json={
                "id": "globex-receiver",
                "tenant_id": "globex",
                "url": sc.receiver.url("/globex-receiver"),
                "event_types": ["receiver.x"],
            },
        )
        assert r.status_code == 201, r.text
        SECRETS_USED.append(r.json()["secret"])
    patches: list[str] = []
    page, errors = await new_page(browser)
    page.on("request", lambda q: patches.append(q.post_data or "") if q.method == "PATCH" else None)
    await sign_in_by_link(page, sc, sc.tokens["globex"])
    await go(page, "#/endpoints/globex-receiver")
    await expect(page.locator("h1")).to_contain_text("globex-receiver")

    await page.get_by_role("button", name="Edit").click()
    await page.select_option("#edit select[name=signature_scheme]", "ed25519")
    await page.select_option("#edit select[name=auth_type]", "oauth2_client_credentials")
    await page.fill("#edit input[name=auth_token_url]", "https://auth.example.com/token")
    await page.fill("#edit input[name=auth_client_id]", "console-client")
    await page.fill("#edit input[name=auth_client_secret]", client_secret)
    await page.fill("#edit textarea[name=tls_client_cert]", pki.cert)
    await page.fill("#edit textarea[name=tls_client_key]", pki.key)
    await page.click("#edit button[type=submit]")
    await expect(page.locator("#notice")).to_contain_text("Saved: signature_scheme, auth, tls")
    public_key = page.locator('#settings [data-field="public_key"]')
    await expect(public_key).to_have_text(re.compile(r"^whpk_"))
    await expect(page.locator('#settings [data-field="auth"]')).to_have_text(
        "OAuth2 client credentials: console-client at https://auth.example.com/token "
        "(secret ****, client auth basic)"
    )
    await expect(page.locator('#settings [data-field="tls"]')).to_have_text(
        "client certificate (key ****)"
    )

    # Edit again: the secret inputs are blank; leaving them blank keeps the values.
    await page.get_by_role("button", name="Edit").click()
    assert await page.input_value("#edit input[name=auth_client_secret]") == ""
    assert await page.input_value("#edit textarea[name=tls_client_key]") == ""
    await page.fill("#edit input[name=auth_client_auth]", "body")
    await page.click("#edit button[type=submit]")
    await expect(page.locator("#notice")).to_contain_text("Saved: auth")
    async with sc.worker.api() as admin:
        now = (await admin.get("/subscriptions/globex-receiver")).json()
    assert now["auth"]["client_auth"] == "body" and now["auth"]["client_id"] == "console-client"
    assert now["tls"]["client_cert"].strip() == pki.cert.strip()

    old_key = await public_key.text_content()
    await page.get_by_role("button", name="Rotate secret").click()
    await expect(page.locator("#new-public-key")).to_have_text(re.compile(r"^whpk_"))
    assert await page.locator("#new-public-key").text_content() != old_key
    SECRETS_USED.append(str(await page.locator("#new-secret").text_content()))

    assert len(patches) == 2 and client_secret in patches[0] and key_body in patches[0]
    assert client_secret not in patches[1] and key_body not in patches[1]
    await go(page, "#/endpoints/globex-receiver")
    await expect(page.locator("h1")).to_contain_text("globex-receiver")
    html = await page.content()
    assert client_secret not in html and key_body not in html
    for needle in (client_secret, key_body):
        assert needle not in sc.worker.log_text()
    errors.assert_none()
    await page.close()


async def test_a_link_with_another_token_asks_before_switching_the_session(
    browser: BrowserContext, scenario: Scenario
) -> None:
    sc = scenario
    page, errors = await new_page(browser)
    await sign_in_by_link(page, sc, sc.tokens["acme"])
    await expect(page.locator("#who")).to_have_text("tenant acme")
    asked: list[str] = []

    async def decline(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", decline)
    # Declined: still acme, in the page and in the tab's storage.
    await go(page, "#token=" + quote(sc.tokens["globex"], safe=""))
    await eventually(lambda: asked, timeout=10)
    assert "tenant acme" in asked[0] and sc.tokens["globex"] not in asked[0]
    await expect(page.locator("#endpoints tbody tr[data-id]")).to_have_count(3)
    await expect(page.locator("#who")).to_have_text("tenant acme")
    assert "token" not in page.url
    stored = await page.evaluate("sessionStorage.getItem('webhook-stream-token')")
    assert stored == sc.tokens["acme"]
    # A reload with another token in the link asks too (the stored session is acme's).
    await page.goto(f"{sc.worker.url}/ui/#token={quote(sc.tokens['globex'], safe='')}")
    await eventually(lambda: len(asked) == 2, timeout=10)
    await expect(page.locator("#who")).to_have_text("tenant acme")
    page.remove_listener("dialog", decline)

    async def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)
    await go(page, "#token=" + quote(sc.tokens["globex"], safe=""))
    await expect(page.locator("#who")).to_have_text("tenant globex")
    assert len(asked) == 3
    # The same token again is no switch: nothing to ask.
    await go(page, "#token=" + quote(sc.tokens["globex"], safe=""))
    await expect(page.locator("#who")).to_have_text("tenant globex")
    assert len(asked) == 3
    errors.assert_none()
    await page.close()


async def test_the_api_docs_render_under_their_content_security_policy(
    browser: BrowserContext, scenario: Scenario
) -> None:
    """/docs has the console's headers (CSP, no framing); Swagger UI still renders."""
    page, errors = await new_page(browser)
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    response = await page.goto(f"{scenario.worker.url}/docs")
    assert response is not None
    headers = await response.all_headers()
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text(
        "webhook-stream management API"
    )
    await expect(page.locator(".opblock").first).to_be_visible()
    # No CSP refusal (Chromium logs each as a console error, which fails this); the one
    # 404 is the browser's own /favicon.ico (not a request of the page).
    assert missing == [], missing
    errors.assert_none(404)
    await page.close()


async def test_zz_no_token_or_secret_in_the_worker_log(scenario: Scenario) -> None:
    """Last here (tests/ui runs after tests/system's session-wide scan): the console's
    worker logged no token and no signing secret, though the page sent them all day."""
    log = scenario.worker.log_text()
    assert log
    for needle in [TOKEN, *TENANT_TOKENS_USED, *SECRETS_USED]:
        assert needle not in log
