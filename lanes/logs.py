"""structlog set-up: JSON lines on stdout, CloudWatch-ready, secrets redacted."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog
from pydantic import SecretStr

__all__ = ["REDACTED", "configure_logging", "redact_secrets", "redact_url"]

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(r"secret|password|token|authorization|signature|sign|api_?key", re.I)
# The password of `scheme://user:password@host` (the user name is kept: it helps and is no key).
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^\s:/?#@]*:)[^\s/?#@]+(?=@)", re.I)
# A query or form value whose name looks secret: `?token=`, `&access_token=`,
# `X-Amz-Signature=`, `sig=`, `api_key=`, `password=`, `credential=`.
_SECRET_PARAM = re.compile(
    r"(?P<head>(?:^|[?&;\s])[\w.-]*(?:token|secret|passw(?:or)?d|signature|sig|api_?key|credential"
    r"|auth)[\w.-]*=)[^&#;\s\"',]+",
    re.I,
)


def redact_url(text: str) -> str:
    """`text` with the secrets of any URL in it replaced: the password of `user:password@`
    and the value of secret-named query parameters (`token`, `access_token`, `signature`...).

    Cheap for text holding no URL or parameter (the common log line).
    """
    if "@" in text:
        text = _URL_PASSWORD.sub(rf"\g<head>{REDACTED}", text)
    if "=" in text:
        text = _SECRET_PARAM.sub(rf"\g<head>{REDACTED}", text)
    return text


def _redact(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return REDACTED
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, Mapping):
        return {
            key: REDACTED if _SECRET_KEY.search(str(key)) else _redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(item) for item in value]
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: secret-looking keys, `SecretStr` values and the credentials
    inside URLs (docs/DESIGN.md rule 8) never reach a line."""
    for key in list(event_dict):
        if _SECRET_KEY.search(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact(event_dict[key])
    return event_dict


def _stdout_logger(*_args: Any) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stdout)


def configure_logging(level: str = "info") -> None:
    """JSON lines on stdout with ISO timestamps; call once per process."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        # Resolved per logger, not cached: stdout is whatever it is when a line is
        # written (a redirected or replaced stream is never written after closing).
        logger_factory=_stdout_logger,
        cache_logger_on_first_use=False,
    )
