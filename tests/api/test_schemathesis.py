"""Property-based testing of the whole API with schemathesis, with admin and tenant tokens.

Against a worker on a broker of its own (generated subscriptions must not meet other
tests' events), every ``url`` pointed at a loopback receiver (``st_hooks``). Checks: no
5xx, every status, content type and body as the document says.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import TOKEN, Receiver, Worker

ROOT = Path(__file__).resolve().parents[2]
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,response_headers_conformance"
)


async def _schemathesis(
    worker: Worker, token: str, receiver: Receiver, report: Path, *extra: str
) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SCHEMATHESIS_HOOKS": "tests.api.st_hooks",
        "WS_TEST_RECEIVER_URL": receiver.url("/st"),
    }
    st = Path(sys.executable).parent / "st"
    proc = await asyncio.to_thread(
        subprocess.run,
        [
            str(st),
            "run",
            f"{worker.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            CHECKS,
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "25",
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--seed",
            "19",
            "--suppress-health-check",
            "all",
            "--no-color",
            *extra,
            "--report-dir",
            str(report),
        ],
        env=env,
        cwd=report.parent,  # its cache directory goes there, not into the repo
        capture_output=True,
        text=True,
        timeout=480,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    return out


@pytest.mark.timeout(1200)
async def test_schemathesis_finds_nothing_with_admin_and_tenant_tokens(
    own_broker, receiver: Receiver, tmp_path: Path
) -> None:
    worker = Worker(own_broker.url, tmp_path / "st").start()
    try:
        await worker.wait_ready()
        tenant = (await worker.issue_token("tenant-st"))["token"]
        # Something for the tenant to find: its own endpoint, and another tenant's.
        await worker.create_subscription(
            id="ep_st_own", url=receiver.url("/st"), event_types=["*"], tenant_id="tenant-st"
        )
        await worker.create_subscription(
            id="ep_st_other", url=receiver.url("/st"), event_types=["*"], tenant_id="other"
        )
        # A tenant's writes are limited (TENANT_WRITES_PER_S, 10/s at the default): paced
        # under it, so that its writes reach the handlers instead of mostly the 429.
        runs = (("admin", TOKEN, ()), ("tenant", tenant, ("--rate-limit", "9/s")))
        for name, token, extra in runs:
            out = await _schemathesis(worker, token, receiver, tmp_path / name, *extra)
            print(name, out[-1500:])
        assert worker.proc is not None and worker.proc.poll() is None
    finally:
        worker.stop()
