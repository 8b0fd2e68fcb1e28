"""Logs: JSON lines on stdout with secrets redacted."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog
from pydantic import SecretStr

from lanes.logs import REDACTED, configure_logging, redact_secrets


@pytest.fixture(autouse=True)
def _default_logging_after() -> Iterator[None]:
    """configure_logging binds the captured stdout, closed after the test: undo it, or every
    logger first used later (cached on first use) writes to a closed file."""
    yield
    structlog.reset_defaults()


def test_json_line_with_bound_context_and_no_secret(capsys: pytest.CaptureFixture[str]) -> None:
    """A log line is one JSON object; secret-looking keys and SecretStr values are redacted."""
    configure_logging("info")
    log = structlog.get_logger().bind(market="acme", lane="high")
    log.info(
        "called",
        client_secret="hunter2",
        headers={"Authorization": "CEA signature=abc", "Accept": "json"},
        key=SecretStr("also-secret"),
    )
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["event"] == "called"
    assert line["market"] == "acme"
    assert line["lane"] == "high"
    assert line["client_secret"] == REDACTED
    assert line["headers"] == {"Authorization": REDACTED, "Accept": "json"}
    assert line["key"] == REDACTED
    assert "hunter2" not in json.dumps(line)


def test_credentials_inside_urls_are_redacted_in_every_value() -> None:
    """Issue 12 (8): userinfo and secret query parameters of any URL in any value (the event
    text included) are redacted; the rest of the URL stays readable."""
    line = redact_secrets(
        None,
        "info",
        {
            "event": "posting to https://bob:hunter2@sink.example/r?token=s3cret",
            "error": ["redis://:pw@localhost:6379/0 refused", {"url": "http://h/p?api_key=k1"}],
        },
    )
    text = str(line)
    for secret in ("hunter2", "s3cret", ":pw@", "k1"):
        assert secret not in text
    assert "sink.example/r?token=[redacted]" in text
