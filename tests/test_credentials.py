"""Credential lookup: per-seller keys first, then market-wide, case-insensitively."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from markets import PermanentError
from markets.credentials import Credentials


def test_seller_keys_win_then_market_wide_ones() -> None:
    """`<seller>.name` or `<seller>_name` for that seller; others get the market-wide key."""
    credentials = Credentials(
        "coupang",
        {
            "secret_key": SecretStr("shared"),
            "a0001.secret_key": SecretStr("dotted"),
            "A0002_SECRET_KEY": SecretStr("underscored"),
        },
    )
    assert credentials.get("secret_key", "A0001").get_secret_value() == "dotted"
    assert credentials.get("secret_key", "a0002").get_secret_value() == "underscored"
    assert credentials.get("secret_key", "A0003").get_secret_value() == "shared"
    assert credentials.get("secret_key").get_secret_value() == "shared"


def test_a_missing_credential_names_the_variable() -> None:
    """Missing: a PermanentError that says which environment variable to set."""
    with pytest.raises(PermanentError, match="LANES_CREDENTIALS__NAVER__CLIENT_ID"):
        Credentials("naver", {}).get("client_id", "s-1")


def test_the_secret_never_shows_in_a_repr() -> None:
    """Values stay SecretStr: printing them shows no secret."""
    found = Credentials("naver", {"client_secret": SecretStr("$2a$04$x")}).get("client_secret")
    assert "$2a$" not in repr(found)
