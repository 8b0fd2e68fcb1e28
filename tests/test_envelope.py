"""The message envelope: docs/DESIGN.md's format, and poison bodies with a reason."""

from __future__ import annotations

import pytest

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
