"""webhook-stream: outbound webhook delivery as a Kafka-native stream processor.

Run the worker with ``faust -A webhook_stream worker``. Receivers verify requests with
:func:`verify`. The Faust ``app`` is built on first access, not at import, so importing
``webhook_stream`` for :func:`verify` reads no environment and touches no broker.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from .errors import (
    ConfigError,
    DeliveryError,
    FatalDeliveryError,
    InvalidSubscription,
    RejectedEvent,
    RetryableDeliveryError,
    WebhookStreamError,
)
from .signing import WebhookVerificationError, sign, verify

__all__ = [
    "ConfigError",
    "DeliveryError",
    "FatalDeliveryError",
    "InvalidSubscription",
    "RejectedEvent",
    "RetryableDeliveryError",
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
            from .application import create_app

            _app = create_app()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
