"""A real OAuth2 token endpoint for tests: Authlib's authorization server on aiohttp.

:class:`TokenServer` serves ``POST /token`` (client credentials grant, client secret by
HTTP Basic or in the form body) on 127.0.0.1 and issues bearer tokens that expire after
``expires_in`` seconds; :meth:`TokenServer.valid` is what a protected receiver asks.
``outage`` makes it answer 503, ``revoke()`` invalidates every token issued so far.
"""

from __future__ import annotations

import os
import secrets
import time
from collections import defaultdict
from functools import cached_property
from typing import Any

import orjson
from aiohttp import web
from authlib.oauth2.rfc6749 import AuthorizationServer, ClientMixin, OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6750 import BearerTokenGenerator

# Loopback http:// in tests; Authlib refuses http:// token URLs unless told otherwise.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")


class _Client(ClientMixin):
    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id = client_id
        self.client_secret = client_secret

    def get_client_id(self) -> str:
        return self.client_id

    def get_allowed_scope(self, scope: str | None) -> str:
        return scope or ""

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"


class _Grant(ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class _Payload(OAuth2Payload):
    def __init__(self, form: dict[str, str]) -> None:
        self._form = form

    @property
    def data(self) -> dict[str, str]:
        return self._form

    @cached_property
    def datalist(self) -> defaultdict[str, list]:
        out: defaultdict[str, list] = defaultdict(list)
        for k, v in self._form.items():
            out[k].append(v)
        return out


class _Request(OAuth2Request):
    def __init__(self, method: str, url: str, headers: Any, form: dict[str, str]) -> None:
        super().__init__(method=method, uri=url, headers=headers)
        self._form = form
        self.payload = _Payload(form)

    @property
    def args(self) -> dict[str, str]:
        return {}

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _Server(AuthorizationServer):
    def __init__(self, owner: TokenServer) -> None:
        super().__init__()
        self.owner = owner

    def query_client(self, client_id: str) -> _Client | None:
        return self.owner.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        self.owner.issued.append(token)
        self.owner.tokens[token["access_token"]] = time.time() + token["expires_in"]

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        return request  # built by the handler (it has read the body already)

    def handle_response(self, status: int, body: Any, headers: Any) -> web.Response:
        return web.Response(status=status, body=orjson.dumps(body), headers=dict(headers))


class TokenServer:
    """``POST /token`` on 127.0.0.1 (Authlib), tokens valid for ``expires_in`` seconds."""

    def __init__(self, client_id: str, client_secret: str, expires_in: int = 3600) -> None:
        self.clients = {client_id: _Client(client_id, client_secret)}
        self.expires_in = expires_in
        self.tokens: dict[str, float] = {}
        self.issued: list[dict[str, Any]] = []
        self.requests: list[dict[str, str]] = []  # form fields of each request (no secret kept)
        self.outage = False
        self.port = 0
        self._server = _Server(self)
        self._server.register_grant(_Grant)
        self._server.register_token_generator(
            "default",
            BearerTokenGenerator(
                lambda *_a, **_k: secrets.token_urlsafe(24),
                expires_generator=lambda client, grant_type: self.expires_in,
            ),
        )
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    async def start(self) -> TokenServer:
        app = web.Application()
        app.router.add_post("/token", self._token)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def valid(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header carries an issued, unexpired bearer token."""
        if not authorization or not authorization.startswith("Bearer "):
            return False
        expires = self.tokens.get(authorization[len("Bearer ") :])
        return expires is not None and expires > time.time()

    def revoke(self) -> None:
        self.tokens.clear()

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        self.requests.append({k: v for k, v in form.items() if k != "client_secret"})
        if self.outage:
            return web.Response(status=503, text="token endpoint down")
        oauth_request = _Request(request.method, str(request.url), request.headers, form)
        return self._server.create_token_response(oauth_request)
