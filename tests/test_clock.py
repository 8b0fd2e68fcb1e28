"""Bounds on where Redis time lies on this process's clock, learnt from round trips."""

from __future__ import annotations

import pytest

from lanes.clock import ClockBounds


def test_bounds_narrow_to_the_tightest_round_trips() -> None:
    """Each round trip bounds the offset; a slow one does not widen what fast ones showed."""
    clock = ClockBounds()
    clock.sample(started=10.000, received=10.100, redis_now=0.050)  # offset in [9.95, 10.05]
    clock.sample(started=11.000, received=11.002, redis_now=1.001)  # offset in [9.999, 10.001]
    clock.sample(started=12.000, received=12.300, redis_now=2.100)  # slow: [9.9, 10.2]
    low, high = clock.bounds()
    assert (low, high) == (pytest.approx(9.999), pytest.approx(10.001))


def test_old_samples_are_forgotten() -> None:
    """Beyond `keep` seconds a sample no longer counts, so drift cannot accumulate."""
    clock = ClockBounds(keep=1.0)
    clock.sample(started=10.000, received=10.001, redis_now=0.0)
    clock.sample(started=20.000, received=20.050, redis_now=10.0)
    assert clock.bounds() == (pytest.approx(10.0), pytest.approx(10.05))


def test_crossed_bounds_trust_the_latest_round_trip() -> None:
    """A stepped clock makes the bounds cross: only the latest round trip is used."""
    clock = ClockBounds()
    clock.sample(started=10.000, received=10.001, redis_now=0.0)
    clock.sample(started=10.500, received=10.501, redis_now=5.0)  # Redis stepped 4.5 s ahead
    assert clock.bounds() == (pytest.approx(5.5), pytest.approx(5.501))
