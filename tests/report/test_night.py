"""Nights run local noon to local noon and are named by their evening; the morning twilight ends them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gozen.config import parse_config
from gozen.report.night import BadNight, latest_finished_night, morning_twilight, night_of, night_span, parse_night

CFG = parse_config({"couriers": {"simulator": {"enabled": False}}})  # Kiso, Asia/Tokyo
TZ = CFG.local_tz


def test_a_night_is_named_by_the_local_date_of_its_evening() -> None:
    assert night_of(datetime(2026, 11, 25, 12, 0, tzinfo=UTC), TZ) == "2026-11-25"  # 21:00 JST
    assert night_of(datetime(2026, 11, 25, 20, 0, tzinfo=UTC), TZ) == "2026-11-25"  # 05:00 JST the next day
    assert night_of(datetime(2026, 11, 26, 2, 59, tzinfo=UTC), TZ) == "2026-11-25"  # 11:59 JST
    assert night_of(datetime(2026, 11, 26, 3, 0, tzinfo=UTC), TZ) == "2026-11-26"  # local noon: the next night


def test_a_night_spans_local_noon_to_local_noon_in_utc() -> None:
    n = night_span("2026-11-25", TZ)
    assert (n.start_at, n.end_at) == (datetime(2026, 11, 25, 3, tzinfo=UTC), datetime(2026, 11, 26, 3, tzinfo=UTC))


def test_the_morning_twilight_at_kiso_in_november_is_before_sunrise() -> None:
    t = morning_twilight(CFG.site, "2026-11-25", TZ, -12.0).astimezone(TZ)
    assert (t.date().isoformat(), 5 * 60 + 20 <= t.hour * 60 + t.minute <= 5 * 60 + 50) == ("2026-11-26", True), t
    civil = morning_twilight(CFG.site, "2026-11-25", TZ, -6.0)
    assert 20 * 60 < (civil - t.astimezone(UTC)).total_seconds() < 40 * 60


def test_the_night_is_reported_only_once_its_twilight_has_passed() -> None:
    twilight = morning_twilight(CFG.site, "2026-11-25", TZ, CFG.reports.twilight_deg)
    assert latest_finished_night(CFG, twilight - timedelta(seconds=1)) == "2026-11-24"
    assert latest_finished_night(CFG, twilight) == "2026-11-25"
    assert latest_finished_night(CFG, datetime(2026, 11, 25, 14, tzinfo=UTC)) == "2026-11-24"  # 23:00 JST


@pytest.mark.parametrize("name", ["2026-13-01", "2026-02-30", "20261125", "2026-11-25/..", "../etc", ""])
def test_a_bad_night_name_is_refused_naming_it(name: str) -> None:
    with pytest.raises(BadNight, match="night"):
        parse_night(name)
