"""Signing secrets of a stored subscription, sealed and opened with the configured keys.

The ``secret`` and ``previous_secrets[].secret`` fields of the JSON written to
``webhooks.subscriptions`` go through :class:`~webhook_stream.core.sealing.SecretBox`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook_stream.core.sealing import SecretBox, open_secret

__all__ = ["open_subscription_secrets", "seal_subscription_secrets"]


def _map_secrets(data: Mapping[str, Any], convert: Any) -> dict[str, Any]:
    out = dict(data)
    if isinstance(out.get("secret"), str):
        out["secret"] = convert(out["secret"])
    previous = out.get("previous_secrets")
    if isinstance(previous, list | tuple):
        out["previous_secrets"] = [
            {**item, "secret": convert(item["secret"])}
            if isinstance(item, Mapping) and isinstance(item.get("secret"), str)
            else item
            for item in previous
        ]
    return out


def seal_subscription_secrets(data: Mapping[str, Any], box: SecretBox | None) -> dict[str, Any]:
    """A copy of a stored subscription dict with ``secret`` and ``previous_secrets[].secret``
    sealed; unchanged (a copy) when ``box`` is None. Values already sealed are re-keyed."""
    if box is None:
        return dict(data)
    return _map_secrets(data, box.reseal)


def open_subscription_secrets(data: Mapping[str, Any], box: SecretBox | None) -> dict[str, Any]:
    """A copy of a stored subscription dict with its secrets in clear (inverse of the above)."""
    return _map_secrets(data, lambda value: open_secret(value, box))
