"""Header values are secrets: sealed at rest, masked in reads, a mask sent back keeps them."""

from __future__ import annotations

import orjson
import pytest

from webhook_stream.core.errors import InvalidSubscription
from webhook_stream.core.sealing import SecretBox, generate_key
from webhook_stream.subscriptions.secrets import (
    mask_header,
    open_subscription_secrets,
    refuse_masks,
    seal_subscription_secrets,
    unmask_headers,
)
from webhook_stream.subscriptions.validation import parse_stored, parse_subscription

TOKEN = "Bearer receiver-token-9876-wxyz"


def sub(**extra: object):
    return parse_subscription(
        {"id": "ep_h", "url": "https://example.com/h", "event_types": ["*"], **extra},
        allow_insecure=False,
    )


def test_reads_show_the_mask_and_at_most_the_last_four_characters() -> None:
    s = sub(headers={"Authorization": TOKEN, "X-Team": "a"})
    shown = s.to_dict(include_secrets=False)["headers"]
    assert shown == {"Authorization": "****wxyz", "X-Team": "****"}
    assert mask_header("short-value") == "****"  # too short to show any of it
    assert s.to_dict(include_secrets=True)["headers"]["Authorization"] == TOKEN


def test_header_values_are_sealed_at_rest_and_open_again() -> None:
    box = SecretBox.from_setting(generate_key())
    s = sub(headers={"Authorization": TOKEN})
    stored = seal_subscription_secrets(s.to_dict(include_secrets=True), box)
    assert stored["headers"]["Authorization"].startswith("enc:v1:")
    assert TOKEN.encode() not in orjson.dumps(stored)
    again = parse_stored(orjson.dumps(stored), "ep_h", box)
    assert dict(again.headers) == {"Authorization": TOKEN}
    assert open_subscription_secrets(stored, box)["headers"]["Authorization"] == TOKEN


def test_a_mask_sent_back_keeps_the_value_and_other_values_replace_it() -> None:
    current = {"Authorization": TOKEN, "X-Team": "a"}
    sent = {"authorization": "****wxyz", "X-Team": "b", "X-New": "n"}
    assert unmask_headers(sent, current) == {"authorization": TOKEN, "X-Team": "b", "X-New": "n"}
    # A mask that is not the current value's (another header's, or made up) stays a mask...
    kept = unmask_headers({"X-Team": "****wxyz"}, current)
    assert kept == {"X-Team": "****wxyz"}
    # ...and is refused rather than stored.
    with pytest.raises(InvalidSubscription) as err:
        refuse_masks(sub(headers=kept).headers)
    assert err.value.field == "headers.X-Team"
    assert TOKEN not in str(err.value)
