"""The issue's critical case under real supervisord: a non-ASCII object through the web API and
straight into the DAQ's table, and rings left in shared memory after a clean stop.

One observatory (DAQ, queue server, web app; no telescope: these recipes do not slew), tests in
file order; the last one stops it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from astropy.io import fits
from sqlalchemy import select, update

from gozen.daq import catalog
from gozen.daq.layout import ring_path
from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.tables import daq_files, exposures
from gozen.fitstext import to_fits_text
from tests.conftest import OPERATOR, Fleet, free_port, start_fleet, wait_until

AUTH = httpx.BasicAuth(*OPERATOR)
YAML = {"Content-Type": "application/yaml"}
COMET = "彗星 ☄"
CHIPS = [111, 112]


@pytest.fixture(scope="module")
def obs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("queue-hardening")
    host = {"name": "obs1", "roles": ["daq", "queue", "web"], "supervisor": {"port": free_port()}}
    extra = {
        "camera": {"chips": CHIPS, "width_px": 100, "height_px": 50},
        "daq": {"writers": 2, "reserve_bytes": 0, "start_delay_s": 1.0, "frame_timeout_s": 2},
        "queue": {"poll_s": 0.5, "demo_survey": False},
    }
    fleet = start_fleet(tmp, [host], down=[], web_port=free_port(), extra=extra)
    fleet.wait_state("obs1", "queue:server", "RUNNING")
    yield fleet
    fleet.stop()


def recipe(name: str, obj: str) -> dict[str, Any]:
    return {
        "name": name,
        "constraints": {"safe_weather": False},
        "steps": [{"expose": {"object": obj, "frames": 2, "fps": 10, "count": 1}}],
    }


def post(fleet: Fleet, body: dict[str, Any]) -> httpx.Response:
    text = yaml.safe_dump(body, allow_unicode=True).encode()
    return httpx.post(f"{fleet.web_url}/api/recipes", content=text, headers=YAML, auth=AUTH, timeout=30)


def pids(fleet: Fleet) -> dict[str, int]:
    return {p.full_name: p.pid for p in fleet.client("obs1").status().processes if p.full_name.startswith("daq:")}


def files_of(fleet: Fleet, exp_id: int) -> list[Any]:
    with make_engine(fleet.cfg.database_url).connect() as conn:
        return list(conn.execute(select(daq_files).where(daq_files.c.exp_id == exp_id)))


def test_the_api_refuses_a_non_ascii_object_with_422_naming_the_field(obs: Fleet) -> None:
    r = post(obs, recipe("Queue-Observer COMET", COMET))
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == [
        "steps[0].expose.object: must be printable ASCII for the FITS header; character 1 is U+5F57 "
        "(CJK UNIFIED IDEOGRAPH-5F57)"
    ]


def test_a_non_ascii_object_in_the_daq_table_neither_stops_a_writer_nor_the_next_recipe(obs: Fleet) -> None:
    engine = make_engine(obs.cfg.database_url)
    before = pids(obs)
    [poison] = catalog.request_exposures(engine, catalog.ExposureRequest("F1", 2, 10.0), 1)
    with engine.begin() as conn:  # as an older version, or another program, could have written it
        conn.execute(update(exposures).where(exposures.c.exp_id == poison).values(object=COMET))
    r = post(obs, recipe("Queue-Observer AFTER", "AFTER"))
    assert r.status_code == 201, r.text
    uuid = r.json()["uuid"]

    def state() -> str:
        return str(httpx.get(f"{obs.web_url}/api/recipes/{uuid}", timeout=30).json()["state"])

    wait_until(lambda: state() in ("done", "failed"), 120, 0.5, "the recipe after the poison exposure")
    assert state() == "done"
    assert pids(obs) == before  # no DAQ program restarted
    poisoned = files_of(obs, poison)
    assert sorted((f.det_id, f.state) for f in poisoned) == [(c, "written") for c in CHIPS]
    for f in poisoned:
        with fits.open(f.path) as hdul:
            assert hdul[0].header["OBJECT"] == to_fits_text(COMET)
    with engine.connect() as conn:
        [after] = conn.execute(select(exposures.c.exp_id).where(exposures.c.recipe_uuid == uuid)).scalars()
    assert sorted((f.det_id, f.state, f.frames_written) for f in files_of(obs, after)) == [
        (c, "written", 2) for c in CHIPS
    ]
    assert recent_events(engine, 50, kind="header_values_replaced")


def test_queue_mode_from_the_web_is_an_event(obs: Fleet) -> None:
    for mode in ("maintenance", "normal"):
        r = httpx.post(f"{obs.web_url}/api/queue/mode/{mode}", auth=AUTH, timeout=30)
        assert r.status_code == 200, r.text
    events = recent_events(make_engine(obs.cfg.database_url), 20, kind="queue_mode")
    assert [e.message for e in reversed(events)][-2:] == [
        f"queue mode set to maintenance by {OPERATOR[0]}",
        f"queue mode set to normal by {OPERATOR[0]}",
    ]


def test_a_clean_stop_leaves_no_ring_in_shared_memory(obs: Fleet) -> None:
    rings = [ring_path(obs.cfg, "obs1", 0, w) for w in range(2)]
    assert all(p.exists() for p in rings)
    obs.stop()
    assert not [p for p in rings if Path(p).exists()]
