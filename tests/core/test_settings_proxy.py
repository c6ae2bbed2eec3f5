"""The egress proxy settings: parsed, validated, and the password never shown."""

from __future__ import annotations

import pytest

from webhook_stream.core.errors import ConfigError
from webhook_stream.core.settings import Settings

PASSWORD = "hunter2-please-ignore"


def test_proxy_password_is_never_in_the_settings_repr() -> None:
    settings = Settings.from_env(
        {
            "WEBHOOK_STREAM_EGRESS_PROXY": f"http://hooks:{PASSWORD}@proxy.internal:3128",
            "WEBHOOK_STREAM_EGRESS_NO_PROXY": "*.corp.example, .Hooks.Internal,",
        }
    )
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings)
    assert "ProxyURL('http://hooks:****@proxy.internal:3128')" in repr(settings)
    assert settings.egress_proxy == f"http://hooks:{PASSWORD}@proxy.internal:3128"
    assert settings.egress_no_proxy == ("corp.example", "hooks.internal")
    built = Settings(egress_proxy=f"http://hooks:{PASSWORD}@proxy.internal:3128")  # in code
    assert PASSWORD not in repr(built)


def test_unset_proxy_means_direct() -> None:
    assert Settings.from_env({}).egress_proxy == ""


@pytest.mark.parametrize(
    "url",
    [
        f"socks5://hooks:{PASSWORD}@proxy:1080",
        f"http://hooks:{PASSWORD}@proxy:3128/path",
        f"http://hooks:{PASSWORD}@:3128",
        f"http://hooks:{PASSWORD}@proxy:99999",
    ],
)
def test_a_bad_proxy_url_is_a_config_error_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"WEBHOOK_STREAM_EGRESS_PROXY": url})
    assert "WEBHOOK_STREAM_EGRESS_PROXY" in str(caught.value)
    assert PASSWORD not in str(caught.value)
