"""The TOML file: validated models and one-line errors naming the field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from lanes import ConfigError, Lane, Window
from markets import load_config
from markets.config import Config

WriteToml = Callable[[str], Path]


@pytest.fixture
def write_toml(tmp_path: Path) -> WriteToml:
    """Factory: write TOML text to a file and return its path."""

    def write(text: str) -> Path:
        path = tmp_path / "lanes.toml"
        path.write_text(text)
        return path

    return write


ACME = """
[markets.acme]
base_url = "https://api.acme.example"

[markets.acme.endpoints.orders]
method = "GET"
path = "/api/orders"
rps = 20
"""


def test_design_example_loads_with_default_lanes(write_toml: WriteToml) -> None:
    """docs/DESIGN.md's example file loads; lanes it omits keep their defaults."""
    config = load_config(write_toml("[lanes.low]\nceiling = 0.6\n" + ACME))
    assert config.lanes[Lane.LOW].ceiling == 0.6
    assert config.lanes[Lane.LOW].max_attempts == 3
    assert config.lanes[Lane.MEDIUM].ceiling == 0.8
    endpoint = config.market("acme").endpoints["orders"]
    assert endpoint.all_windows() == (Window(limit=20, seconds=1.0),)


def test_a_bucket_alone_limits_an_endpoint(write_toml: WriteToml) -> None:
    """`bucket = {size = 40, refill_per_second = 2}` is a limit of its own (no window)."""
    config = load_config(
        write_toml(ACME.replace("rps = 20", "bucket = {size = 40, refill_per_second = 2}"))
    )
    orders = config.market("acme").endpoints["orders"]
    assert orders.all_windows() == ()
    assert orders.bucket is not None
    assert orders.bucket.seconds == 20.0


def test_fractional_rps_becomes_a_longer_window(write_toml: WriteToml) -> None:
    """rps = 0.5 is one request per 2 seconds; extra windows follow the rps window."""
    config = load_config(
        write_toml(ACME.replace("rps = 20", "rps = 0.5\nwindows = [{limit = 100, seconds = 60}]"))
    )
    assert config.market("acme").endpoints["orders"].all_windows() == (
        Window(limit=1, seconds=2.0),
        Window(limit=100, seconds=60.0),
    )


def test_lend_idle_is_off_unless_a_market_asks(write_toml: WriteToml) -> None:
    """Lending (docs/DESIGN.md rule 2) is opt-in per market, and strictly a boolean."""
    assert not load_config(write_toml(ACME)).market("acme").lend_idle
    lending = ACME.replace('base_url = "', 'lend_idle = true\nbase_url = "')
    assert load_config(write_toml(lending)).market("acme").lend_idle
    with pytest.raises(ConfigError, match="lend_idle"):
        load_config(write_toml(lending.replace("lend_idle = true", 'lend_idle = "yes"')))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (ACME.replace("rps = 20", "rps = -1"), "markets.acme.endpoints.orders.rps"),
        (ACME.replace("rps = 20", ""), "needs rps, windows, a bucket or a budget group"),
        (ACME.replace('base_url = "https', 'base_url = "ftp'), "markets.acme.base_url"),
        (ACME + "\n[lanes.low]\nceiling = 2\n", "lanes.low.ceiling"),
        (ACME.replace('method = "GET"', 'method = "GET"\ncolour = "red"'), "colour"),
        (ACME.replace("rps = 20", 'group = "missing"'), "unknown budget group"),
        (
            ACME.replace("rps = 20", "bucket = {size = 0, refill_per_second = 2}"),
            "markets.acme.endpoints.orders.bucket.size",
        ),
        (
            ACME.replace("rps = 20", 'bucket = {size = 40, refill_per_second = "2"}'),
            "bucket.refill_per_second",
        ),
    ],
)
def test_wrong_file_gives_one_line_naming_the_field(
    write_toml: WriteToml, text: str, message: str
) -> None:
    """Each mistake is one line that names the file and the field."""
    with pytest.raises(ConfigError) as caught:
        load_config(write_toml(text))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(str(write_toml("").parent))


def test_missing_or_broken_file_is_one_line(tmp_path: Path, write_toml: WriteToml) -> None:
    """A missing file or bad TOML syntax is a one-line ConfigError, not a traceback."""
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write_toml("[markets.acme\n"))


def test_unknown_market_names_the_configured_ones() -> None:
    """Asking for an unconfigured market lists the ones there are."""
    with pytest.raises(ConfigError, match=r"unknown market .nope.*configured: none"):
        Config().market("nope")


def test_fractional_rps_is_held_exactly(write_toml: WriteToml) -> None:
    """rps = 0.006 is 3 requests per 500 s, not 1 per 100 s (1.67 times the rate)."""
    config = load_config(write_toml(ACME.replace("rps = 20", "rps = 0.006")))
    assert config.market("acme").endpoints["orders"].all_windows() == (
        Window(limit=3, seconds=500.0),
    )


OPTIONS = ACME.replace(
    "[markets.acme.endpoints", "[markets.acme.options]\nOPTION\n\n[markets.acme.endpoints"
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (ACME.replace("rps = 20", "rps = inf"), "rps: Input should be a finite number"),
        (ACME.replace("rps = 20", "rps = nan"), "rps: Input should be a finite number"),
        (ACME.replace("rps = 20", "windows = [{limit = 5, seconds = inf}]"), "seconds"),
        (ACME.replace('base_url = "', 'margin_ms = inf\nbase_url = "'), "margin_ms"),
        (ACME.replace('base_url = "', 'timeout = inf\nbase_url = "'), "timeout"),
        (ACME.replace("rps = 20", "rps = 0.3333333"), "write windows"),
        (OPTIONS.replace("OPTION", 'cooldown_seconds = "abc"'), "cooldown_seconds"),
        (OPTIONS.replace("OPTION", 'cooldown_max_seconds = "inf"'), "cooldown_max_seconds"),
        (OPTIONS.replace("OPTION", 'cooldown_seconds = "-1"'), "cooldown_seconds"),
        (
            OPTIONS.replace("OPTION", 'cooldown_seconds = "10"\ncooldown_max_seconds = "5"'),
            "must not be below",
        ),
        (OPTIONS.replace("OPTION", 'quota_reset = "midnight"'), "not a daily time"),
        (OPTIONS.replace("OPTION", 'slowdown_after_429 = "2"'), "slowdown_after_429"),
        (OPTIONS.replace("OPTION", 'slowdown_after_429 = "half"'), "slowdown_after_429"),
        (OPTIONS.replace("OPTION", 'usage_pause_percent = "120"'), "usage_pause_percent"),
        (OPTIONS.replace("OPTION", 'usage_pause_seconds = "0"'), "usage_pause_seconds"),
        (OPTIONS.replace("OPTION", 'slowdown_seconds = "0"'), "slowdown_seconds"),
        (ACME.replace("endpoints.orders]", 'endpoints."or{ders}"]'), "braces"),
        (ACME.replace('"/api/orders"', '"/o/{"'), "path '/o/{' is not a path template"),
        (ACME.replace('"/api/orders"', '"/o/{}"'), "must be a plain name"),
        (ACME.replace('"/api/orders"', '"/o/{id.x}"'), "must be a plain name"),
        (ACME.replace('"/api/orders"', '"/o/{id!r}"'), "must be a plain name"),
        (ACME.replace("rps = 20", "rps = 0.00001"), "write windows"),
        (ACME.replace("rps = 20", 'rps = "eight"'), "orders.rps: Input should be a valid number"),
        (ACME.replace("rps = 20", 'rps = "8"'), "orders.rps: Input should be a valid number"),
        (ACME + '\n[lanes.low]\nmax_attempts = "3"\n', "lanes.low.max_attempts"),
        (ACME + "\n[lanes.low]\nmax_attempts = 3.0\n", "lanes.low.max_attempts"),
        (ACME + "\n[lanes.high]\nweight = true\n", "lanes.high.weight"),
        (ACME.replace("rps = 20", "windows = [{limit = 5.0, seconds = 1}]"), "windows.0.limit"),
        (ACME.replace('base_url = "', 'timeout = "5"\nbase_url = "'), "acme.timeout"),
        (OPTIONS.replace("OPTION", "cooldown_seconds = 5"), "options.cooldown_seconds"),
        (
            ACME.replace("[markets.acme]", '[markets."ac{me"]').replace(
                "[markets.acme.", '[markets."ac{me".'
            ),
            "market name 'ac{me' must be",
        ),
    ],
)
def test_values_that_would_fail_at_run_time_fail_at_load(
    write_toml: WriteToml, text: str, message: str
) -> None:
    """Infinite numbers, unusable options, inexact rates and braces (which would break the
    budget's Redis hash tag) are one clear error at load, never a failure of every job."""
    with pytest.raises(ConfigError) as caught:
        load_config(write_toml(text))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["ac:me", "마켓", "acmé", "a" * 65, "ac me", ""])
def test_a_market_name_sqs_or_redis_would_refuse_fails_at_load(
    write_toml: WriteToml, name: str
) -> None:
    """Issue 25 (5): a market names SQS queues and Redis keys: a colon, a non-ASCII letter or
    more than 64 characters is refused at load, naming the file, the field and the name."""
    text = ACME.replace("[markets.acme", f'[markets."{name}"')
    with pytest.raises(ConfigError) as caught:
        load_config(write_toml(text))
    assert f": markets: Value error, market name {name!r} must be" in str(caught.value)
    assert "\n" not in str(caught.value)
