"""Alerts update, not duplicate: a new alert about a source already followed up revises that recipe
(or is folded into it), through the courier's own path (`keep`, as after a poll) into a real SQLite
database."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, select

from gozen.config import Config, parse_config
from gozen.couriers.courier import Courier
from gozen.couriers.feeds import Alert, parse_gaia, parse_maxi
from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.migrate import upgrade
from gozen.db.states import RecipeState
from gozen.db.tables import alerts, recipes
from gozen.db.types import utcnow
from gozen.queue import store as queue
from gozen.queue.recipe import SlewStep
from gozen.service import Context

GAIA_HEADER = "#Name,Date,RaDeg,DecDeg,AlertMag,HistMag,HistStdDev,Class,Comment,TNSid"


def setup(tmp: Path, feed: str) -> tuple[Config, Engine]:
    cfg = parse_config({"data_dir": str(tmp / "var"), "couriers": {"followups": [{"feed": feed, "window_hours": 12}]}})
    engine = make_engine(f"sqlite:///{tmp / 'f.db'}")
    upgrade(engine)
    return cfg, engine


def courier(cfg: Config, engine: Engine, feed: str) -> Courier:
    return Courier(Context(cfg, "gozen", engine, f"courier:{feed}", {"feed": feed}))


def gaia(name: str, ra: float, dec: float, when: str = "2026-11-24 21:33:50") -> list[Alert]:
    return parse_gaia(f"{GAIA_HEADER}\n{name},{when},{ra},{dec},17.58,19.96,0.33,SN Ia,candidate SN,\n").alerts


def maxi(trigger: str, ra: float, dec: float, error_deg: float) -> list[Alert]:
    text = f"""TITLE:           GCN/MAXI NOTICE
NOTICE_TYPE:     MAXI Unknown Source
TRIGGER_NUM:     {trigger}
EVENT_RA:        {ra:.4f}d {{+11h 45m 00s}} (J2000),
EVENT_DEC:       {dec:+.4f}d {{+01d 03' 00"}} (J2000),
EVENT_ERROR:     {error_deg:.2f} [deg, radius, stat+sys, 90% containment]
EVENT_FLUX:      152.00 +/- 31.00 [mCrab]
EVENT_DATE:      21173 TJD;   328 DOY;   26/11/24
EVENT_TIME:      49512.00 SOD {{13:45:12.00}} UT
"""
    return parse_maxi(text).alerts


def followups(engine: Engine) -> dict[str, str | None]:
    with engine.connect() as conn:
        return dict(conn.execute(select(alerts.c.title, alerts.c.followup_uuid)).all())  # type: ignore[arg-type]


def revision(engine: Engine, uuid: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(recipes.c.revision).where(recipes.c.uuid == uuid)).scalar_one())


def test_a_second_gaia_alert_of_the_same_star_revises_the_queued_recipe(tmp_path: Path) -> None:
    cfg, engine = setup(tmp_path, "gaia")
    c = courier(cfg, engine, "gaia")
    assert len(c.keep(gaia("Gaia26aaa", 48.71834, 31.86551))) == 1
    [first] = queue.queued(engine)
    end_before = first.recipe.window.not_after
    # The star brightens again a day later: Gaia names the new alert anew, 0.5" from the first.
    assert len(c.keep(gaia("Gaia26abc", 48.71834 + 0.5 / 3600 / 0.85, 31.86551, "2026-11-25 21:00:00"))) == 1
    [r] = queue.queued(engine)
    assert r.uuid == first.uuid and r.name == "Queue-Observer GAIA Gaia26aaa" and revision(engine, r.uuid) == 1
    assert end_before is not None and r.recipe.window.not_after is not None
    assert r.recipe.window.not_after >= end_before
    assert "updated by gaia alert Gaia26abc" in r.recipe.description
    [revised] = [e for e in queue.history(engine, r.uuid) if e["kind"] == "revised"]
    assert "gaia alert Gaia26abc (Gaia26abc) is the same source as Gaia26aaa" in revised["message"]
    assert followups(engine) == {"Gaia26aaa": r.uuid, "Gaia26abc": r.uuid}  # which alert updated which recipe
    [ev] = recent_events(engine, kind="followup_revised")
    assert ev.subject == "Gaia26abc"


def test_a_different_star_gets_its_own_recipe(tmp_path: Path) -> None:
    cfg, engine = setup(tmp_path, "gaia")
    c = courier(cfg, engine, "gaia")
    c.keep(gaia("Gaia26aaa", 48.71834, 31.86551))
    c.keep(gaia("Gaia26abd", 48.71834 + 10 / 3600, 31.86551))  # 8.5" away: another star
    rows = queue.queued(engine)
    assert sorted(r.name for r in rows) == ["Queue-Observer GAIA Gaia26aaa", "Queue-Observer GAIA Gaia26abd"]
    assert all(revision(engine, r.uuid) == 0 for r in rows)
    assert len(set(followups(engine).values())) == 2


def test_an_alert_for_a_recipe_being_observed_is_folded_in(tmp_path: Path) -> None:
    cfg, engine = setup(tmp_path, "gaia")
    c = courier(cfg, engine, "gaia")
    c.keep(gaia("Gaia26aaa", 48.71834, 31.86551))
    [first] = queue.queued(engine)
    queue.set_state(engine, first.uuid, RecipeState.EXECUTING, "executing")
    c.keep(gaia("Gaia26abc", 48.71834, 31.86551))
    assert queue.queued(engine) == [] and revision(engine, first.uuid) == 0
    assert followups(engine)["Gaia26abc"] == first.uuid
    [ev] = recent_events(engine, kind="followup_folded")
    assert "Gaia26abc folded into Queue-Observer GAIA Gaia26aaa is being observed now" in ev.message


def test_a_follow_up_done_long_ago_is_extended_by_a_new_recipe_one_done_lately_is_not(tmp_path: Path) -> None:
    cfg, engine = setup(tmp_path, "gaia")
    c = courier(cfg, engine, "gaia")
    c.keep(gaia("Gaia26aaa", 48.71834, 31.86551))
    [first] = queue.queued(engine)
    queue.set_state(engine, first.uuid, RecipeState.DONE, "done", finished_at=utcnow() - timedelta(hours=1))
    c.keep(gaia("Gaia26abc", 48.71834, 31.86551))
    assert queue.queued(engine) == [] and followups(engine)["Gaia26abc"] == first.uuid  # folded: done 1 h ago
    queue.set_state(engine, first.uuid, RecipeState.DONE, "done", finished_at=utcnow() - timedelta(hours=10))
    c.keep(gaia("Gaia26abe", 48.71834, 31.86551))
    [again] = queue.queued(engine)
    assert again.uuid != first.uuid and again.name == "Queue-Observer GAIA Gaia26abe"
    assert followups(engine)["Gaia26abe"] == again.uuid
    [ev] = recent_events(engine, kind="followup_queued", limit=1)
    assert ev.message.endswith("again (Queue-Observer GAIA Gaia26aaa was done 10 h ago)")
    c.keep(gaia("Gaia26abf", 48.71834, 31.86551))  # the newest follow-up of the star is the one revised now
    [r] = queue.queued(engine)
    assert r.uuid == again.uuid and revision(engine, again.uuid) == 1


def test_a_maxi_trigger_within_the_error_circle_revises_and_takes_the_better_position(tmp_path: Path) -> None:
    cfg, engine = setup(tmp_path, "maxi")
    c = courier(cfg, engine, "maxi")
    c.keep(maxi("9181634", 176.25, 1.05, 0.40))
    [first] = queue.queued(engine)
    c.keep(maxi("9181700", 176.40, 1.10, 0.20))  # 0.16 deg away, a smaller error circle
    [r] = queue.queued(engine)
    assert r.uuid == first.uuid and revision(engine, r.uuid) == 1
    slew = r.recipe.steps[0]
    assert isinstance(slew, SlewStep) and (slew.slew.ra_deg, slew.slew.dec_deg) == (176.40, 1.10)
    assert (r.ra_deg, r.dec_deg) == (176.40, 1.10)
    c.keep(maxi("9181750", 176.10, 1.00, 0.50))  # within 0.5 deg, a worse position: the window only
    [r] = queue.queued(engine)
    assert revision(engine, r.uuid) == 2
    slew = r.recipe.steps[0]
    assert isinstance(slew, SlewStep) and (slew.slew.ra_deg, slew.slew.dec_deg) == (176.40, 1.10)
    c.keep(maxi("9181800", 178.00, 1.05, 0.30))  # 1.75 deg away: another source
    assert len(queue.queued(engine)) == 2
