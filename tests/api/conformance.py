"""Responses checked against the worker's OpenAPI document, for the API tests."""

from __future__ import annotations

import re
from typing import Any

import httpx
import jsonschema


class Conformance:
    """Checks responses against the worker's OpenAPI document (``/openapi.json``).

    Use :meth:`client` for an httpx client whose every response is checked: the status
    must be documented for the operation and a JSON body must match its schema.
    """

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.checked = 0
        self._routes = []
        for template, methods in document["paths"].items():
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
            self._routes.append((re.compile(f"^{pattern}$"), template, methods))

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]]:
        for pattern, template, methods in self._routes:
            if pattern.match(path) and method.lower() in methods:
                return template, methods[method.lower()]
        raise AssertionError(f"{method} {path} is not in the OpenAPI document")

    def check(self, response: httpx.Response) -> None:
        request = response.request
        template, op = self.operation(request.method, request.url.path)
        spec = op["responses"].get(str(response.status_code))
        assert spec is not None, (
            f"{request.method} {template}: status {response.status_code} undocumented: "
            f"{response.text[:300]}"
        )
        if "$ref" in spec:
            spec = self.document["components"]["responses"][spec["$ref"].rsplit("/", 1)[-1]]
        schema = spec.get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            return
        assert response.headers["content-type"].startswith("application/json")
        root = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.document["components"],
            "allOf": [schema],
        }
        errors = list(jsonschema.Draft202012Validator(root).iter_errors(response.json()))
        assert not errors, (
            f"{request.method} {template} {response.status_code}: "
            f"{[e.message for e in errors][:3]}: {response.text[:300]}"
        )
        self.checked += 1

    def client(self, base_url: str, token: str | None) -> httpx.AsyncClient:
        async def hook(response: httpx.Response) -> None:
            await response.aread()
            self.check(response)

        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=15, event_hooks={"response": [hook]}
        )
