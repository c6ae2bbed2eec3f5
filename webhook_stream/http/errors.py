"""The transport errors of both HTTP clients: what an attempt that got no response says."""

from __future__ import annotations

__all__ = ["Refused"]


class Refused(Exception):
    """An attempt that failed before or while connecting, with its error class."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error
