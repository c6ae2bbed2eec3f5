"""schemathesis hooks (``SCHEMATHESIS_HOOKS=tests.api.st_hooks``): keep traffic on loopback.

Generated subscriptions and test events would otherwise be delivered to whatever URL was
generated; every ``url`` in a request body is pointed at the test's own receiver instead.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

RECEIVER = os.environ.get("WS_TEST_RECEIVER_URL", "http://127.0.0.1:9/")


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if isinstance(case.body, dict) and "url" in case.body:
        case.body["url"] = RECEIVER
