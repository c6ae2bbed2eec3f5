"""Signing secrets encrypted at rest in ``webhooks.subscriptions``.

When ``WEBHOOK_STREAM_SECRET_KEY`` is set, the ``secret`` fields of a stored subscription
are written as ``enc:v1:<Fernet token>`` (AES-128-CBC + HMAC-SHA256, from the
``cryptography`` package) instead of in clear. The setting holds one or more Fernet keys,
comma-separated, newest first: new values are sealed with the first, any of them opens
a value (:class:`~cryptography.fernet.MultiFernet`), so a key is rotated by prepending
the new one, re-sealing (:meth:`SecretBox.reseal`), then dropping the old one.

Values without the ``enc:v1:`` mark pass through :meth:`SecretBox.open` unchanged, so a
topic written in clear keeps working after a key is configured. Error messages never
contain a secret, a token or a key.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from webhook_stream.core.errors import ConfigError

__all__ = [
    "SEALED_PREFIX",
    "SecretBox",
    "SecretKeyError",
    "generate_key",
    "is_sealed",
    "open_secret",
]

SEALED_PREFIX = "enc:v1:"
SETTING = "WEBHOOK_STREAM_SECRET_KEY"


class SecretKeyError(ConfigError):
    """A sealed secret cannot be opened: no key is configured, or none of the keys fits."""


def is_sealed(value: object) -> bool:
    """True for a value written by :meth:`SecretBox.seal`."""
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def generate_key() -> str:
    """A new random Fernet key (url-safe base64 of 32 bytes), for the setting."""
    return Fernet.generate_key().decode("ascii")


class SecretBox:
    """Seals and opens secrets with the configured Fernet keys (first one seals)."""

    __slots__ = ("_fernet", "_key_count")

    def __init__(self, keys: list[str] | tuple[str, ...]) -> None:
        if not keys:
            raise ConfigError(f"{SETTING}: needs at least one key")
        fernets: list[Fernet] = []
        for number, key in enumerate(keys, 1):
            try:
                fernets.append(Fernet(key.strip().encode("ascii")))
            except (ValueError, TypeError, UnicodeError):
                # Never echo the key.
                raise ConfigError(
                    f"{SETTING}: key #{number} is not a Fernet key (url-safe base64 of 32 "
                    "bytes; generate one with webhook_stream.core.sealing.generate_key())"
                ) from None
        self._fernet = MultiFernet(fernets)
        self._key_count = len(fernets)

    @classmethod
    def from_setting(cls, text: str | None) -> SecretBox | None:
        """From ``WEBHOOK_STREAM_SECRET_KEY``: comma-separated keys, newest first.

        None when the setting is empty (secrets are then stored in clear).
        """
        keys = [part.strip() for part in (text or "").split(",") if part.strip()]
        return cls(keys) if keys else None

    generate_key = staticmethod(generate_key)
    is_sealed = staticmethod(is_sealed)

    def __repr__(self) -> str:
        return f"SecretBox(keys={self._key_count})"

    def seal(self, secret: str) -> str:
        """``enc:v1:<token>`` for ``secret``, sealed with the newest key."""
        if is_sealed(secret):
            raise ValueError("value is already sealed (use reseal() to change its key)")
        token = self._fernet.encrypt(secret.encode("utf-8"))
        return SEALED_PREFIX + token.decode("ascii")

    def open(self, value: str) -> str:
        """The secret in ``value``: opened if sealed, returned unchanged if in clear."""
        if not is_sealed(value):
            return value
        token = value[len(SEALED_PREFIX) :].encode("ascii", "replace")
        try:
            return self._fernet.decrypt(token).decode("utf-8")
        except (InvalidToken, UnicodeDecodeError):
            raise SecretKeyError(
                f"a sealed secret cannot be opened with any of the {self._key_count} key(s) "
                f"in {SETTING}: wrong key, a removed old key, or a damaged value"
            ) from None

    def reseal(self, value: str) -> str:
        """``value`` sealed with the newest key (clear text is sealed, sealed is re-keyed)."""
        return self.seal(self.open(value))


def open_secret(value: str, box: SecretBox | None) -> str:
    """Like :meth:`SecretBox.open`, also when no key is configured (``box`` None)."""
    if box is not None:
        return box.open(value)
    if is_sealed(value):
        raise SecretKeyError(
            f"a sealed secret was found but {SETTING} is not set; "
            "configure the key(s) it was sealed with"
        )
    return value
