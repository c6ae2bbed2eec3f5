"""Secrets of a stored subscription, sealed and opened with the configured keys; masks.

The ``secret``, ``previous_secrets[].secret``, every ``headers`` value, the ed25519
``signing_key`` (and ``previous_signing_keys[].key``), ``auth.password``,
``auth.client_secret`` and ``tls.client_key`` of the JSON written to
``webhooks.subscriptions`` go through :class:`~webhook_stream.core.sealing.SecretBox`.
Header values are shown masked (:func:`mask_header`) by every API read; a masked value sent
back (GET, edit, PATCH) means "keep the current value" (:func:`unmask_headers`), so it is
never stored as the literal mask.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from webhook_stream.core.errors import InvalidSubscription
from webhook_stream.core.sealing import SecretBox, open_secret

__all__ = [
    "MASK",
    "SECRET_FIELDS",
    "check_headers_follow_url",
    "mask_header",
    "open_subscription_secrets",
    "refuse_masks",
    "seal_subscription_secrets",
    "unmask_headers",
]

MASK = "****"
#: The subscription fields that hold a secret (or, for ``headers``, may hold one): sealed
#: in write requests, redacted in logs.
SECRET_FIELDS = (
    "secret",
    "previous_secrets",
    "headers",
    "signing_key",
    "previous_signing_keys",
    "auth",
    "tls",
)
#: Values at least this long show their last 4 characters after the mask.
_SHOW_TAIL_FROM = 12


def mask_header(value: str) -> str:
    """``****`` plus the last 4 characters of a long value (enough to tell keys apart)."""
    return MASK + value[-4:] if len(value) >= _SHOW_TAIL_FROM else MASK


def _origin(url: str) -> tuple[str, str, int | None]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ("", url, None)
    scheme = parts.scheme.lower()
    return (scheme, (parts.hostname or "").lower(), port or {"https": 443, "http": 80}.get(scheme))


def check_headers_follow_url(
    current_url: str, current_headers: Mapping[str, str], changes: Mapping[str, Any]
) -> bool:
    """Whether a PATCH (``changes``) moves the endpoint to another origin (scheme, host,
    port). Its header values (credentials, often) are not carried there: such a PATCH
    must give ``headers`` again, in clear (``{}`` drops them); a masked value is refused.
    """
    if "url" not in changes or not isinstance(changes["url"], str):
        return False
    if _origin(changes["url"]) == _origin(current_url):
        return False
    if not current_headers:
        return True
    sent = changes.get("headers")
    if sent is None:
        raise InvalidSubscription(
            "headers",
            "the URL moves to another host: give the header values again ({} drops them)",
        )
    if isinstance(sent, Mapping):
        for name, value in sent.items():
            if isinstance(value, str) and value.startswith(MASK):
                raise InvalidSubscription(
                    f"headers.{name}",
                    "the URL moves to another host: give the value itself, not its mask",
                )
    return True


def unmask_headers(sent: object, current: Mapping[str, str]) -> object:
    """``sent`` (a PATCH's ``headers``) with masked values replaced by the current ones.

    A value equal to the mask of the current value of the same header (names compared
    case-insensitively) keeps that value. Any other value starting with ``****`` is left
    for :func:`refuse_masks`, so a mask is never stored as a header value.
    """
    if not isinstance(sent, Mapping):
        return sent
    by_name = {name.lower(): value for name, value in current.items()}
    out: dict[object, object] = {}
    for name, value in sent.items():
        now = by_name.get(name.lower()) if isinstance(name, str) else None
        out[name] = now if now is not None and value == mask_header(now) else value
    return out


def _map_secrets(data: Mapping[str, Any], convert: Any) -> dict[str, Any]:
    out = dict(data)
    headers = out.get("headers")
    if isinstance(headers, Mapping):
        out["headers"] = {
            name: convert(value) if isinstance(value, str) else value
            for name, value in headers.items()
        }
    for name in ("secret", "signing_key"):
        if isinstance(out.get(name), str):
            out[name] = convert(out[name])
    for name, inner in (("previous_secrets", "secret"), ("previous_signing_keys", "key")):
        previous = out.get(name)
        if isinstance(previous, list | tuple):
            out[name] = [
                {**item, inner: convert(item[inner])}
                if isinstance(item, Mapping) and isinstance(item.get(inner), str)
                else item
                for item in previous
            ]
    for name, inners in (("auth", ("password", "client_secret")), ("tls", ("client_key",))):
        part = out.get(name)
        if isinstance(part, Mapping):
            out[name] = {
                key: convert(value) if key in inners and isinstance(value, str) else value
                for key, value in part.items()
            }
    return out


def seal_subscription_secrets(data: Mapping[str, Any], box: SecretBox | None) -> dict[str, Any]:
    """A copy of a stored subscription dict with ``secret``, ``previous_secrets[].secret``
    and header values sealed; unchanged (a copy) when ``box`` is None. Values already sealed
    are re-keyed with the newest key."""
    if box is None:
        return dict(data)
    return _map_secrets(data, box.reseal)


def open_subscription_secrets(data: Mapping[str, Any], box: SecretBox | None) -> dict[str, Any]:
    """A copy of a stored subscription dict with its secrets in clear (inverse of the above)."""
    return _map_secrets(data, lambda value: open_secret(value, box))


def refuse_masks(headers: Iterable[tuple[str, str]]) -> None:
    """Refuse (400) a header value that is a mask: the real value was not sent."""
    for name, value in headers:
        if value.startswith(MASK):
            raise InvalidSubscription(
                f"headers.{name}",
                "looks like a masked value ('****...'); send the real value, or the masked "
                "value exactly as a read returned it to keep the current one",
            )
