"""The documentation cannot drift from the code: the README's size, the package tree on
the architecture page, the settings reference (its generator) and the docs build."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "webhook_stream"
ARCHITECTURE = ROOT / "docs" / "concepts" / "architecture.md"


def documented_tree() -> set[str]:
    """Paths drawn in the architecture page's ``webhook_stream/`` tree."""
    text = ARCHITECTURE.read_text()
    tree = text[text.index("webhook_stream/\n") :]
    tree = tree[: tree.index("```")]
    names: set[str] = set()
    stack: list[str] = []
    for line in tree.splitlines()[1:]:
        m = re.match(r"^([│ ]*)[├└]── (\S+)", line)
        if m:
            depth = len(m.group(1)) // 4
            stack = [*stack[:depth], m.group(2)]
            names.add("".join(stack))
    return names


def package_tree() -> set[str]:
    out: set[str] = set()
    for path in PACKAGE.rglob("*"):
        rel = path.relative_to(PACKAGE)
        if "__pycache__" in rel.parts or (len(rel.parts) > 2 and rel.parts[1] == "static"):
            continue
        if path.is_dir():
            out.add(str(rel) + "/")
        elif path.suffix == ".py" and (path.name != "__init__.py" or len(rel.parts) == 1):
            out.add(str(rel))
    return out


def test_the_architecture_page_draws_every_module_and_no_other() -> None:
    drawn, real = documented_tree(), package_tree()
    assert not drawn - real, f"drawn but not in the package: {sorted(drawn - real)}"
    assert not real - drawn, f"in the package but not drawn: {sorted(real - drawn)}"


def test_the_readme_is_a_front_door() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, len(lines)


def test_every_setting_is_described_and_no_description_is_stale(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import hooks  # docs/hooks.py: what `make docs` runs
    finally:
        sys.path.remove(str(ROOT / "docs"))
    table = hooks.settings_table()
    assert "`WEBHOOK_STREAM_SESSION_TIMEOUT` | `10s` |" in table
    assert "`WEBHOOK_STREAM_FETCH_MAX_WAIT` | `20ms` |" in table
    # A copy with one setting misnamed (the repository's file is never edited).
    broken = tmp_path / "settings.yml"
    broken.write_text(hooks.DESCRIPTIONS.read_text().replace("\nbroker:\n", "\nbrokerr:\n", 1))
    with pytest.raises(hooks.UndocumentedSetting, match="broker"):
        hooks.settings_table(broken)
