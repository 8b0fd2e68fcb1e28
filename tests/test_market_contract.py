"""The market contract the README writes for users names every job kind and every endpoint
a TOML may override, for each built-in market (issue 18: users had to guess them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from markets.registry import MARKETS

_README = Path(__file__).resolve().parent.parent / "README.md"


def _markets_section() -> str:
    text = _README.read_text(encoding="utf-8")
    return text[text.index("## Markets\n") : text.index("## The worker\n")]


@pytest.mark.parametrize("name", sorted(MARKETS))
def test_the_readme_names_every_kind_and_endpoint_of_each_market(name: str) -> None:
    section = _markets_section()
    market = MARKETS[name]
    missing_kinds = [kind for kind in market.jobs if f"`{kind}`" not in section]
    endpoints = market.catalogue()["endpoints"]
    missing_endpoints = [endpoint for endpoint in endpoints if f"`{endpoint}`" not in section]
    assert (missing_kinds, missing_endpoints) == ([], [])


@pytest.mark.parametrize("name", sorted(MARKETS))
def test_the_readme_names_every_credential_of_each_market(name: str) -> None:
    section = _markets_section()
    market = MARKETS[name]
    keys = {*market.app_keys, *market.seller_keys({"token_type": "SELLER"})}
    assert [key for key in sorted(keys) if f"`{key}`" not in section] == []
