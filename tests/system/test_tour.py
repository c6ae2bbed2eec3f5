"""The README's five-minute tour, run exactly as written against a real ``make run``.

The ``sh`` blocks of the tour section are taken from README.md and run, in order, in one
bash (``set -euo pipefail``) with the exports ``make run`` prints, so the README cannot
drift from the product: a renamed route, a changed field or a command that no longer
exists fails here. ``text`` blocks (``make run`` itself, the exports) are shown, not run.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import eventually, port_open

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
#: The tour's fixed ports: the API, the broker and its two receivers.
PORTS = (6066, 9092, 9000, 9001)
EXPORT = re.compile(r"^\s+export (\w+)=(\S+)")


def tour_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Five-minute tour\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def test_the_tour_has_its_steps() -> None:
    """The extraction finds the steps (an empty tour would pass the run below)."""
    script = "\n".join(tour_blocks())
    for step in ("webhook-stream receive", "webhook-stream send", "/deadletters", "/replay"):
        assert step in script, step
    assert "/tenants/acme/tokens" in script


async def alerting_consumer_reports_the_existing_dead_letter(env: dict, tmp_path: Path) -> None:
    """The alerting consumer of the dead-letters page, as written, run after the tour: a new
    group must report the dead letter that is already there (it used to start at latest)."""
    page = (ROOT / "docs" / "operations" / "dead-letters.md").read_text()
    code = re.findall(r"```python\n(.*?)```", page, re.S)[0]
    script = tmp_path / "alerts.py"
    script.write_text(code)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout=60)
        assert line.startswith("ALERT ep_flaky exhausted 503"), line
    finally:
        proc.kill()
        proc.wait()


async def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    busy = [port for port in PORTS if port_open(port)]
    assert not busy, f"the tour uses fixed ports; something already listens on {busy}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOK_STREAM_")}
    make = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []

    async def read() -> None:
        assert make.stdout is not None
        while line := await asyncio.to_thread(make.stdout.readline):
            lines.append(line)

    reader = asyncio.create_task(read())
    tour: subprocess.Popen[str] | None = None
    try:
        await eventually(lambda: any("export PATH=" in ln for ln in lines), timeout=300)
        exports = dict(m.groups() for ln in lines if (m := EXPORT.match(ln)))
        assert set(exports) == {"WEBHOOK_STREAM_API_TOKEN", "WEBHOOK_STREAM_BROKER", "API", "PATH"}
        shell_env = {**env, **exports}
        shell_env["PATH"] = exports["PATH"].strip('"').replace("$PATH", env["PATH"])
        script = "set -euo pipefail\n" + "\n".join(tour_blocks()) + "\nkill $(jobs -p)\n"
        tour = subprocess.Popen(
            ["bash", "-c", script],
            cwd=tmp_path,
            env=shell_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        out, _ = await asyncio.to_thread(tour.communicate, timeout=240)
        assert tour.returncode == 0, out
        # What the tour tells the reader to look for:
        assert "type=order.created  signature ok  -> answered 200" in out, out
        assert (
            out.count("type=order.paid  signature not checked (no --secret)  -> answered 503") == 3
        )
        assert '"reason":"exhausted"' in out, out
        replayed = [ln for ln in out.splitlines() if "type=order.paid  signature ok" in ln]
        assert len(replayed) == 2, out  # ep_orders' copy, and ep_flaky's replay
        assert '"tenant_id":"acme"' in out.rsplit('"items"', 1)[1], out
        await alerting_consumer_reports_the_existing_dead_letter(shell_env, tmp_path)
    finally:
        if tour is not None and tour.poll() is None:
            os.killpg(tour.pid, signal.SIGKILL)
        if tour is not None:
            try:
                os.killpg(tour.pid, signal.SIGTERM)  # receivers left behind by a failure
            except ProcessLookupError:
                pass
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGINT)  # Ctrl-C, as the tour says
        code = await asyncio.to_thread(make.wait, 60)
        await reader
    # make itself ends by the SIGINT once `webhook-stream dev` below it has stopped cleanly.
    assert code in (0, -signal.SIGINT), "".join(lines[-30:])
    assert any(ln.strip() == "stopped." for ln in lines), "".join(lines[-30:])
    await eventually(lambda: not any(port_open(p) for p in PORTS), timeout=20)
