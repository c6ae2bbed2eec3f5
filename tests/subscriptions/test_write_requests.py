"""Write requests on the topic: secrets sealed (with the secret key, else the API token)."""

from __future__ import annotations

import pytest

from webhook_stream.core.errors import WriteRefused
from webhook_stream.core.sealing import SecretBox
from webhook_stream.core.settings import Settings
from webhook_stream.subscriptions.model import generate_secret
from webhook_stream.subscriptions.write_requests import (
    WriteRequest,
    WriteResult,
    open_body,
    request_box,
)

HEADER = "Bearer header-value-on-the-request-topic-9876"


def _request(secret: str) -> WriteRequest:
    body = {"id": "ep", "url": "https://example.com/h", "secret": secret, "headers": {"A": HEADER}}
    return WriteRequest("ep", "create", None, body, tenant="acme")


@pytest.mark.parametrize(
    "env",
    [{"api_token": "tok-1"}, {"api_token": "tok-1", "secret_key": SecretBox.generate_key()}],
    ids=["api-token", "secret-key"],
)
def test_a_request_carries_no_secret_in_clear_and_another_worker_opens_it(env: dict) -> None:
    secret = generate_secret()
    raw = _request(secret).encode(request_box(Settings(**env)))
    assert secret.encode() not in raw and HEADER.encode() not in raw
    assert secret.removeprefix("whsec_").encode() not in raw
    got = WriteRequest.decode(raw)
    assert got.tenant == "acme" and got.op == "create" and got.request_id.startswith("req_")
    opened = open_body(got.body, request_box(Settings(**env)))  # a second worker's box
    assert opened is not None
    assert opened["secret"] == secret and opened["headers"] == {"A": HEADER}


def test_workers_that_disagree_refuse_with_503_and_no_key_refuses_to_send() -> None:
    raw = _request(generate_secret()).encode(request_box(Settings(api_token="tok-1")))
    with pytest.raises(WriteRefused) as refused:
        open_body(WriteRequest.decode(raw).body, request_box(Settings(api_token="tok-2")))
    assert refused.value.status == 503 and "tok-" not in refused.value.message
    assert request_box(Settings()) is None
    with pytest.raises(WriteRefused) as no_box:
        _request(generate_secret()).encode(None)
    assert no_box.value.status == 503
    # Requests without secrets (delete, disable) need no key.
    plain = WriteRequest("ep", "disable", 3, {"reason": "gone", "consecutive_failures": 1})
    assert WriteRequest.decode(plain.encode(None)).body == plain.body


def test_results_round_trip() -> None:
    result = WriteResult("req_1", 412, "subscription 'ep' is at version 4, not 3", "If-Match")
    assert WriteResult.decode(result.encode()) == result and not result.ok
