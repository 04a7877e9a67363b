"""The pieces the plots and the summary are made of: safety as bands, the safe part of the night."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gozen.report.facts import SAFETY_KEY, NightFacts
from gozen.report.plots import bands

T0 = datetime(2026, 11, 25, 10, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_safety_readings_become_one_band_per_change_of_value() -> None:
    readings = [(at(0), True), (at(1), True), (at(2), False), (at(3), False), (at(4), None), (at(5), True)]
    assert bands(readings, at(10)) == [
        (at(0), at(2), True),
        (at(2), at(4), False),
        (at(4), at(5), None),
        (at(5), at(10), True),
    ]
    assert bands([], at(10)) == []


def test_the_night_was_safe_for_the_part_of_it_safety_said_true() -> None:
    facts = NightFacts(T0, at(100))
    assert facts.safe_fraction() is None  # no readings: not said
    facts.readings[SAFETY_KEY] = [(at(0), True), (at(30), False), (at(50), True), (at(90), True)]
    assert facts.safe_fraction() == 0.8
