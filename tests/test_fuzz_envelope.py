"""Fuzzing the message path's front (hypothesis, 5,000+ cases): whatever the body, parsing
and validating it raises only the project's own error (`PoisonMessage` from the envelope,
`PermanentError` from job validation, `BadJob` from `lanes enqueue`'s validator), so a bad
body is always dead-lettered with a reason and never `crashed` (issue 12 item 5)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from markets import PermanentError
from markets.catalogue import parse_with_catalogues
from scripts.tools.validate import BadJob, JobValidator
from worker.envelope import Envelope, PoisonMessage, parse_envelope, prepare_envelope

CONFIG = parse_with_catalogues(
    {
        "markets": {
            "coupang": {"catalogue": "coupang", "base_url": "http://127.0.0.1:9"},
            "naver": {"catalogue": "naver", "base_url": "http://127.0.0.1:9/external"},
            "acme": {
                "base_url": "http://127.0.0.1:9",
                "endpoints": {
                    "orders": {"path": "/orders", "rps": 5, "scope": "seller"},
                    "ship": {"method": "POST", "path": "/ship/{seller}", "rps": 5},
                },
            },
        }
    },
    "fuzz",
)
VALIDATORS = {name: JobValidator(CONFIG, name) for name in CONFIG.markets}
FUZZ = settings(max_examples=1250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Thousands of cases on one core: a loaded host needs longer than the default 60 s hang guard
# (cut mid-case, hypothesis reports its data generation as flaky).
pytestmark = pytest.mark.timeout(600)

# Any JSON value, with big numbers among the scalars.
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
kinds = st.sampled_from(
    ["call", "collect_orders", "collect_order", "ship_order", "answer_inquiry", "Call", ""]
) | st.text(max_size=10)
sellers = st.text(max_size=12) | st.sampled_from(["A1", "{A1}", "a}b", "{", "s-1"])
payloads = st.fixed_dictionaries(
    {},
    optional={
        "endpoint": st.sampled_from(["orders", "ship", "nope", "{x}"]) | st.text(max_size=6),
        "params": st.dictionaries(st.text(max_size=5), json_values, max_size=3),
        "since": st.sampled_from(["2025-01-01", "2025-01-01T00:00:00+09:00", "x"]),
        "until": st.sampled_from(["2025-01-02", "2025-01-01", "2025-01-02T00:00:00+09:00"]),
        "order_id": st.text(max_size=5) | st.integers(),
        "shipment_box_id": st.integers() | st.text(max_size=5),
        "invoices": st.lists(st.dictionaries(st.text(max_size=6), json_values), max_size=2),
    },
) | st.dictionaries(st.text(max_size=6), json_values, max_size=4)
envelopes = st.fixed_dictionaries(
    {
        "kind": kinds,
        "market": st.sampled_from(["coupang", "naver", "acme", "nowhere", "A B"]),
        "seller": sellers,
        "payload": payloads,
    },
    optional={"id": st.text(max_size=10) | st.integers(), "extra": json_values},
)


def _huge_int(digits: int) -> str:
    return "1" + "0" * digits


def _nested(depth: int, opener: str, closer: str) -> str:
    return opener * depth + "1" + closer * depth


mutations = st.one_of(
    st.builds(lambda d: _huge_int(d), st.integers(4300, 9000)),
    st.builds(lambda d: _nested(d, "[", "]"), st.integers(50, 3000)),
    st.builds(lambda d: _nested(d, '{"a":', "}"), st.integers(50, 3000)),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-0", '"\\ud800"', "tru"]),
)


def _parse_and_validate(body: str) -> Envelope:
    """The worker's own path: `parse_envelope`, then `prepare_envelope` (market, kind and
    payload), as `prepare` runs it for every message."""
    return prepare_envelope(parse_envelope(body), CONFIG).envelope


def _outcome(body: str) -> Envelope | PoisonMessage | PermanentError:
    try:
        return _parse_and_validate(body)
    except (PoisonMessage, PermanentError) as exc:
        return exc


def _only_our_errors(body: str) -> None:
    outcome = _outcome(body)
    if isinstance(outcome, Exception):
        assert str(outcome)  # a reason for the dead-letter entry
        return
    # Accepted: it survives the trip to a body and back, unchanged, and `lanes enqueue`
    # accepts it too unless it is over SQS's size limit.
    assert parse_envelope(outcome.body()) == outcome
    if outcome.market in VALIDATORS:
        try:
            VALIDATORS[outcome.market].check_body(body)
        except BadJob as exc:
            refused = str(exc)
        else:
            refused = ""
        assert not refused or "SQS's limit" in refused


@pytest.mark.slow
@FUZZ
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_arbitrary_text(body: str) -> None:
    """Any text at all: only the project's errors."""
    _only_our_errors(body)


@pytest.mark.slow
@FUZZ
@given(json_values)
def test_arbitrary_json(value: Any) -> None:
    """Any JSON value (arrays, numbers, strings, objects of any shape)."""
    _only_our_errors(json.dumps(value))


@pytest.mark.slow
@FUZZ
@given(envelopes)
def test_envelope_shaped_objects(raw: dict[str, Any]) -> None:
    """Objects that look like envelopes: every kind, market, payload field and seller
    (braces included) ends in an accepted job or our error."""
    _only_our_errors(json.dumps(raw))


@pytest.mark.slow
@FUZZ
@given(envelopes, mutations, st.sampled_from(["payload", "id", "seller", "extra", "kind"]))
def test_hostile_values_anywhere(raw: dict[str, Any], hostile: str, field: str) -> None:
    """A 4,300+ digit integer, thousands of nested levels, NaN/Infinity, a lone surrogate in
    any field: our error, never ValueError, RecursionError or a crash."""
    marker = "__HOSTILE__"
    body = json.dumps({**raw, field: marker}).replace(f'"{marker}"', hostile)
    _only_our_errors(body)


@pytest.mark.parametrize("seller", ["{A1}", "A{1", "1}"])
def test_a_brace_seller_is_poison_on_every_endpoint(seller: str) -> None:
    """A seller is part of a per-seller budget's Redis key, where a brace would change its
    hash tag: the envelope refuses it (poison, one line) whatever the endpoint's scope."""
    for endpoint in ("orders", "ship"):
        payload = {"endpoint": endpoint}
        body = {"kind": "call", "market": "acme", "seller": seller, "payload": payload}
        with pytest.raises(PoisonMessage, match="may not contain"):
            _parse_and_validate(json.dumps(body))
