"""Session fixtures: one embedded broker on a free port, one worker, Kafka helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support import Kafka, Receiver, Worker
from webhook_stream.broker import EmbeddedBroker, free_port

# A test that uses one of these runs against a real broker: marked ``integration``, so
# that ``make test-unit`` (``-m "not integration"``) leaves it out. Tests that start a
# broker or worker themselves carry ``pytestmark = pytest.mark.integration``.
_BROKER_FIXTURES = frozenset(
    {
        "broker",
        "kafka",
        "worker",
        "own_broker",
        "own_kafka",
        "ui_broker",
        "ui_worker",
        "iso_broker",
        "iso",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _BROKER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(port=free_port(), log_file=log) as b:
        yield b


@pytest.fixture(scope="session")
async def kafka(broker: EmbeddedBroker) -> AsyncIterator[Kafka]:
    k = await Kafka(broker.bootstrap).start()
    yield k
    await k.stop()


@pytest.fixture(scope="session")
async def worker(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Worker]:
    """The shared worker: retry schedule 1s,2s, insecure targets allowed, test token."""
    w = Worker(broker.url, tmp_path_factory.mktemp("worker")).start()
    try:
        await w.wait_ready()
        yield w
    finally:
        w.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of the test's own, for tests whose workers must not share topics."""
    with EmbeddedBroker(port=free_port(), log_file=tmp_path / "tansu.log") as b:
        yield b


@pytest.fixture
async def own_kafka(own_broker: EmbeddedBroker) -> AsyncIterator[Kafka]:
    k = await Kafka(own_broker.bootstrap).start()
    yield k
    await k.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
