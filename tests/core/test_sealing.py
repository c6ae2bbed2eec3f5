"""Signing secrets sealed at rest with Fernet / MultiFernet."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from webhook_stream.core.errors import ConfigError
from webhook_stream.core.sealing import (
    SEALED_PREFIX,
    SecretBox,
    SecretKeyError,
    generate_key,
    is_sealed,
    open_secret,
)
from webhook_stream.subscriptions.model import generate_secret
from webhook_stream.subscriptions.secrets import (
    open_subscription_secrets,
    seal_subscription_secrets,
)


def test_from_setting_empty_is_none() -> None:
    assert SecretBox.from_setting("") is None
    assert SecretBox.from_setting(None) is None
    assert SecretBox.from_setting(" , ") is None


def test_round_trip() -> None:
    box = SecretBox.from_setting(generate_key())
    assert box is not None
    secret = generate_secret()
    sealed = box.seal(secret)
    assert sealed.startswith(SEALED_PREFIX) and is_sealed(sealed) and SecretBox.is_sealed(sealed)
    assert secret not in sealed
    assert box.seal(secret) != sealed  # random IV: equal secrets do not look equal
    assert box.open(sealed) == secret
    assert box.open(box.seal("ünïcode")) == "ünïcode"


def test_clear_text_passes_through() -> None:
    box = SecretBox.from_setting(generate_key())
    assert box is not None
    secret = generate_secret()
    assert not is_sealed(secret)
    assert box.open(secret) == secret
    assert open_secret(secret, None) == secret


def test_rotation() -> None:
    old, new = generate_key(), generate_key()
    old_box = SecretBox.from_setting(old)
    assert old_box is not None
    sealed_old = old_box.seal("whsec_abc")

    rotated = SecretBox.from_setting(f"{new}, {old}")  # new key prepended
    assert rotated is not None
    assert rotated.open(sealed_old) == "whsec_abc"
    resealed = rotated.reseal(sealed_old)
    sealed_new = rotated.seal("whsec_abc")
    only_new = Fernet(new.encode())
    for value in (resealed, sealed_new):
        assert only_new.decrypt(value[len(SEALED_PREFIX) :].encode()) == b"whsec_abc"

    # Once the old key is dropped, re-sealed values still open; old ones do not.
    new_only = SecretBox.from_setting(new)
    assert new_only is not None
    assert new_only.open(resealed) == "whsec_abc"
    with pytest.raises(SecretKeyError):
        new_only.open(sealed_old)


def test_wrong_key_error_reveals_nothing() -> None:
    secret = generate_secret()
    key = generate_key()
    box = SecretBox.from_setting(key)
    other = SecretBox.from_setting(generate_key())
    assert box is not None and other is not None
    sealed = box.seal(secret)
    token = sealed[len(SEALED_PREFIX) :]
    with pytest.raises(SecretKeyError) as info:
        other.open(sealed)
    message = str(info.value)
    assert "WEBHOOK_STREAM_SECRET_KEY" in message
    for hidden in (secret, token, token[:20], key, secret[len("whsec_") :]):
        assert hidden not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert isinstance(info.value, ConfigError)


def test_sealed_value_without_key() -> None:
    box = SecretBox.from_setting(generate_key())
    assert box is not None
    sealed = box.seal("whsec_abc")
    with pytest.raises(SecretKeyError, match="not set") as info:
        open_secret(sealed, None)
    assert sealed[len(SEALED_PREFIX) :] not in str(info.value)


def test_damaged_token() -> None:
    box = SecretBox.from_setting(generate_key())
    assert box is not None
    for damaged in (SEALED_PREFIX, SEALED_PREFIX + "garbage", SEALED_PREFIX + "ü"):
        with pytest.raises(SecretKeyError):
            box.open(damaged)


def test_bad_keys_are_config_errors_without_the_key() -> None:
    with pytest.raises(ConfigError, match="key #2") as info:
        SecretBox.from_setting(f"{generate_key()},not-a-real-fernet-key")
    assert "not-a-real-fernet-key" not in str(info.value)


def test_box_hides_keys_and_refuses_double_seal() -> None:
    key = generate_key()
    box = SecretBox.from_setting(f"{key},{generate_key()}")
    assert box is not None
    assert repr(box) == "SecretBox(keys=2)" and key not in repr(box)
    with pytest.raises(ValueError, match="already sealed"):
        box.seal(box.seal("whsec_abc"))
    assert SecretBox.generate_key() != SecretBox.generate_key()


def test_subscription_dict_helpers() -> None:
    box = SecretBox.from_setting(generate_key())
    assert box is not None
    stored = {
        "id": "ep_1",
        "url": "https://example.com/h",
        "secret": "whsec_current",
        "previous_secrets": [{"secret": "whsec_old", "expires_at": "2030-01-01T00:00:00Z"}],
    }
    sealed = seal_subscription_secrets(stored, box)
    assert stored["secret"] == "whsec_current"  # input untouched
    assert is_sealed(sealed["secret"]) and is_sealed(sealed["previous_secrets"][0]["secret"])
    assert sealed["previous_secrets"][0]["expires_at"] == "2030-01-01T00:00:00Z"
    assert "whsec_" not in str(sealed)
    assert open_subscription_secrets(sealed, box) == stored
    assert open_subscription_secrets(stored, None) == stored  # clear topic, no key
    assert seal_subscription_secrets(stored, None) == stored
    with pytest.raises(SecretKeyError):
        open_subscription_secrets(sealed, None)
