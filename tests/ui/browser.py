"""Headless Chromium (the Debian package) driven by Playwright, for the console tests.

Playwright's own browser download is not reachable from here (nor needed): the tests use
``/usr/bin/chromium``. Without it they fail, saying what to install; they never skip.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, ConsoleMessage, Error, Page, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MISSING = (
    f"{CHROMIUM} is missing: the console tests drive the Debian Chromium package. "
    "Install it (as root) with:  apt-get install -y chromium  -- then run `make test` again."
)


def require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.fail(MISSING, pytrace=False)


@asynccontextmanager
async def chromium(user_data_dir: Path) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile in ``user_data_dir``; closed on exit."""
    require_chromium()
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(user_data_dir),
            executable_path=str(CHROMIUM),
            headless=True,
            args=ARGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            yield context
        finally:
            await context.close()


#: What Chromium logs for an HTTP error answer to fetch(): expected where a test asks for one.
_FAILED_RESOURCE = re.compile(
    r"^Failed to load resource: the server responded with a status of (\d+)"
)


@dataclass
class PageErrors:
    """Every console error and uncaught exception of a page."""

    console: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> Page:
        page.on("console", self._on_console)
        page.on("pageerror", self._on_error)
        return page

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "assert"):
            self.console.append(message.text)

    def _on_error(self, error: Error) -> None:
        self.exceptions.append(f"{error.name}: {error.message}")

    def assert_none(self, *allowed_statuses: int) -> None:
        """No exception; no console error but HTTP answers with ``allowed_statuses``."""
        assert self.exceptions == [], self.exceptions
        unexpected = []
        for text in self.console:
            m = _FAILED_RESOURCE.match(text)
            if m is None or int(m.group(1)) not in allowed_statuses:
                unexpected.append(text)
        assert unexpected == [], unexpected


async def new_page(context: BrowserContext) -> tuple[Page, PageErrors]:
    errors = PageErrors()
    page = errors.watch(await context.new_page())
    return page, errors
