"""Child processes of the benchmark (receiver, workers) and what /proc says about them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from webhook_stream.broker import free_port
from webhook_stream.cli import worker_command

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    """SIGTERM, wait, then SIGKILL. Only ever the given child."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a worker's status view process), as /proc lists them."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except FileNotFoundError:
            continue
    return found


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its children: a worker counts with its status view."""
    return sum(process_cpu_seconds(p) for p in tree(pid))


def pids_by_role(pid: int) -> dict[str, int]:
    """A worker's processes by role: ``worker``, ``fan-out`` and ``status view``."""
    out = {"worker": pid}
    for child in tree(pid)[1:]:
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                cmdline = f.read()
        except FileNotFoundError:
            continue
        out["fan-out" if b"webhook_stream.ingest.process" in cmdline else "status view"] = child
    return out


def cpu_by_role(pid: int) -> dict[str, float]:
    """CPU seconds of a worker's processes: its own, its fan-out child's, its status view's."""
    out = {"worker": 0.0, "fan-out": 0.0, "status view": 0.0}
    for role, p in pids_by_role(pid).items():
        out[role] += process_cpu_seconds(p)
    return out


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in KiB, summed over the process and its children."""
    out = {"VmRSS": 0, "VmHWM": 0}
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    name, _, value = line.partition(":")
                    if name in out:
                        out[name] += int(value.split()[0])
        except FileNotFoundError:
            continue
    return out


class Receiver:
    """``python -m bench.receiver`` as a child process."""

    def __init__(self, log: IO[bytes]) -> None:
        self.port = free_port()
        self._log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.receiver", "--port", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_port(self.port, self.proc, 20)
        return self

    def stop(self) -> None:
        stop_process(self.proc, 10)


class Worker:
    """``python -m faust -A webhook_stream worker`` as a child process."""

    def __init__(
        self,
        broker_url: str,
        workdir: Path,
        log: IO[bytes],
        token: str,
        partitions: int,
        extra_env: dict[str, str],
        loglevel: str = "warn",
        loop: str = "aio",
    ) -> None:
        self.loglevel = loglevel
        self.loop = loop
        self.port = free_port()
        self.workdir = workdir
        self._log = log
        self.env = {
            **os.environ,
            "WEBHOOK_STREAM_BROKER": broker_url,
            "WEBHOOK_STREAM_ALLOW_INSECURE_TARGETS": "1",
            "WEBHOOK_STREAM_API_TOKEN": token,
            "WEBHOOK_STREAM_PARTITIONS": str(partitions),
            "WEBHOOK_STREAM_STATUS_ADVERTISED_URL": f"http://127.0.0.1:{self.port}",
            **extra_env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> Worker:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log.write(f"\n===== worker on port {self.port} starting at {time.ctime()}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            worker_command(self.port, loglevel=self.loglevel, loop=self.loop),
            cwd=self.workdir,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    def stop(self, timeout: float = 45.0) -> None:
        stop_process(self.proc, timeout)
