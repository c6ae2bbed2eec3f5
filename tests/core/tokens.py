"""A token provider for the OAUTHBEARER hook test (``module:callable``)."""

from __future__ import annotations

from aiokafka.abc import AbstractTokenProvider


class _Provider(AbstractTokenProvider):
    async def token(self) -> str:
        return "test-oauth-token"


def provider() -> AbstractTokenProvider:
    return _Provider()
