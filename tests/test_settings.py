"""Settings from LANES_* variables: defaults, nested secrets, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from lanes import ConfigError, load_settings


def test_defaults_match_the_design(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset variables give docs/DESIGN.md's defaults."""
    for name in ("LANES_CONFIG", "LANES_REDIS_URL", "LANES_SQS_ENDPOINT_URL", "LANES_QUEUE_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.config == Path("lanes.toml")
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.sqs_endpoint_url is None
    assert settings.queue_prefix == "lanes"


def test_credentials_are_nested_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """LANES_CREDENTIALS__MARKET__KEY becomes a SecretStr that does not print."""
    monkeypatch.setenv("LANES_CREDENTIALS__COUPANG__SECRET_KEY", "s3cr3t")
    settings = load_settings()
    secret = settings.credentials["coupang"]["secret_key"]
    assert secret.get_secret_value() == "s3cr3t"
    assert "s3cr3t" not in repr(settings)


def test_wrong_value_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A malformed variable names the setting in one line."""
    monkeypatch.setenv("LANES_REDIS_URL", "http://nope")
    with pytest.raises(ConfigError, match=r"^settings \(LANES_\*\): redis_url: ") as caught:
        load_settings()
    assert "\n" not in str(caught.value)
