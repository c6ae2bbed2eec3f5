"""The package's shape: public surface pinned, roles layered, modules small."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import webhook_stream

PACKAGE = Path(webhook_stream.__file__).parent
ROLES = ("core", "http", "subscriptions", "ingest", "status", "failures", "delivery", "api")


def test_public_names_are_pinned() -> None:
    assert sorted(webhook_stream.__all__) == [
        "ConfigError",
        "InvalidSubscription",
        "RejectedEvent",
        "WebhookStreamError",
        "WebhookVerificationError",
        "__version__",
        "app",
        "sign",
        "verify",
    ]
    for name in webhook_stream.__all__:
        if name != "app":  # built on first access: the worker's, not a receiver's
            assert getattr(webhook_stream, name) is not None


def test_importing_the_package_for_verify_loads_no_worker_code() -> None:
    code = (
        "import sys, webhook_stream; "
        "print(sorted(m for m in sys.modules if m.startswith('webhook_stream.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    for heavy in ("faust", "webhook_stream.application", "webhook_stream.runtime"):
        assert f"'{heavy}" not in out


def test_layering_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(lint)], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "0 broken" in run.stdout


def test_every_role_says_what_it_owns_and_may_import() -> None:
    for role in ROLES:
        doc = (PACKAGE / role / "__init__.py").read_text()
        assert doc.startswith('"""'), role
        assert "import" in doc.lower(), f"{role}/__init__.py must say what it may import"


def test_no_module_is_over_450_lines() -> None:
    sizes = {
        str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > 450} == {}
