"""The fast receiver: a minimal aiohttp.web server run as its own process.

``python -m bench.receiver --port P`` answers ``200 ok`` to a POST on any path (keep-alive)
and counts receipts per *prefix*, the first path segment (``/a/7`` counts under ``a``):
total requests, distinct ``webhook-id`` values, first and last receipt time (``time.time()``).
For prefixes starting with ``lat`` it also records ``receipt time - data.sent_at`` of each body.
Prefix ``hang`` is counted, then never answered (the sender's timeout ends the request).
``--tls-cert``/``--tls-key`` serve https; ``--client-ca`` verifies a client certificate
(optional: rows 1t and 1m of :mod:`bench.receivers` share one receiver).

``GET /_stats`` returns the counters as JSON; ``GET /_stats?lat=<prefix>`` adds that prefix's
latencies (seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import time

import orjson
from aiohttp import web


class Counter:
    __slots__ = ("count", "first", "ids", "last", "lat")

    def __init__(self) -> None:
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.ids: set[str] = set()
        self.lat: list[float] = []


def build_app() -> web.Application:
    counters: dict[str, Counter] = {}

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time()
        path = request.path
        prefix = path[1:].split("/", 1)[0]
        c = counters.get(prefix)
        if c is None:
            c = counters[prefix] = Counter()
            c.first = now
        c.count += 1
        c.last = now
        c.ids.add(request.headers.get("webhook-id", ""))
        if prefix.startswith("lat"):
            try:
                c.lat.append(now - float(orjson.loads(body)["data"]["sent_at"]))
            except (ValueError, KeyError, TypeError):
                pass
        if prefix == "hang":
            await asyncio.sleep(3600)  # a receiver that hangs; cancelled when the client gives up
        return web.Response(text="ok")

    async def stats(request: web.Request) -> web.Response:
        out: dict[str, object] = {
            name: {"count": c.count, "unique": len(c.ids), "first": c.first, "last": c.last}
            for name, c in counters.items()
        }
        lat = request.query.get("lat")
        if lat:
            c = counters.get(lat)
            out["latencies"] = c.lat if c is not None else []
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_get("/_stats", stats)
    app.router.add_post("/{tail:.*}", receive)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--tls-cert", help="serve https with this PEM certificate (and --tls-key)")
    parser.add_argument("--tls-key")
    parser.add_argument("--client-ca", help="verify a client certificate from this CA, if sent")
    args = parser.parse_args()
    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.client_ca:
            context.verify_mode = ssl.CERT_OPTIONAL  # rows 1t (without) and 1m (with)
            context.load_verify_locations(args.client_ca)
    web.run_app(
        build_app(),
        host=args.host,
        port=args.port,
        ssl_context=context,
        access_log=None,
        print=None,
        handle_signals=True,
        backlog=1024,
    )


if __name__ == "__main__":
    main()
