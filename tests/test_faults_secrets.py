"""Secrets inside URLs never reach a log line or a dead-letter attribute (docs/DESIGN.md
rule 8; issue 12 item 8): `redact_url`, the log processor, and a worker run end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog

from lanes.logs import REDACTED, configure_logging, redact_url


@pytest.fixture(autouse=True)
def _default_logging_after() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("http://lanes:hunter2@127.0.0.1:8080/results", "hunter2"),
        ("rediss://:hunter2@cache.example:6379/0", "hunter2"),
        ("results callback https://h.example/r?token=hunter2 answered 503", "hunter2"),
        ("https://h.example/r?a=1&access_token=hunter2&b=2", "hunter2"),
        ("https://s3.example/o?X-Amz-Signature=hunter2&X-Amz-Credential=AKIA/x", "hunter2"),
        ("https://h.example/cb?signature=hunter2#frag", "hunter2"),
        ("https://h.example/cb?api_key=hunter2", "hunter2"),
        ("POST https://u:p%40ss@h.example/x?password=hunter2", "hunter2"),
    ],
)
def test_redact_url_removes_the_credential(text: str, secret: str) -> None:
    """A URL's password and secret-named query values are replaced; the rest stays."""
    redacted = redact_url(text)
    assert secret not in redacted
    assert REDACTED in redacted
    assert redacted.split("://")[1].split("@")[-1].split("/")[0] in text  # the host stays


@pytest.mark.parametrize(
    "text",
    [
        "job.finished in 0.2 s",
        "https://api.example/v2/orders?status=ACCEPT&maxPerPage=50",
        "user@example.com wrote a=b",
    ],
)
def test_redact_url_leaves_ordinary_text(text: str) -> None:
    """Text without credentials is unchanged (no over-eager redaction of ordinary fields)."""
    assert redact_url(text) == text


def test_every_log_value_is_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    """A URL with credentials in the event, a value, a nested value or an exception's text:
    the line holds none of them."""
    configure_logging("info")
    url = "http://lanes:pw-1@h.example/results?token=tk-1"
    log = structlog.get_logger().bind(sink=url)
    try:
        raise RuntimeError(f"results callback {url} answered 503")
    except RuntimeError:
        log.exception(f"sink failed: {url}", detail={"urls": [url]})
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "pw-1" not in line
    assert "tk-1" not in line
    assert json.loads(line)["sink"] == f"http://lanes:{REDACTED}@h.example/results?token={REDACTED}"
