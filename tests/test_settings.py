"""Settings from LANES_* variables: defaults, nested secrets, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from lanes import ConfigError, load_settings
from lanes.settings import unknown_variables
from scripts.settings import CliSettings


def test_defaults_match_the_design(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset variables give docs/DESIGN.md's defaults."""
    for name in ("LANES_CONFIG", "LANES_REDIS_URL", "LANES_SQS_ENDPOINT_URL", "LANES_QUEUE_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(CliSettings)
    assert settings.config == Path("lanes.toml")
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.sqs_endpoint_url is None
    assert settings.queue_prefix == "lanes"


def test_credentials_are_nested_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """LANES_CREDENTIALS__MARKET__KEY becomes a SecretStr that does not print."""
    monkeypatch.setenv("LANES_CREDENTIALS__COUPANG__SECRET_KEY", "s3cr3t")
    settings = load_settings(CliSettings)
    secret = settings.credentials["coupang"]["secret_key"]
    assert secret.get_secret_value() == "s3cr3t"
    assert "s3cr3t" not in repr(settings)


def test_wrong_value_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A malformed variable names the setting in one line."""
    monkeypatch.setenv("LANES_REDIS_URL", "http://nope")
    with pytest.raises(ConfigError, match=r"^settings \(LANES_\*\): redis_url: ") as caught:
        load_settings(CliSettings)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("LANES_WAIT_SECONDS", "0", "wait_seconds"),
        ("LANES_WAIT_SECONDS", "21", "wait_seconds"),
        ("LANES_GRACE_SECONDS", "inf", "grace_seconds"),
        ("LANES_CONCURRENCY", "0", "concurrency"),
        ("LANES_SQS_ENDPOINT_URL", "localhost:5000", "sqs_endpoint_url"),
        ("LANES_CREDENTIALS", "coupang=abc", "credentials: not valid JSON"),
        ("LANES_CREDENTIALS", '{"coupang": 1}', "credentials"),
        ("LANES_IDEMPOTENCY_TTL", "100000000000000000", "idempotency_ttl"),
        ("LANES_IDEMPOTENCY_TTL", "1e17", "idempotency_ttl"),
    ],
)
def test_each_setting_mistake_is_one_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fragment: str
) -> None:
    """A zero poll wait (an idle worker would spin), infinity, a URL without a scheme or
    credentials that are not JSON: one line naming the setting, never a traceback."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(CliSettings)
    assert "\n" not in str(caught.value)
    assert fragment in str(caught.value)


def test_an_unknown_variable_names_the_closest_setting() -> None:
    """`LANES_CONCURENCY` (a typo) is reported with the setting it probably meant; known
    variables, nested credentials and other prefixes are not."""
    warnings = unknown_variables(
        CliSettings,
        {
            "LANES_CONCURENCY": "8",
            "LANES_CONCURRENCY": "8",
            "LANES_CREDENTIALS__COUPANG__SECRET_KEY": "x",
            "LANES_ZZZ": "1",
            "PATH": "/bin",
        },
    )
    assert warnings == [
        "LANES_CONCURENCY is not a lanes setting (did you mean LANES_CONCURRENCY?); it is ignored",
        "LANES_ZZZ is not a lanes setting; it is ignored",
    ]
