"""Rows 1t, 1m and 1o: the client's CPU per request for receivers that demand more.

Next to row 1b (plain ``http://``, webhook-stream's direct client, no Kafka), the same
signed POSTs: 1t over ``https://`` (a second bench receiver process with a certificate of a
CA made here), 1m over the same with a client certificate (mutual TLS, the endpoint's
``tls``), 1o over ``http://`` with an OAuth2 bearer token from an in-process token endpoint
(cached: one token request for the whole row) through
:class:`~webhook_stream.delivery.credentials.ReceiverCredentials`, as the dispatcher sends.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from webhook_stream.broker import free_port
from webhook_stream.core.settings import Settings
from webhook_stream.delivery.credentials import ReceiverCredentials
from webhook_stream.delivery.signing import decode_secret
from webhook_stream.http.client import HttpClient
from webhook_stream.subscriptions.model import generate_secret
from webhook_stream.subscriptions.validation import parse_subscription

from . import load
from .procs import stop_process, wait_port


def _pem(obj: Any) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _issue(name: str, key: Any, ca: x509.Certificate | None, ca_key: Any, server: bool) -> Any:
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if ca is None else ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca is None, path_length=None), critical=True)
    )
    if ca is not None and server:
        san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def make_certificates(out: Path) -> dict[str, str]:
    """A server CA and certificate for 127.0.0.1 (files), a client CA and certificate (PEM)."""
    keys = {n: ec.generate_private_key(ec.SECP256R1()) for n in ("sca", "srv", "cca", "cli")}
    server_ca = _issue("bench server CA", keys["sca"], None, keys["sca"], False)
    client_ca = _issue("bench client CA", keys["cca"], None, keys["cca"], False)
    server = _issue("127.0.0.1", keys["srv"], server_ca, keys["sca"], True)
    client = _issue("bench client", keys["cli"], client_ca, keys["cca"], False)
    (out / "rx-cert.pem").write_bytes(_pem(server))
    (out / "rx-key.pem").write_bytes(_pem(keys["srv"]))
    (out / "rx-client-ca.pem").write_bytes(_pem(client_ca))
    return {
        "server_ca": _pem(server_ca).decode(),
        "client_cert": _pem(client).decode(),
        "client_key": _pem(keys["cli"]).decode(),
    }


async def _token_endpoint() -> tuple[web.AppRunner, str]:
    async def token(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(
            {"access_token": "bench-token", "token_type": "Bearer", "expires_in": 3600}
        )

    app = web.Application()
    app.router.add_post("/token", token)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/token"


async def _run(bench: Any, post: Any, base_url: str) -> tuple[load.LoadResult, float]:
    """Row 1b's loop (``load.ceiling``) with ``post(url, body, headers) -> status``."""
    a = bench.args
    key = decode_secret(generate_secret())
    per_lane = max(1, a.events // a.concurrency)
    deadline = time.monotonic() + a.phase_timeout
    done = errors = 0
    timed_out = False

    async def lane(i: int) -> None:
        nonlocal done, errors, timed_out
        url = f"{base_url}/rx/{i}"
        for j in range(per_lane):
            if time.monotonic() > deadline:
                timed_out = True
                return
            body = load.webhook_body(load.event_doc(f"evt_rx_{i}_{j}", "bench.rx", j))
            headers = load.signed_headers(key, f"msg_rx_{i}_{j}", body)
            if await post(url, body, headers) == 200:
                done += 1
            else:
                errors += 1

    cpu0, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(lane(i) for i in range(a.concurrency)))
    res = load.LoadResult(done, errors, time.perf_counter() - started, timed_out)
    return res, (time.process_time() - cpu0) / max(1, done) * 1000


async def phase_receivers(bench: Any, direct_client_ms: float) -> None:
    """Rows 1t, 1m and 1o (after 1b, whose client CPU per request they are set against)."""
    a = bench.args
    pems = make_certificates(bench.out)
    port = free_port()
    log = open(bench.out / "receiver-tls.log", "wb")
    command = [sys.executable, "-m", "bench.receiver", "--port", str(port)]
    command += ["--tls-cert", str(bench.out / "rx-cert.pem")]
    command += ["--tls-key", str(bench.out / "rx-key.pem")]
    command += ["--client-ca", str(bench.out / "rx-client-ca.pem")]
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    settings = Settings.from_env(
        {
            "WEBHOOK_STREAM_ALLOW_INSECURE_TARGETS": "1",
            "WEBHOOK_STREAM_HTTP_POOL_PER_HOST": str(a.concurrency + 10),
        }
    )
    http = HttpClient(settings)
    await http.start()
    runner, token_url = await _token_endpoint()
    try:
        wait_port(port, proc, 60)
        tls_url = f"https://127.0.0.1:{port}"
        base = {"id": "bench-rx", "event_types": ["bench.rx"]}
        with_ca = {
            "client_cert": pems["client_cert"],
            "client_key": pems["client_key"],
            "ca_cert": pems["server_ca"],
        }
        mtls = parse_subscription({**base, "url": tls_url, "tls": with_ca}, allow_insecure=True)
        oauth2 = parse_subscription(
            {
                **base,
                "url": bench.rurl(""),
                "auth": {
                    "type": "oauth2_client_credentials",
                    "token_url": token_url,
                    "client_id": "bench",
                    "client_secret": "bench-secret",
                },
            },
            allow_insecure=True,
        )
        # 1t: https with the server CA trusted, no client certificate: the TLS cost alone.
        trust_only = HttpClient(settings, tls=ssl.create_default_context(cadata=pems["server_ca"]))
        await trust_only.start()
        try:

            async def post_tls(url: str, body: bytes, headers: dict[str, str]) -> int | None:
                return (await trust_only.post(url, body, headers, 30.0)).status

            bench.say(f"1t {a.events:,} signed POSTs over https (no client certificate)")
            res_t, ms_t = await _run(bench, post_tls, tls_url)
        finally:
            await trust_only.close()

        async def post_mtls(url: str, body: bytes, headers: dict[str, str]) -> int | None:
            return (await http.post(url, body, headers, 30.0, tls=mtls.tls)).status

        bench.say(f"1m {a.events:,} signed POSTs over https with a client certificate")
        res_m, ms_m = await _run(bench, post_mtls, tls_url)

        credentials = ReceiverCredentials(http)

        async def post_oauth2(url: str, body: bytes, headers: dict[str, str]) -> int | None:
            return (await credentials.post(oauth2, url, body, headers, 30.0)).status

        bench.say(f"1o {a.events:,} signed POSTs with an OAuth2 bearer token (cached)")
        res_o, ms_o = await _run(bench, post_oauth2, bench.rurl(""))
    finally:
        await http.close()
        await runner.cleanup()
        stop_process(proc)
        log.close()
    rows = (
        ("1t", "https (server certificate only)", res_t, ms_t),
        ("1m", "https + client certificate (mTLS, the endpoint's tls)", res_m, ms_m),
        ("1o", "http + OAuth2 bearer token (cached; ReceiverCredentials)", res_o, ms_o),
    )
    for key, what, res, ms in rows:
        bench.raw[f"receivers_{key}"] = {**vars(res), "client_ms": ms}
        ratio = ms / direct_client_ms if direct_client_ms > 0 else float("nan")
        bench.say(f"  {key}: {res.rate:,.0f} req/s, client {ms:.3f} CPU-ms ({ratio:.2f}x of 1b)")
        bench.add_load_row(
            key,
            f"HTTP: webhook-stream's own client, {what}, C={a.concurrency}",
            res,
            "req/s",
            f"{res.done:,} POSTs, no Kafka; client CPU {ms:.3f} ms per request "
            f"({ratio:.2f}x of 1b's {direct_client_ms:.3f} ms)",
        )
