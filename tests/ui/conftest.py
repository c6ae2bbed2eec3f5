"""The console tests' own broker, worker, receiver and browser (module-scoped).

A broker of their own keeps the console's lists to what these tests created.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import BrowserContext, expect

from tests.support import Receiver, Worker
from tests.ui.browser import chromium, require_chromium
from tests.ui.scenario import Scenario, build
from webhook_stream.broker import EmbeddedBroker, free_port

expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def ui_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    require_chromium()  # before the broker starts: say what is missing first
    log = tmp_path_factory.mktemp("ui-broker") / "tansu.log"
    with EmbeddedBroker(port=free_port(), log_file=log) as b:
        yield b


@pytest.fixture(scope="module")
async def ui_worker(
    ui_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Worker]:
    w = Worker(ui_broker.url, tmp_path_factory.mktemp("ui-worker")).start()
    try:
        await w.wait_ready()
        yield w
    finally:
        w.stop()


@pytest.fixture(scope="module")
async def scenario(ui_worker: Worker) -> AsyncIterator[Scenario]:
    receiver = await Receiver().start()
    try:
        yield await build(ui_worker, receiver)
    finally:
        await receiver.stop()


@pytest.fixture(scope="module")
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BrowserContext]:
    async with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context
