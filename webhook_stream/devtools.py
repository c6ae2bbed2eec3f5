"""Tools for trying the product by hand: a receiver that prints and verifies what it gets,
and a producer that sends one event. ``webhook-stream receive`` and ``webhook-stream
send`` run them; neither is part of the worker.
"""

from __future__ import annotations

import asyncio
import json
from typing import TextIO

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from webhook_stream.core import kafka
from webhook_stream.core.settings import Settings
from webhook_stream.delivery.signing import WebhookVerificationError, verify

__all__ = ["Receipt", "parse_headers", "receive", "receiver_app", "send"]

#: Characters of a received body printed on the receipt line.
_SHOWN = 300


class Receipt:
    """What one request was, as the receiver prints it."""

    __slots__ = ("answered", "body", "check", "path", "type", "webhook_id")

    def __init__(
        self, path: str, webhook_id: str, type_: str, check: str, answered: int, body: bytes
    ) -> None:
        self.path = path
        self.webhook_id = webhook_id
        self.type = type_
        self.check = check
        self.answered = answered
        self.body = body

    def line(self) -> str:
        text = self.body.decode("utf-8", "replace")
        if len(text) > _SHOWN:
            text = text[:_SHOWN] + "..."
        return (
            f"<- POST {self.path}  webhook-id={self.webhook_id}  type={self.type}  "
            f"{self.check}  -> answered {self.answered}\n   {text}"
        )


def receiver_app(secret: str, status: int, out: TextIO) -> web.Application:
    """An aiohttp app answering every POST with ``status`` (401 when a signature is wrong)."""

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        answered = status
        if not secret:
            check = "signature not checked (no --secret)"
        else:
            try:
                verify(secret, request.headers, body)
                check = "signature ok"
            except WebhookVerificationError as exc:
                check, answered = f"SIGNATURE REJECTED ({exc})", 401
        try:
            type_ = str(orjson.loads(body).get("type", "?"))
        except (orjson.JSONDecodeError, AttributeError):
            type_ = "?"
        receipt = Receipt(
            request.path, request.headers.get("webhook-id", "?"), type_, check, answered, body
        )
        print(receipt.line(), file=out, flush=True)
        return web.json_response({"received": answered < 300}, status=answered)

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("POST", "/{tail:.*}", handle)
    return app


async def receive(host: str, port: int, secret: str, status: int, out: TextIO) -> None:
    """Serve :func:`receiver_app` on ``host:port`` until cancelled."""
    runner = web.AppRunner(receiver_app(secret, status, out), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        how = "verifying signatures" if secret else "not verifying signatures (no --secret)"
        print(
            f"receiving webhooks on http://{host}:{port}/ (any path), answering {status}, {how}",
            file=out,
            flush=True,
        )
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def parse_headers(pairs: list[str]) -> list[tuple[str, bytes]]:
    """``NAME=VALUE`` options as Kafka record headers."""
    out = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--header {pair!r}: expected NAME=VALUE")
        out.append((name, value.encode()))
    return out


async def send(
    settings: Settings,
    topic: str,
    value: str,
    key: str | None,
    headers: list[tuple[str, bytes]] | None = None,
) -> RecordMetadata:
    """Send ``value`` (checked to be JSON) to ``topic``; return where it was written."""
    try:
        json.loads(value)
    except ValueError as exc:
        raise ValueError(f"the event is not JSON: {exc}") from None
    producer: AIOKafkaProducer = kafka.producer(settings)
    await producer.start()
    try:
        return await producer.send_and_wait(
            topic,
            value.encode(),
            key=key.encode() if key is not None else None,
            headers=headers or None,
        )
    finally:
        await producer.stop()
