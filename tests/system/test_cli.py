"""The operator commands: topics, dev (what `make run` calls), broker."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from urllib.parse import unquote

import httpx
import pytest

from tests.support import eventually, port_open
from webhook_stream.broker import free_port


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook_stream.cli", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_topics_prints_the_plan_and_creates_what_is_missing(broker) -> None:
    env = {"WEBHOOK_STREAM_BROKER": broker.url, "WEBHOOK_STREAM_RETRY_SCHEDULE": "7s,3m"}
    plan = await asyncio.to_thread(run_cli, "topics", "--dry-run", env=env)
    assert plan.returncode == 0, plan.stderr
    assert "webhooks.subscriptions" in plan.stdout and "cleanup.policy=compact" in plan.stdout
    assert "webhooks.retry.7s" in plan.stdout and "webhooks.retry.3m" in plan.stdout
    first = await asyncio.to_thread(run_cli, "topics", env=env)
    assert first.returncode == 0, first.stderr
    assert re.search(r"created \d+ topic", first.stdout)
    assert "webhooks.retry.7s" in first.stdout.splitlines()[-1] or "created 0" not in first.stdout
    again = await asyncio.to_thread(run_cli, "topics", env=env)
    assert "created 0 topic(s)" in again.stdout


async def test_bad_setting_is_a_clear_error() -> None:
    out = await asyncio.to_thread(
        run_cli, "topics", "--dry-run", env={"WEBHOOK_STREAM_RETRY_SCHEDULE": "5 parsecs"}
    )
    assert out.returncode == 2
    assert "WEBHOOK_STREAM_RETRY_SCHEDULE" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.integration
async def test_dev_runs_broker_worker_and_api_and_stops_on_ctrl_c(tmp_path) -> None:
    port, broker_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "webhook_stream.cli",
            "dev",
            "--port",
            str(port),
            "--broker-port",
            str(broker_port),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("WEBHOOK_STREAM_")},
    )
    lines: list[str] = []

    async def reader() -> None:
        assert proc.stdout is not None
        while True:
            line = await asyncio.to_thread(proc.stdout.readline)
            if not line:
                return
            lines.append(line)

    task = asyncio.create_task(reader())
    try:
        await eventually(lambda: any("API token:" in ln for ln in lines), timeout=120, interval=0.2)
        token = next(ln for ln in lines if "API token:" in ln).split("API token:")[1].strip()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/health")).status_code == 200
            r = await client.get("/subscriptions", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200
            # The console link signs the admin in: /ui/ serves the page, the token is in #.
            link = next(ln for ln in lines if "console:" in ln).split("console:")[1].strip()
            page, _, fragment = link.partition("#")
            assert page == f"http://127.0.0.1:{port}/ui/"
            assert unquote(fragment) == f"token={token}"
            assert (await client.get(page)).status_code == 200
        proc.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(proc.wait, 60)
        assert code == 0
        assert any("stopped." in ln for ln in lines)
    finally:
        if proc.poll() is None:
            proc.kill()
        await task


@pytest.mark.integration
async def test_broker_command_stops_tansu_on_sigterm_and_sigint(tmp_path) -> None:
    """``webhook-stream broker`` stopped by a supervisor (SIGTERM) or Ctrl-C (SIGINT) takes
    Tansu with it: the port is free afterwards (SIGTERM used to leave Tansu running)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "webhook_stream.cli", "broker", "--port", str(port)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            await eventually(lambda p=port: port_open(p), timeout=30, interval=0.1)
            proc.send_signal(sig)
            assert await asyncio.to_thread(proc.wait, 30) == 0
            await eventually(lambda p=port: not port_open(p), timeout=15, interval=0.1)
        finally:
            if proc.poll() is None:
                proc.kill()


async def test_send_writes_one_event_from_an_argument_or_stdin_with_key_and_headers(
    broker, kafka
) -> None:
    """``webhook-stream send`` (the tour's producer): JSON from the argument or stdin, the key
    and headers as given; something that is not JSON is refused before anything is sent."""
    topic = f"events.send_{os.getpid()}"
    env = {"WEBHOOK_STREAM_BROKER": broker.url}
    sent = await asyncio.to_thread(
        # The tour's order: the option before the event (argparse alone refused it).
        run_cli,
        "send",
        topic,
        "--key",
        "k1",
        '{"type": "a.b", "data": {"n": 1}}',
        env=env,
    )
    assert sent.returncode == 0, sent.stderr
    assert f"sent to {topic}" in sent.stdout
    piped = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "webhook_stream.cli", "send", topic, "--header", "traceparent=00-x"],
        input='{"type": "a.c", "data": {}}',
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert piped.returncode == 0, piped.stderr
    bad = await asyncio.to_thread(run_cli, "send", topic, "{not json", env=env)
    assert bad.returncode == 2 and "not JSON" in bad.stdout + bad.stderr
    records = {r.value: r for r in await kafka.read_all(topic)}  # two partitions: any order
    assert set(records) == {b'{"type": "a.b", "data": {"n": 1}}', b'{"type": "a.c", "data": {}}'}
    assert records[b'{"type": "a.b", "data": {"n": 1}}'].key == b"k1"
    piped_record = records[b'{"type": "a.c", "data": {}}']
    assert piped_record.key is None
    assert list(piped_record.headers) == [("traceparent", b"00-x")]
