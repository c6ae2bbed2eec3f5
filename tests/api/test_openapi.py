"""The OpenAPI document: valid, complete, and in step with the code it describes."""

from __future__ import annotations

import base64
import re
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from tests.support import Worker
from webhook_stream.api.errors import CODES
from webhook_stream.api.openapi.document import (
    OPERATIONS,
    UndocumentedRoute,
    build_document,
    registered_routes,
)
from webhook_stream.api.openapi.schemas import SERVER_FIELDS, SUBSCRIPTION_FIELDS
from webhook_stream.application import create_app
from webhook_stream.core.errors import InvalidSubscription
from webhook_stream.core.settings import Settings
from webhook_stream.subscriptions import validation
from webhook_stream.subscriptions.validation import parse_subscription


def test_every_registered_route_is_documented_and_nothing_else() -> None:
    app = create_app(Settings(api_token="x"))
    app.web.init_server()  # applies Faust's own blueprints, as the worker does
    routes = registered_routes(app.web.web_app.router)
    assert routes == {(op.path, op.method) for op in OPERATIONS}
    doc = build_document(routes)
    assert {(p, m.upper()) for p, ops in doc["paths"].items() for m in ops} == routes
    with pytest.raises(UndocumentedRoute):
        build_document(routes | {("/undocumented", "GET")})
    with pytest.raises(UndocumentedRoute):
        build_document(routes - {("/replay", "POST")})


async def test_the_served_document_validates(worker: Worker) -> None:
    async with httpx.AsyncClient(base_url=worker.url) as client:
        r = await client.get("/openapi.json")  # open: no token
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    doc = r.json()
    validate(doc)  # openapi-spec-validator, OpenAPI 3.1
    assert doc["openapi"] == "3.1.0"
    assert doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"][
        "enum"
    ] == sorted(CODES)
    ops = [op for methods in doc["paths"].values() for op in methods.values()]
    assert len({op["operationId"] for op in ops}) == len(ops)
    for op in ops:
        if op["security"]:
            assert {"401", "403", "503"} <= set(op["responses"]), op["operationId"]


async def test_docs_renders_the_document_from_vendored_files(worker: Worker) -> None:
    async with httpx.AsyncClient(base_url=worker.url) as client:
        page = await client.get("/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert assets and all(a.startswith("/docs/") for a in assets)  # no CDN
        for asset in assets:
            r = await client.get(asset)
            assert r.status_code == 200 and len(r.content) > 100, asset
        js = (await client.get("/docs/docs.js")).text
        assert '"/openapi.json"' in js
        assert (
            (await client.get("/docs/swagger-ui.css"))
            .headers["content-type"]
            .startswith("text/css")
        )
        for bad in ("/docs/nope.js", "/docs/..%2Fdocs.py", "/docs/docs.html"):
            r = await client.get(bad)
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", bad


# -- the subscription fields against the validator ----------------------------------------

BASE = {"id": "ep_x", "url": "https://example.com/hook", "event_types": ["a.b"]}


def _outcome(field: str, value: Any) -> str | None:
    """None if accepted, else the field the validator names."""
    try:
        parse_subscription({**BASE, field: value}, allow_insecure=False)
    except InvalidSubscription as exc:
        return exc.field
    return None


def _concrete(schema: dict[str, Any]) -> dict[str, Any]:
    if "anyOf" in schema and {"type": "null"} in schema["anyOf"]:
        return next(s for s in schema["anyOf"] if s != {"type": "null"})
    return schema


def _secret(n: int) -> str:
    return "whsec_" + base64.b64encode(b"k" * n).decode()


def _sample(field: str, length: int) -> str:
    """A value of ``field`` that is valid apart from its length."""
    if field == "url":
        return "https://example.com/" + "a" * (length - len("https://example.com/"))
    return "a" * length


def test_the_document_names_every_subscription_field() -> None:
    assert set(SUBSCRIPTION_FIELDS) | set(SERVER_FIELDS) == set(validation._FIELDS)
    assert _outcome("bogus", 1) == "bogus"  # additionalProperties: false is true


@pytest.mark.parametrize("field", sorted(SUBSCRIPTION_FIELDS))
def test_each_documented_bound_is_the_validators(field: str) -> None:
    schema = _concrete(SUBSCRIPTION_FIELDS[field])
    checked = 0
    kind = schema.get("type")
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema["maximum"]
        step = 1 if kind == "integer" else 0.001
        assert _outcome(field, high) is None and _outcome(field, high + step) == field
        if "minimum" in schema:
            assert _outcome(field, low) is None
        assert _outcome(field, low - step if "minimum" in schema else low) == field
        assert _outcome(field, "1") == field and _outcome(field, True) == field
        checked += 1
    if kind == "string" and "maxLength" in schema and field != "secret":
        n = schema["maxLength"]
        assert _outcome(field, _sample(field, n)) is None
        assert _outcome(field, _sample(field, n + 1)) == field
        assert _outcome(field, 5) == field
        checked += 1
    if kind == "string" and "enum" in schema:
        assert all(_outcome(field, v) is None for v in schema["enum"])
        assert _outcome(field, "other") == field and _outcome(field, 1) == field
        checked += 1
    if field == "secret":
        assert len(_secret(24)) == schema["minLength"] and len(_secret(64)) == schema["maxLength"]
        assert _outcome(field, _secret(24)) is None and _outcome(field, _secret(64)) is None
        assert _outcome(field, _secret(23)) == field and _outcome(field, _secret(65)) == field
        for n in range(20, 70):
            matches = re.fullmatch(schema["pattern"], _secret(n)) is not None
            assert matches == (24 <= n <= 64) == (_outcome(field, _secret(n)) is None), n
        checked += 1
    if kind == "array":
        item = _concrete(schema["items"])
        sample: Any = {
            "event_types": "a.b",
            "retry_schedule": "5s",
            "retry_status_codes": 500,
        }[field]
        if "maxItems" in schema:
            assert (
                _outcome(
                    field,
                    [
                        f"t{i}" if field == "event_types" else sample
                        for i in range(schema["maxItems"])
                    ],
                )
                is None
            )
            too_many = [sample] * (schema["maxItems"] + 1)
            assert _outcome(field, too_many) is not None
        if schema.get("minItems"):
            assert _outcome(field, []) == field
        if "minimum" in item:
            assert _outcome(field, [item["minimum"]]) is None
            assert _outcome(field, [item["minimum"] - 1]) == f"{field}[0]"
            assert _outcome(field, [item["maximum"] + 1]) == f"{field}[0]"
        if "maxLength" in item:
            assert _outcome(field, ["a" * item["maxLength"]]) is None
            assert _outcome(field, ["a" * (item["maxLength"] + 1)]) == f"{field}[0]"
            assert _outcome(field, ["a b"]) == f"{field}[0]"
        checked += 1
    if field == "auth":
        basic, oauth2 = schema["oneOf"]
        good = {"type": "basic", "username": "u", "password": "p"}
        assert _outcome(field, good) is None and _outcome(field, "x") == field
        assert _outcome(field, {**good, "type": "x"}) == "auth.type"
        assert _outcome(field, {**good, "bogus": 1}) == "auth.bogus"
        n = basic["properties"]["password"]["maxLength"]
        assert _outcome(field, {**good, "password": "p" * n}) is None
        assert _outcome(field, {**good, "password": "p" * (n + 1)}) == "auth.password"
        o = {"type": "oauth2_client_credentials", "token_url": "https://a.example.com/t"}
        o |= {"client_id": "c", "client_secret": "s"}
        assert _outcome(field, o) is None
        for name in oauth2["required"]:
            if name != "type":
                gone = {k: v for k, v in o.items() if k != name}
                assert _outcome(field, gone) == f"auth.{name}"
        for name in ("client_id", "client_secret"):
            n = oauth2["properties"][name]["maxLength"]
            assert _outcome(field, {**o, name: "c" * n}) is None
            assert _outcome(field, {**o, name: "c" * (n + 1)}) == f"auth.{name}"
        for value in oauth2["properties"]["client_auth"]["enum"]:
            assert _outcome(field, {**o, "client_auth": value}) is None
        assert _outcome(field, {**o, "client_auth": "x"}) == "auth.client_auth"
        checked += 1
    if field == "tls":
        assert set(schema["required"]) == {"client_cert", "client_key"}
        assert _outcome(field, {"client_cert": "x", "client_key": "y"}) == "tls.client_cert"
        assert _outcome(field, "x") == field
        checked += 1
    if field == "filter":
        assert _outcome(field, schema["example"]) is None
        assert _outcome(field, {"payload": 1}) == "filter.payload"  # not in propertyNames
        assert _outcome(field, {"$or": [{"id": str(i)} for i in range(300)]}) is not None
        assert _outcome(field, []) == field
        checked += 1
    elif kind == "object" and field == "headers":
        n = schema["maxProperties"]
        assert _outcome(field, {f"X-H{i}": "v" for i in range(n)}) is None
        assert _outcome(field, {f"X-H{i}": "v" for i in range(n + 1)}) == field
        assert _outcome(field, {"X-A": "a" * 4096}) is None
        assert _outcome(field, {"X-A": "a" * 4097}) == "headers.X-A"
        assert _outcome(field, {"bad name": "v"}) == field
        checked += 1
    if kind == "boolean":
        assert _outcome(field, True) is None and _outcome(field, "yes") == field
        checked += 1
    if "pattern" in schema and kind == "string" and field not in ("secret",):
        assert re.fullmatch(schema["pattern"].replace("\\u", "\\u"), _sample(field, 5))
    assert checked, f"no bound of {field} was checked against the validator"
