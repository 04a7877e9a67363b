"""GW alerts made into tiled follow-ups: notices made here, valid against the igwn-gwalert-schema
package's schema, with multi-order sky maps made here, fed through `handle_gw_notice` (the path
the Kafka consumer uses) into a real SQLite database."""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import warnings
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import astropy.units as u
import jsonschema
import numpy as np
import pytest
from astropy.coordinates import AltAz, SkyCoord, get_sun
from astropy.table import Table
from astropy.time import Time
from astropy_healpix import HEALPix
from sqlalchemy import Engine, select

from gozen.config import Config, parse_config
from gozen.couriers.gw import GwOutcome, followup_uuid, handle_gw_notice
from gozen.couriers.outbox import Sender
from gozen.couriers.tiling import CHIP_CENTRES_DEG, CHIP_H_DEG, CHIP_W_DEG, FOOTPRINT_DEG2
from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.migrate import upgrade
from gozen.db.states import RecipeState
from gozen.db.tables import alerts, outbox, recipes
from gozen.queue import store as queue
from gozen.queue.recipe import ExposeStep, SlewStep
from gozen.service import Context
from gozen.sky import site_location
from tests.couriers.test_couriers import Server

SCHEMA = json.loads(
    (resources.files("igwn_gwalert_schema") / "igwn.alerts.Alert.schema.json").read_text()  # the package's own
)
NOW = datetime.now(UTC).replace(microsecond=0)


# -- sky maps and notices made here ---------------------------------------------
def blob_skymap(ra0: float, dec0: float, sigma_deg: float, levels: tuple[int, ...] = (4, 7, 10)) -> bytes:
    """A multi-order (NUNIQ) FITS sky map of a Gaussian blob: coarse pixels far away, finer towards the blob."""
    sig = math.radians(sigma_deg)
    uniq, density = [], []
    ipix = np.arange(12 * 4 ** levels[0])
    for i, level in enumerate(levels):
        hp = HEALPix(nside=2**level, order="nested")
        lon, lat = hp.healpix_to_lonlat(ipix)
        d = SkyCoord(lon, lat).separation(SkyCoord(ra0 * u.deg, dec0 * u.deg)).deg
        last = i == len(levels) - 1
        finer = np.zeros(ipix.size, bool) if last else d < 5 * sigma_deg + 2 * hp.pixel_resolution.to_value(u.deg)
        uniq.append(4 * 4**level + ipix[~finer])
        density.append(np.exp(-0.5 * (d[~finer] / sigma_deg) ** 2) / (2 * math.pi * sig**2))
        if not last:
            shift = 2 * (levels[i + 1] - level)
            ipix = ((ipix[finer] << shift)[:, None] + np.arange(1 << shift)).ravel()
    t = Table({"UNIQ": np.concatenate(uniq), "PROBDENSITY": np.concatenate(density) / u.sr})
    t.meta["ORDERING"] = "NUNIQ"
    buf = io.BytesIO()
    t.write(buf, format="fits")
    return buf.getvalue()


def notice(
    sid: str = "S261126ab",
    alert_type: str = "PRELIMINARY",
    skymap: bytes | None = None,
    far_hz: float = 3e-10,
    created: datetime | None = None,
) -> dict[str, Any]:
    """An IGWN alert as GCN Kafka carries it (igwn.alerts.Alert)."""
    created = created or NOW
    event = None
    if alert_type != "RETRACTION":
        event = {
            "time": (created - timedelta(seconds=40)).isoformat().replace("+00:00", "Z"),
            "far": far_hz,
            "significant": True,
            "instruments": ["H1", "L1", "V1"],
            "group": "CBC",
            "pipeline": "gstlal",
            "search": "AllSky",
            "classification": {"BNS": 0.93, "NSBH": 0.02, "BBH": 0.0, "Terrestrial": 0.05},
            "properties": {"HasNS": 1.0, "HasRemnant": 0.97, "HasMassGap": 0.01},
            "skymap": base64.b64encode(skymap).decode() if skymap is not None else None,
        }
    doc = {
        "alert_type": alert_type,
        "time_created": created.isoformat().replace("+00:00", "Z"),
        "superevent_id": sid,
        "urls": {"gracedb": f"https://gracedb.ligo.org/superevents/{sid}/view/"},
        "event": event,
        "external_coinc": None,
    }
    return doc


def payload(doc: dict[str, Any], valid: bool = True) -> bytes:
    """The notice as a Kafka message's value, after checking it is (or is not) valid by the package's schema."""
    errors = list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(doc))
    assert (not errors) == valid, errors
    return json.dumps(doc).encode()


@cache
def dark_ra() -> float:
    """The RA on Kiso's meridian at the darkest time within the next 24 hours: well placed tonight."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loc = site_location(Config().site)
        t = Time(NOW) + np.arange(0, 24, 0.25) * u.hour
        sun = get_sun(t).transform_to(AltAz(obstime=t, location=loc)).alt.deg
        darkest = t[int(np.argmin(sun))]
        return float(darkest.sidereal_time("apparent", longitude=loc.lon).deg)


@cache
def blob(ra0: float, dec0: float, sigma_deg: float = 1.5) -> bytes:
    return blob_skymap(ra0, dec0, sigma_deg)


# -- independent checks with astropy ----------------------------------------------
def covered_probability(skymap: bytes, tiles: list[tuple[float, float]]) -> float:
    """The map's probability on the tiles' chips, each pixel's centre placed in the pointing's offset frame."""
    from astropy_healpix import level_to_nside, nside_to_pixel_area, uniq_to_level_ipix

    t = Table.read(io.BytesIO(skymap), format="fits")
    level, ipix = uniq_to_level_ipix(np.asarray(t["UNIQ"]))
    prob = np.asarray(t["PROBDENSITY"]) * nside_to_pixel_area(level_to_nside(level)).to_value(u.sr)
    lon, lat = np.zeros(ipix.size), np.zeros(ipix.size)
    for lv in np.unique(level):
        hp = HEALPix(nside=2 ** int(lv), order="nested")
        lo, la = hp.healpix_to_lonlat(ipix[level == lv])
        lon[level == lv], lat[level == lv] = lo.deg, la.deg
    pix = SkyCoord(lon * u.deg, lat * u.deg)
    on = np.zeros(ipix.size, bool)
    for ra, dec in tiles:
        near = pix.separation(SkyCoord(ra * u.deg, dec * u.deg)).deg < 4
        off = pix[near].transform_to(SkyCoord(ra * u.deg, dec * u.deg).skyoffset_frame())
        x, y = off.lon.wrap_at(180 * u.deg).deg, off.lat.deg
        inside = (np.abs(x[:, None] - CHIP_CENTRES_DEG[:, 0]) <= CHIP_W_DEG / 2) & (
            np.abs(y[:, None] - CHIP_CENTRES_DEG[:, 1]) <= CHIP_H_DEG / 2
        )
        on[np.flatnonzero(near)[inside.any(axis=1)]] = True
    return float(prob[on].sum() / prob.sum())


def observable_tonight(ra: float, dec: float, hours: float) -> bool:
    """astropy: at least 30 deg high with the Sun below -12 deg at some quarter hour of the window."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loc = site_location(Config().site)
        t = Time(NOW) + np.arange(0, hours + 0.01, 0.25) * u.hour
        frame = AltAz(obstime=t, location=loc)
        sun = get_sun(t).transform_to(frame).alt.deg
        alt = SkyCoord(ra * u.deg, dec * u.deg).transform_to(frame).alt.deg
    return bool(np.any((sun <= -12) & (alt >= 29.9)))


# -- fixtures ---------------------------------------------------------------------
def setup(tmp: Path, slack: Server | None = None, **gw: Any) -> tuple[Context, Engine]:
    cfg = parse_config(
        {
            "data_dir": str(tmp / "var"),
            "notifiers": [{"name": "tomoe-slack", "kind": "slack", "url": f"{slack.url}/services/T0/B0/x"}]
            if slack
            else [],
            "couriers": {"gw": gw, "retry_base_s": 0.01},
        }
    )
    engine = make_engine(f"sqlite:///{tmp / 'gw.db'}")
    upgrade(engine)
    return Context(cfg, "gozen", engine, "courier:gw"), engine


def tiles_of(engine: Engine, uuid: str) -> list[tuple[float, float]]:
    body = queue.body(engine, uuid)
    assert body is not None
    return [(s.slew.ra_deg, s.slew.dec_deg) for s in body.steps if isinstance(s, SlewStep)]  # type: ignore[misc]


def gw_messages(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(outbox.c.text).where(outbox.c.kind == "gw").order_by(outbox.c.id)).scalars())


def revision(engine: Engine, uuid: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(recipes.c.revision).where(recipes.c.uuid == uuid)).scalar_one())


# -- tests ------------------------------------------------------------------------
def test_a_preliminary_notice_becomes_one_recipe_tiling_the_90_percent_region(tmp_path: Path, slack: Server) -> None:
    ctx, engine = setup(tmp_path, slack)
    ra0, dec0 = dark_ra(), 40.0
    skymap = blob(ra0, dec0)
    out = handle_gw_notice(ctx, payload(notice(skymap=skymap)))
    assert out.action == "queued", out
    [r] = queue.queued(engine)
    assert r.uuid == followup_uuid("S261126ab") and r.priority == "interrupt"
    assert r.name == "Queue-Observer GW S261126ab"
    tiles = tiles_of(engine, r.uuid)
    assert out.tiling is not None and 1 < len(tiles) <= 50
    probs = [t.prob for t in out.tiling.tiles]
    assert probs == sorted(probs, reverse=True) and out.tiling.covered >= 0.9  # most probable first
    assert covered_probability(skymap, tiles) >= 0.89  # astropy's projection, the map's own pixels
    assert all(observable_tonight(ra, dec, 24.0) for ra, dec in tiles)
    steps = r.recipe.steps
    assert [type(s) for s in steps[:4]] == [SlewStep, ExposeStep, SlewStep, ExposeStep]
    assert steps[1].expose.object == "S261126ab T01" and steps[1].expose.frames == 12  # type: ignore[union-attr]
    end = r.recipe.window.not_after
    assert end is not None and abs((end - NOW).total_seconds() - 24 * 3600) < 600
    Sender(Context(ctx.cfg, "gozen", engine, "courier:sender")).send_due()
    [posted] = [m["text"] for m in slack.received]  # type: ignore[attr-defined]
    assert posted.startswith("GW S261126ab PRELIMINARY: FAR 0.00947/yr (1 in 106 yr), 90% area ")
    area = 2 * math.pi * (1 - math.cos(math.radians(1.5 * math.sqrt(2 * math.log(10))))) * (180 / math.pi) ** 2
    assert f"90% area {area:.0f} deg2" in posted, (posted, area)
    assert f"{len(tiles)} tiles planned" in posted and "follow-up queued" in posted
    assert posted.endswith("https://gracedb.ligo.org/superevents/S261126ab/view/")
    with engine.connect() as conn:
        [(key, uuid)] = conn.execute(select(alerts.c.key, alerts.c.followup_uuid).where(alerts.c.feed == "gw")).all()
    assert key.startswith("S261126ab:PRELIMINARY:") and uuid == r.uuid
    assert FOOTPRINT_DEG2 == pytest.approx(20.7, abs=0.1)  # 84 chips of 2000 x 1128 px at 1.189"


def test_the_alerts_page_lists_gw_alerts_with_their_follow_up(tmp_path: Path, slack: Server) -> None:
    from fastapi.testclient import TestClient

    from gozen.web.app import create_app

    ctx, engine = setup(tmp_path, slack)
    web = TestClient(create_app(ctx.cfg, engine))
    assert "gw" not in web.get("/api/alerts").json()["feeds"]  # no GCN Kafka configured, no GW alert yet
    out = handle_gw_notice(ctx, payload(notice(skymap=blob(dark_ra(), 40.0))))
    [seen] = web.get("/api/alerts").json()["feeds"]["gw"]["alerts"]
    assert seen["title"] == "S261126ab" and seen["followup_uuid"] == out.uuid
    page = web.get("/alerts").text
    assert 'data-feed="gw"' in page and f'href="/api/recipes/{out.uuid}"' in page


def test_a_redelivered_notice_changes_nothing(tmp_path: Path) -> None:
    ctx, engine = setup(tmp_path)
    p = payload(notice(skymap=blob(dark_ra(), 40.0)))
    assert handle_gw_notice(ctx, p).action == "queued"
    assert handle_gw_notice(ctx, p).action == "repeat"  # Kafka delivers at least once
    assert len(queue.queued(engine)) == 1 and len(gw_messages(engine)) == 1
    assert revision(engine, followup_uuid("S261126ab")) == 0


def test_a_region_far_south_is_not_followed_and_says_why(tmp_path: Path) -> None:
    ctx, engine = setup(tmp_path)
    out = handle_gw_notice(ctx, payload(notice(skymap=blob(dark_ra(), -80.0))))
    assert out.action == "not followed" and "rises above 30 deg" in out.reason
    assert queue.queued(engine) == []
    [ev] = recent_events(engine, kind="gw_not_followed")
    assert ev.subject == "S261126ab" and "not followed up" in ev.message
    [text] = gw_messages(engine)
    assert "not followed up (none of the" in text


def test_an_update_with_a_moved_region_revises_the_same_recipe(tmp_path: Path) -> None:
    ctx, engine = setup(tmp_path)
    ra0 = dark_ra()
    handle_gw_notice(ctx, payload(notice(skymap=blob(ra0, 40.0))))
    uuid = followup_uuid("S261126ab")
    before = tiles_of(engine, uuid)
    later = NOW + timedelta(minutes=20)
    out = handle_gw_notice(ctx, payload(notice(alert_type="UPDATE", skymap=blob(ra0 + 12.0, 25.0), created=later)))
    assert out.action == "revised"
    [r] = queue.queued(engine)
    assert r.uuid == uuid and revision(engine, uuid) == 1
    after = tiles_of(engine, uuid)
    assert after != before
    first = SkyCoord(after[0][0] * u.deg, after[0][1] * u.deg)
    assert first.separation(SkyCoord((ra0 + 12.0) * u.deg, 25.0 * u.deg)).deg < 3.5  # around the new blob
    assert any(e["kind"] == "revised" and "UPDATE notice" in e["message"] for e in queue.history(engine, uuid))
    assert len(gw_messages(engine)) == 2 and "follow-up revised" in gw_messages(engine)[1]
    with engine.connect() as conn:
        made = conn.execute(select(alerts.c.followup_uuid).where(alerts.c.feed == "gw")).scalars().all()
    assert made == [uuid, uuid]


def test_a_retraction_cancels_the_follow_up(tmp_path: Path) -> None:
    ctx, engine = setup(tmp_path)
    handle_gw_notice(ctx, payload(notice(skymap=blob(dark_ra(), 40.0))))
    later = NOW + timedelta(minutes=5)
    out = handle_gw_notice(ctx, payload(notice(alert_type="RETRACTION", created=later)))
    assert out.action == "cancelled"
    r = queue.get(engine, followup_uuid("S261126ab"))
    assert r is not None and r.state == RecipeState.CANCELLED and "retracted" in (r.message or "")
    assert queue.queued(engine) == []
    [ev] = recent_events(engine, kind="followup_cancelled")
    assert "retracted" in ev.message
    assert gw_messages(engine)[-1] == (
        "GW S261126ab RETRACTION. follow-up cancelled (retracted). https://gracedb.ligo.org/superevents/S261126ab/view/"
    )


def test_a_retraction_of_an_executing_follow_up_asks_for_an_abort(tmp_path: Path) -> None:
    ctx, engine = setup(tmp_path)
    handle_gw_notice(ctx, payload(notice(skymap=blob(dark_ra(), 40.0))))
    uuid = followup_uuid("S261126ab")
    queue.set_state(engine, uuid, RecipeState.EXECUTING, "executing")
    out = handle_gw_notice(ctx, payload(notice(alert_type="RETRACTION", created=NOW + timedelta(minutes=5))))
    assert out.action == "abort requested"
    assert queue.queue_status(engine).abort == {"uuid": uuid, "by": "courier:gw (retracted)"}


@pytest.mark.parametrize(
    ("broken", "named"),
    [
        (lambda d: d.pop("superevent_id"), "superevent_id: 'superevent_id' is a required property"),
        (lambda d: d.update(alert_type="WRONG"), "alert_type: 'WRONG' is not one of"),
        (lambda d: d["event"].update(far="often"), "event"),
    ],
    ids=["missing superevent_id", "alert_type WRONG", "far not a number"],
)
def test_a_notice_failing_the_schema_is_refused_naming_the_field_and_the_next_is_handled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, broken: Any, named: str
) -> None:
    ctx, engine = setup(tmp_path)
    bad = notice(skymap=blob(dark_ra(), 40.0))
    broken(bad)
    with caplog.at_level(logging.WARNING):
        out = handle_gw_notice(ctx, payload(bad, valid=False))
    assert out.action == "refused" and out.reason.startswith(named), out.reason
    assert any(m.startswith(f"gw: notice refused: {named}") for m in caplog.messages)
    [ev] = recent_events(engine, kind="gw_notice_refused")
    assert named in ev.message and ev.severity == "warning"
    assert queue.queued(engine) == [] and gw_messages(engine) == []
    assert handle_gw_notice(ctx, payload(notice(skymap=blob(dark_ra(), 40.0)))).action == "queued"
    assert len(queue.queued(engine)) == 1


def test_a_sky_map_that_is_not_fits_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ctx, engine = setup(tmp_path)
    with caplog.at_level(logging.WARNING):
        out = handle_gw_notice(ctx, payload(notice(skymap=b"SIMPLE  = nonsense")))
    assert out.action == "refused" and out.reason.startswith("event.skymap: not a multi-order sky map")
    assert queue.queued(engine) == []


def test_a_mock_superevent_is_followed_only_when_mock_is_set(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ctx, engine = setup(tmp_path)
    doc = notice(sid="MS261126ab", skymap=blob(dark_ra(), 40.0))
    with caplog.at_level(logging.INFO):
        out = handle_gw_notice(ctx, payload(doc))
    assert out == GwOutcome("skipped", "a mock superevent (couriers.gw.mock is false)")
    assert any("MS261126ab PRELIMINARY skipped: a mock superevent" in m for m in caplog.messages)
    assert queue.queued(engine) == [] and gw_messages(engine) == []
    ctx2, engine2 = setup(tmp_path / "mock", mock=True)
    assert handle_gw_notice(ctx2, payload(doc)).action == "queued"
    assert [r.name for r in queue.queued(engine2)] == ["Queue-Observer GW MS261126ab"]


def test_an_event_with_a_high_false_alarm_rate_is_skipped(tmp_path: Path) -> None:
    ctx, engine = setup(tmp_path)
    out = handle_gw_notice(ctx, payload(notice(skymap=blob(dark_ra(), 40.0), far_hz=2e-6)))
    assert out.action == "skipped" and "2e-06 Hz above couriers.gw.max_far_hz 1e-07" in out.reason
    assert queue.queued(engine) == [] and gw_messages(engine) == []
    with engine.connect() as conn:
        assert conn.execute(select(alerts.c.id)).all() == []


def test_max_tiles_caps_a_wide_region_and_keeps_the_most_probable(tmp_path: Path) -> None:
    ctx, engine = setup(tmp_path, max_tiles=3)
    out = handle_gw_notice(ctx, payload(notice(skymap=blob_skymap(dark_ra(), 40.0, 4.0, (4, 6, 9)))))
    assert out.action == "queued" and out.tiling is not None
    assert len(out.tiling.tiles) == 3 and out.tiling.covered < 0.9
    probs = [t.prob for t in out.tiling.tiles]
    assert probs == sorted(probs, reverse=True)
    assert len(tiles_of(engine, followup_uuid("S261126ab"))) == 3


def test_only_pointings_that_rise_high_enough_at_night_are_tiled(tmp_path: Path) -> None:
    ctx, engine = setup(tmp_path)
    out = handle_gw_notice(ctx, payload(notice(skymap=blob_skymap(dark_ra(), -27.0, 3.0, (4, 6, 9)))))
    assert out.action == "queued" and out.tiling is not None
    assert out.tiling.observable < out.tiling.candidates  # the region's southern half never reaches 30 deg
    tiles = tiles_of(engine, followup_uuid("S261126ab"))
    assert tiles and all(dec >= 35.797222 - 60 - 0.01 for _, dec in tiles)  # culminating at 30 deg or higher
    assert all(observable_tonight(ra, dec, 24.0) for ra, dec in tiles)
    assert 0.2 < out.tiling.covered < 0.9


def test_courier_gw_runs_where_gcn_kafka_is_configured(tmp_path: Path) -> None:
    from gozen.supervise.programs import find_program, load_entry, programs_for
    from gozen.supervise.programs import registry as programs

    cfg = parse_config({"data_dir": str(tmp_path), "hosts": [{"name": "c", "roles": ["couriers"]}]})
    assert "courier:gw" not in [p.full_name for p in programs_for(cfg, cfg.hosts[0])]  # no Kafka: nothing to read
    gcn = {"gcn": {"client_id": "id", "client_secret": "secret"}}
    cfg = parse_config({"data_dir": str(tmp_path), "hosts": [{"name": "c", "roles": ["couriers"]}], "couriers": gcn})
    assert "courier:gw" in [p.full_name for p in programs_for(cfg, cfg.hosts[0])]
    assert load_entry(find_program(cfg, "courier:gw")).__name__ == "GwCourier"
    off = parse_config({"data_dir": str(tmp_path), "couriers": gcn | {"gw": {"enabled": False}}})
    assert "courier:gw" not in [p.full_name for p in programs_for(off, off.hosts[0])]
    assert "courier:gw" in [p.full_name for p in programs(off)]
