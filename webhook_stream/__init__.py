"""webhook-stream: outbound webhook delivery as a Kafka-native stream processor.

Run the worker with ``faust -A webhook_stream worker``. Receivers verify requests with
:func:`verify`. The Faust ``app`` is built on first access, not at import, so importing
``webhook_stream`` for :func:`verify` reads no environment and touches no broker.
"""

from __future__ import annotations

from typing import Any

from webhook_stream.core.errors import (
    ConfigError,
    InvalidSubscription,
    RejectedEvent,
    WebhookStreamError,
)
from webhook_stream.core.version import __version__
from webhook_stream.delivery.signing import WebhookVerificationError, sign, verify

__all__ = [
    "ConfigError",
    "InvalidSubscription",
    "RejectedEvent",
    "WebhookStreamError",
    "WebhookVerificationError",
    "__version__",
    "app",
    "sign",
    "verify",
]

_app: Any = None


def __getattr__(name: str) -> Any:
    # ``faust -A webhook_stream`` looks up ``webhook_stream.app``: build it lazily, once.
    global _app
    if name == "app":
        if _app is None:
            from webhook_stream.application import create_app

            _app = create_app()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
