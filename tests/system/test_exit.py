"""A worker that cannot go on exits non-zero, with a line that says why (issue 16)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support import Receiver, Worker, eventually
from webhook_stream.broker import EmbeddedBroker

BOUND = 6.0


async def test_worker_exits_non_zero_when_the_broker_stays_unreachable(
    own_broker: EmbeddedBroker, receiver: Receiver, tmp_path: Path
) -> None:
    w = Worker(
        own_broker.url,
        tmp_path / "w",
        env={"WEBHOOK_STREAM_BROKER_UNAVAILABLE_TIMEOUT": f"{BOUND:g}s"},
    ).start()
    try:
        await w.wait_ready()
        await w.create_subscription(id="ep", url=receiver.url("/x"), event_types=["x.y"])
        own_broker.stop()
        stopped = time.monotonic()
        assert w.proc is not None
        # The bound, plus a probe interval, plus a shutdown that cannot commit anything.
        await eventually(lambda: w.proc.poll() is not None, timeout=BOUND + 40, interval=0.2)
        took = time.monotonic() - stopped
        print(f"\nworker exited {w.proc.returncode} {took:.1f}s after the broker stopped")
        assert w.proc.returncode != 0
        assert BOUND * 0.9 <= took < BOUND + 15  # bound + probe interval + 5 s stop grace
        log = w.log_text()
        assert "unreachable for" in log and "BROKER_UNAVAILABLE_TIMEOUT" in log, w.log_tail()
    finally:
        w.stop()
