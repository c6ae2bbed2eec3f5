"""What a tenant id may be: two ids that look the same must be the same tenant."""

from __future__ import annotations

import unicodedata

__all__ = ["tenant_id_problem"]

#: Characters no tenant id may hold: controls, format characters (zero-width joiners and
#: spaces, bidi marks), separators other than the plain space, private use, unassigned.
_INVISIBLE = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})


def tenant_id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a tenant id, or None.

    Two tenant ids that look the same must be the same: NFC-normalised text only, with
    no invisible characters (zero-width, bidi, control) and no spaces but single inner
    ones. Refused rather than normalised, so that no id silently becomes another tenant's.
    """
    if unicodedata.normalize("NFC", value) != value:
        return "must be NFC-normalised Unicode"
    if value != value.strip() or "  " in value:
        return "must not start or end with spaces or hold two in a row"
    for ch in value:
        if unicodedata.category(ch) in _INVISIBLE or (ch.isspace() and ch != " "):
            return f"must not contain invisible characters (U+{ord(ch):04X})"
    return None
