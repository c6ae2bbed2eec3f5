"""The collector's young-generation threshold: a setting, checked, passed to the status view."""

from __future__ import annotations

import pytest

from webhook_stream.core.errors import ConfigError
from webhook_stream.core.settings import Settings
from webhook_stream.status import process


def test_default_is_raised_and_read_from_the_environment() -> None:
    assert Settings.from_env({}).gc_threshold == 50_000
    assert Settings.from_env({"WEBHOOK_STREAM_GC_THRESHOLD": "700"}).gc_threshold == 700


def test_below_pythons_default_is_refused_with_the_name() -> None:
    with pytest.raises(ConfigError, match="WEBHOOK_STREAM_GC_THRESHOLD"):
        Settings.from_env({"WEBHOOK_STREAM_GC_THRESHOLD": "0"})


def test_the_status_view_process_gets_it() -> None:
    assert "gc_threshold" in process._VIEW_SETTINGS
