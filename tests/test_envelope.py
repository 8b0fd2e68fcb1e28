"""The message envelope: docs/DESIGN.md's format, and poison bodies with a reason."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.envelope import Envelope, PoisonMessage, parse_envelope


def test_design_example_parses() -> None:
    """The example message of docs/DESIGN.md is a valid envelope."""
    envelope = parse_envelope(
        '{"kind": "call", "market": "acme", "seller": "s-1",'
        ' "payload": {"endpoint": "orders", "params": {"status": "NEW"}}}'
    )
    assert envelope.kind == "call"
    assert envelope.payload["params"] == {"status": "NEW"}
    assert envelope.id is None


def test_body_round_trips_without_unset_fields() -> None:
    """`body()` is compact JSON that parses back to the same envelope."""
    envelope = Envelope(kind="ship_order", market="coupang", seller="A1", id="ship-1")
    assert parse_envelope(envelope.body()) == envelope
    assert "null" not in Envelope(kind="call", market="acme", seller="s").body()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "body is not JSON"),
        ("[1, 2]", "not an object"),
        ('{"kind": "call", "market": "acme"}', "message: seller: Field required"),
        ('{"kind": "Call!", "market": "acme", "seller": "s"}', "message: kind:"),
        ('{"kind": "call", "market": "acme", "seller": "s", "extra": 1}', "extra"),
    ],
)
def test_poison_bodies_carry_a_one_line_reason(body: str, reason: str) -> None:
    """Bodies that can never run raise PoisonMessage with a one-line reason."""
    with pytest.raises(PoisonMessage) as caught:
        parse_envelope(body)
    assert reason in caught.value.reason
    assert "\n" not in caught.value.reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            '{"kind": "call", "market": "acme", "seller": "s", "payload": {"n": 1'
            + "9" * 5000
            + "}}",
            "not usable JSON",
        ),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (
            '{"kind": "call", "market": "acme", "seller": "s", "payload": '
            + '{"a": ' * 5000
            + "1"
            + "}" * 5000
            + "}",
            "nested too deeply",
        ),
        ('{"kind": "call", "market": "acme", "seller": "s{1}"}', "seller"),
        ('{"kind": "call", "market": "acme", "seller": "a\\nb"}', "seller"),
    ],
)
def test_hostile_bodies_are_poison_not_crashes(body: str, reason: str) -> None:
    """Issue 12 (5): a huge integer, deep nesting and a seller with braces (which would break a
    per-seller budget's hash tag) are PoisonMessage with a reason, never another error."""
    with pytest.raises(PoisonMessage) as caught:
        parse_envelope(body)
    assert reason in caught.value.reason
    assert "\n" not in caught.value.reason


_json_leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_json = st.recursive(
    _json_leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_envelopes = st.fixed_dictionaries(
    {},
    optional={
        "kind": st.text(max_size=10) | _json,
        "market": st.sampled_from(["acme", "a-b", "", "X"]) | _json,
        "seller": st.text(max_size=10) | _json,
        "payload": _json,
        "id": st.text(max_size=10) | _json,
        "extra": _json,
    },
)


@pytest.mark.slow
@pytest.mark.timeout(600)  # 3,000 cases: a loaded host needs longer than the 60 s hang guard
@settings(max_examples=3000, deadline=None)
@given(body=st.one_of(st.text(max_size=60), _json.map(json.dumps), _envelopes.map(json.dumps)))
def test_any_body_parses_or_is_poison_with_a_one_line_reason(body: str) -> None:
    """Fuzz: whatever the body, the parser returns an envelope or raises PoisonMessage with a
    one-line reason, never another error."""
    reason = "ok"
    try:
        parse_envelope(body)
    except PoisonMessage as exc:
        reason = exc.reason
    assert reason
    assert "\n" not in reason
