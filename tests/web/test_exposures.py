"""The exposures browser: /exposures and /api/exposures on a database seeded through the DAQ's and the
transfer catalog's own functions (SQLite and PostgreSQL), filters, paging, bad input, and the list and
one exposure's page in headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import Engine, select

from gozen.config import Config
from gozen.daq import catalog
from gozen.daq.browse import ExposureFilter, FilterError, list_exposures, night_span
from gozen.daq.quicklook import Look, grey_png, record_look
from gozen.daq.snapshot import StatusSnapshot
from gozen.db.engine import make_engine
from gozen.db.migrate import upgrade
from gozen.db.tables import files
from gozen.transfer import catalog as files_catalog
from gozen.transfer import packages
from gozen.transfer.agents import push_once
from tests.conftest import free_port, web_section, write_config
from tests.web.served import served
from tests.web.test_processes_browser import browser, clean_page  # noqa: F401 - the fixture

SHOTS = Path(__file__).parents[2] / "var" / "test-screenshots"
FRAMES = 12
CHIPS = [111, 112]
FILE_BYTES = 54_236_160
SURVEY_UUID = "5b0f6c1e-0000-4000-8000-00000000a001"
FILLERS = 7


def config_data(tmp: Path, **extra: Any) -> dict[str, Any]:
    return {
        "data_dir": str(tmp / "var"),
        "camera": {"chips": CHIPS, "readout": "full"},
        "hosts": [{"name": "head", "roles": ["web", "daq-master", "queue", "monitors", "daq", "storage"]}],
        "transfer": {"replication": 2},
        **extra,
    }


@dataclass(frozen=True)
class Seeded:
    survey: int  # M31 field, night 2026-11-20, both files on two nodes, archived
    flat: int  # dome flat, night 2026-11-20 (local 11:30 next morning), chip 112 lost, one copy verified
    deep: int  # m31 deep, night 2026-11-21 (local 12:30), stopped, quick look, not catalogued
    dark: int  # queued, never started
    fillers: list[int]  # FIELD-n, night 2026-11-22


def checksum(exp_id: int, det: int) -> str:
    return f"{exp_id:08x}{det:08x}"


def _file(exp_id: int, det: int, **row: Any) -> dict[str, Any]:
    name = f"TMQ{det // 100}20261120{exp_id:08d}{det % 100:02d}.fits"
    return {
        "exp_id": exp_id, "det_id": det, "state": "written", "path": f"/daq/vol1/{name}", "filename": name,
        "daq_host": "head", "daq_volume": "vol1", "size_bytes": FILE_BYTES, "checksum_xxh3": checksum(exp_id, det),
        "frames_expected": FRAMES, "frames_written": FRAMES, "frames_missing": 0, "frames_damaged": 0,
        "naxis1": 2160, "naxis2": 1200, "naxis3": FRAMES, "writer": "daq:writer-01",
    } | row  # fmt: skip


def _exposure(engine: Engine, start: datetime | None, **req: Any) -> int:
    [exp_id] = catalog.request_exposures(engine, catalog.ExposureRequest(n_frames=FRAMES, fps=2.0, **req), 1)
    if start is not None:
        end = start + timedelta(seconds=FRAMES / 2)
        assert catalog.arm(engine, exp_id, start, end, CHIPS, StatusSnapshot(start.isoformat(), {}))
    return exp_id


def seed(cfg: Config, engine: Engine) -> Seeded:
    """Exposures of three nights, their files written, catalogued, copied and archived as the programs do."""
    t = datetime(2026, 11, 20, 11, 0, tzinfo=UTC)  # 20:00 JST
    survey = _exposure(
        engine, t, object="M31 field", recipe_uuid=SURVEY_UUID, recipe_name="Survey A", ra_deg=10.68, dec_deg=41.27
    )
    flat = _exposure(engine, datetime(2026, 11, 21, 2, 30, tzinfo=UTC), object="dome flat", data_type="FLAT")
    deep = _exposure(engine, datetime(2026, 11, 21, 3, 30, tzinfo=UTC), object="m31 deep")
    assert catalog.stop_exposure(engine, deep, "unsafe: humidity 95%")
    dark = _exposure(engine, None, object="dark", data_type="DARK", recipe_name="Calib")
    fillers = [
        _exposure(engine, datetime(2026, 11, 22, 12 + i, 0, tzinfo=UTC), object=f"FIELD-{i}", recipe_name="Calib")
        for i in range(FILLERS)
    ]
    rows = [_file(survey, d) for d in CHIPS] + [_file(deep, d, frames_written=5, frames_missing=7) for d in CHIPS]
    rows += [_file(flat, 111, frames_damaged=1)]
    rows += [
        catalog.lost_file_row(flat, 112, _file(flat, 112)["filename"], "head", "daq:writer-01", FRAMES, (2160, 1200))
    ]
    rows += [_file(e, d) for e in fillers for d in CHIPS]
    assert catalog.record_files(engine, rows) == []
    catalog.record_readout_reports(
        engine,
        [{"exp_id": flat, "det_id": 112, "readout": "daq:readout-01", "daq_host": "head", "recognised": False,
          "frames_read": 0, "frames_missed": FRAMES, "frames_damaged": 0, "frames_dropped": 0}],
    )  # fmt: skip
    catalog.finish_exposures(engine, timedelta(seconds=60))
    assert push_once(cfg, engine, "head", scan=False) == len(rows) - 1  # the lost file is not catalogued
    _copy(engine, survey, flat)
    _archive(engine, survey, flat)
    for det, stars in ((111, 42), (112, 0)):  # daq:quicklook's looks at the deep exposure's chips
        picture = grey_png(np.full((8, 16), 1000.0 + det), 900.0, 1400.0)
        look = Look(8, 16, 8, 900.0, 1400.0, picture, 1000.5 + det, 12.25, stars, 3.5 if stars else None)
        record_look(engine, deep, det, "head", look)
    return Seeded(survey, flat, deep, dark, fillers)


def _copy(engine: Engine, survey: int, flat: int) -> None:
    """Copy agents' work: the survey's files verified on node0 and node1, the flat's on node0 only
    (its second copy put back for an hour), every other copy left queued."""
    nodes: dict[str, list[str]] = {}
    wanted = {_file(survey, d)["filename"] for d in CHIPS} | {_file(flat, 111)["filename"]}
    while (job := files_catalog.claim(engine, "test:copy", timedelta(minutes=5))) is not None:
        taken = nodes.setdefault(job.filename, [])
        if job.filename not in wanted or (job.filename.endswith(f"{flat:08d}11.fits") and taken):
            files_catalog.release(engine, job, "node full", timedelta(hours=1))
            continue
        node = f"node{len(taken)}"
        assert files_catalog.place(engine, job, node, f"/storage/{node}/{job.filename}")
        files_catalog.verified(engine, job, node, f"/storage/{node}/{job.filename}")
        taken.append(node)


def _archive(engine: Engine, survey: int, flat: int) -> None:
    """transfer:export's work: the survey's files packaged, sent and acknowledged; the flat not selected."""
    ids = _file_ids(engine, [_file(survey, d)["filename"] for d in CHIPS] + [_file(flat, 111)["filename"]])
    now = datetime.now(UTC)

    def row(fid: int, data_type: str) -> dict[str, Any]:
        return {"file_id": fid, "night": "20261120", "data_type": data_type, "project": "survey", "manifest": {},
                "source_path": "/storage/node0/x", "packaged_at": now}  # fmt: skip

    *survey_ids, flat_id = ids.values()
    chosen = {"20261120": [row(i, "OBJECT") for i in survey_ids]}
    assert packages.record_packages(engine, "head", chosen, [row(flat_id, "FLAT")]) == (2, 1)
    assert packages.package_exported(engine, "20261120-head-001") == 2
    names = {_file(survey, d)["filename"] for d in CHIPS}
    assert packages.settle_package(engine, "20261120-head-001", names, {})[0] == 2


def _file_ids(engine: Engine, names: list[str]) -> dict[str, int]:
    with engine.connect() as conn:
        got = dict(conn.execute(select(files.c.filename, files.c.id).where(files.c.filename.in_(names))).all())
    return {n: int(got[n]) for n in names}


@pytest.fixture(params=["sqlite", "postgresql"])
def seeded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Config, Engine, Seeded]]:
    cfg = write_config(tmp_path / "gozen.yaml", config_data(tmp_path))
    if request.param == "postgresql":
        engine = request.getfixturevalue("pg_engine")
    else:
        engine = make_engine(cfg.database_url)
        upgrade(engine)
    yield cfg, engine, seed(cfg, engine)
    if request.param == "sqlite":
        engine.dispose()


def ids(cfg: Config, engine: Engine, **params: str) -> list[int]:
    return [r.exp_id for r in list_exposures(cfg, engine, ExposureFilter.parse(params)).rows]


def test_list_filters_by_night_object_recipe_type_and_state(seeded: tuple[Config, Engine, Seeded]) -> None:
    cfg, engine, s = seeded
    everything = [*reversed(s.fillers), s.dark, s.deep, s.flat, s.survey]
    assert ids(cfg, engine) == everything  # newest first
    assert ids(cfg, engine, night="2026-11-20") == [s.flat, s.survey]  # 11:30 JST next morning is still that night
    assert ids(cfg, engine, night="2026-11-21") == [s.deep]  # 12:30 JST: the next night
    assert ids(cfg, engine, night="2026-11-19") == []
    assert ids(cfg, engine, object="m31") == [s.deep, s.survey]  # any case, any part
    assert ids(cfg, engine, object="100%") == []  # a LIKE wildcard is a character like any other
    assert ids(cfg, engine, recipe="survey a") == [s.survey]
    assert ids(cfg, engine, recipe=SURVEY_UUID) == [s.survey]
    assert ids(cfg, engine, recipe="Calib") == [*reversed(s.fillers), s.dark]
    assert ids(cfg, engine, data_type="flat") == [s.flat]
    assert ids(cfg, engine, state="queued") == [s.dark]
    assert ids(cfg, engine, state="incomplete") == [s.flat]
    assert ids(cfg, engine, night="2026-11-20", data_type="OBJECT") == [s.survey]


def test_list_counts_files_replicas_and_archive_per_exposure(seeded: tuple[Config, Engine, Seeded]) -> None:
    cfg, engine, s = seeded
    rows = {r.exp_id: r for r in list_exposures(cfg, engine, ExposureFilter(limit=200)).rows}
    survey, flat, deep, dark = rows[s.survey], rows[s.flat], rows[s.deep], rows[s.dark]
    assert (survey.files_written, survey.files_lost, survey.bytes) == (2, 0, 2 * FILE_BYTES)
    assert (survey.replicas_verified, survey.replicas_needed) == (4, 4)
    assert (survey.archived, survey.for_archive, survey.archive) == (2, 2, {"acknowledged": 2})
    assert (flat.state, flat.files_written, flat.files_lost, flat.bytes) == ("incomplete", 1, 1, FILE_BYTES)
    assert (flat.replicas_verified, flat.replicas_needed, flat.frames_missing) == (1, 2, FRAMES)
    assert (flat.archived, flat.for_archive, flat.archive) == (0, 0, {"not_selected": 1})
    assert (deep.files_catalogued, deep.replicas_verified, deep.frames_missing, deep.looked_chips) == (2, 0, 14, 2)
    assert deep.stop_reason == "unsafe: humidity 95%" and survey.looked_chips == 0
    assert (dark.state, dark.start_at, dark.n_chips, dark.files_written) == ("queued", None, 0, 0)
    assert (survey.recipe_name, survey.n_frames, survey.n_chips) == ("Survey A", FRAMES, 2)


def test_list_pages_by_exposure_id(seeded: tuple[Config, Engine, Seeded]) -> None:
    cfg, engine, s = seeded
    everything = [*reversed(s.fillers), s.dark, s.deep, s.flat, s.survey]
    seen, before = [], None
    while True:
        page = list_exposures(cfg, engine, ExposureFilter(before=before, limit=4))
        seen += [r.exp_id for r in page.rows]
        assert len(page.rows) <= 4
        if page.next_before is None:
            break
        before = page.next_before
    assert seen == everything
    last = list_exposures(cfg, engine, ExposureFilter(before=s.flat, limit=4))
    assert [r.exp_id for r in last.rows] == [s.survey] and last.next_before is None


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"night": "2026-13-01"}, "night"),
        ({"night": "tonight"}, "night"),
        ({"data_type": "BIAS"}, "data_type"),
        ({"state": "lost"}, "state"),
        ({"limit": "201"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"before": "x"}, "before"),
        ({"object": "x" * 129}, "object"),
    ],
)
def test_a_bad_filter_names_its_parameter(params: dict[str, str], parameter: str) -> None:
    with pytest.raises(FilterError) as err:
        ExposureFilter.parse(params)
    assert err.value.parameter == parameter and str(err.value).startswith(f"{parameter}: ")


def test_night_is_local_noon_to_local_noon() -> None:
    start, end = night_span(date(2026, 11, 20), ZoneInfo("Asia/Tokyo"))
    assert start.astimezone(UTC) == datetime(2026, 11, 20, 3, tzinfo=UTC)
    assert end - start == timedelta(hours=24)


# -- the app ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Seeded]]:
    """The web app alone on a seeded SQLite database, behind a real uvicorn on 127.0.0.1."""
    tmp = tmp_path_factory.mktemp("exposures")
    cfg = write_config(tmp / "gozen.yaml", config_data(tmp, web=web_section(free_port()) | {"refresh_s": 300}))
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    s = seed(cfg, engine)
    with served(cfg, engine) as url:
        yield url, s


def test_api_lists_filters_and_pages(app: tuple[str, Seeded]) -> None:
    url, s = app
    doc = httpx.get(f"{url}/api/exposures", params={"night": "2026-11-20"}, timeout=30).json()
    assert [e["exp_id"] for e in doc["exposures"]] == [s.flat, s.survey] and doc["next_before"] is None
    assert doc["night_span"] == ["2026-11-20T12:00:00+09:00", "2026-11-21T12:00:00+09:00"]
    survey = doc["exposures"][1]
    assert survey["start_at"] == "2026-11-20T11:00:00+00:00" and survey["url"] == f"/exposures/{s.survey}"
    assert survey["archive"] == {"exported": 2, "of": 2, "by_state": {"acknowledged": 2}}
    assert (survey["replicas_verified"], survey["replicas_needed"], survey["bytes"]) == (4, 4, 2 * FILE_BYTES)
    assert survey["mosaic_url"] is None and doc["replication"] == 2
    first = httpx.get(f"{url}/api/exposures", params={"limit": 5}, timeout=30).json()
    assert len(first["exposures"]) == 5 and first["next_before"] == first["exposures"][-1]["exp_id"]
    rest = httpx.get(f"{url}/api/exposures", params={"limit": 5, "before": first["next_before"]}, timeout=30).json()
    assert len(rest["exposures"]) == 5 and rest["exposures"][0]["exp_id"] == first["next_before"] - 1


def test_api_and_page_refuse_bad_filters_with_422(app: tuple[str, Seeded]) -> None:
    url, _ = app
    bad = httpx.get(f"{url}/api/exposures", params={"night": "2026-02-30"}, timeout=30)
    assert bad.status_code == 422 and bad.json()["parameter"] == "night" and "YYYY-MM-DD" in bad.json()["detail"]
    bad = httpx.get(f"{url}/api/exposures", params={"limit": "1000"}, timeout=30)
    assert bad.status_code == 422 and bad.json()["detail"].startswith("limit: ")
    page = httpx.get(f"{url}/exposures", params={"data_type": "BIAS"}, timeout=30)
    assert page.status_code == 422 and "data_type: &#39;BIAS&#39;: must be one of OBJECT, FLAT, DARK" in page.text
    assert httpx.get(f"{url}/api/exposures/abc", timeout=30).json()["parameter"] == "exp_id"
    assert httpx.get(f"{url}/api/exposures", timeout=30).status_code == 200  # still serving


def test_unknown_exposure_is_404(app: tuple[str, Seeded]) -> None:
    url, _ = app
    api = httpx.get(f"{url}/api/exposures/99999", timeout=30)
    assert api.status_code == 404 and api.json() == {"detail": "no exposure 99999"}
    page = httpx.get(f"{url}/exposures/99999", timeout=30)
    assert page.status_code == 404 and "No exposure 99999" in page.text


def test_api_detail_has_each_chips_file_checksum_replicas_export_and_quick_look(app: tuple[str, Seeded]) -> None:
    url, s = app
    d = httpx.get(f"{url}/api/exposures/{s.survey}", timeout=30).json()
    assert (d["object"], d["recipe_uuid"], d["ra_deg"], d["dec_deg"]) == ("M31 field", SURVEY_UUID, 10.68, 41.27)
    assert [c["det_id"] for c in d["chips"]] == CHIPS
    c = d["chips"][0]
    assert c["file"]["checksum_xxh3"] == checksum(s.survey, 111) and c["file"]["size_bytes"] == FILE_BYTES
    assert (c["file"]["daq_host"], c["file"]["daq_volume"]) == ("head", "vol1")
    assert [(r["node"], r["state"]) for r in c["catalog"]["replicas"]] == [("node0", "verified"), ("node1", "verified")]
    assert all(r["verified_at"] and r["proved_at"] for r in c["catalog"]["replicas"])
    assert (c["catalog"]["export"]["state"], c["catalog"]["export"]["package"]) == ("acknowledged", "20261120-head-001")
    flat = httpx.get(f"{url}/api/exposures/{s.flat}", timeout=30).json()
    lost = flat["chips"][1]
    assert (lost["file"]["state"], lost["catalog"], lost["readout"]["recognised"]) == ("lost", None, False)
    queued = [r for r in flat["chips"][0]["catalog"]["replicas"] if r["state"] == "queued"]
    assert len(queued) == 1 and queued[0]["last_error"] == "node full"
    deep = httpx.get(f"{url}/api/exposures/{s.deep}", timeout=30).json()
    assert deep["stop_reason"] == "unsafe: humidity 95%" and deep["stop_at"]
    look = deep["chips"][0]["quicklook"]
    assert (look["sky_adu"], look["noise_adu"], look["n_stars"], look["fwhm_px"]) == (1111.5, 12.25, 42, 3.5)
    assert look["png_url"] == f"/exposures/{s.deep}/chips/111.png"
    assert deep["chips"][1]["quicklook"]["fwhm_px"] is None
    assert deep["mosaic_url"] == f"/exposures/{s.deep}/mosaic.png"


# -- in Chromium -----------------------------------------------------------------------
@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:  # noqa: F811
    # The page refusing a bad filter answers 422 on purpose (the console says so too).
    on_purpose = ("favicon.ico", "night=2026-99", "status of 422")
    with clean_page(browser, 1400, 1000, allowed=lambda x: any(s in x for s in on_purpose)) as p:
        yield p


def test_browser_lists_filters_and_opens_an_exposure(app: tuple[str, Seeded], page: Page) -> None:
    url, s = app
    page.goto(f"{url}/exposures")
    rows = page.locator("#exposures tbody tr[data-exp]")
    expect(rows).to_have_count(11)
    expect(rows.first).to_have_attribute("data-exp", str(s.fillers[-1]))
    survey = page.locator(f'#exposures tr[data-exp="{s.survey}"]')
    expect(survey).to_contain_text("2026-11-20 11:00:00 UTC 20:00 JST")
    expect(survey.locator('[data-field="size"]')).to_have_text("108 MB")
    expect(survey.locator('[data-field="replicas"]')).to_have_text("4 / 4")
    expect(survey.locator('[data-field="archive"]')).to_have_text("2 of 2")
    expect(page.locator(f'#exposures tr[data-exp="{s.flat}"] [data-field="files"]')).to_contain_text("1 lost")
    thumbs = page.locator("#exposures td.thumb img")
    expect(thumbs).to_have_count(1)  # only the exposure with a quick look has a mosaic
    expect(page.locator(f'#exposures tr[data-exp="{s.deep}"] td.thumb img')).to_have_js_property("complete", True)
    assert page.eval_on_selector(f'#exposures tr[data-exp="{s.deep}"] td.thumb img', "i => i.naturalWidth") > 100
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "exposures.png"), full_page=True)

    page.fill('input[name="object"]', "M31")
    page.select_option('select[name="data_type"]', "OBJECT")
    page.click('#exposure-filters button[type="submit"]')
    expect(rows).to_have_count(2)
    assert [rows.nth(i).get_attribute("data-exp") for i in range(2)] == [str(s.deep), str(s.survey)]
    expect(page.locator("#exposures-summary")).to_contain_text("object contains M31")
    page.screenshot(path=str(SHOTS / "exposures-filtered.png"), full_page=True)

    page.click(f'#exposures tr[data-exp="{s.survey}"] a:text("{s.survey}")')
    expect(page.locator("#exposure-title")).to_contain_text(f"Exposure {s.survey}")
    expect(page.locator('[data-field="recipe"]')).to_contain_text("Survey A")
    expect(page.locator('[data-field="radec"]')).to_contain_text("00:42:43.2 +41:16:12")
    chip = page.locator('#chips tr[data-det="111"]')
    expect(chip.locator('[data-field="checksum"]')).to_have_text(checksum(s.survey, 111))
    expect(chip.locator('[data-field="replicas"] li')).to_have_count(2)
    expect(chip.locator('[data-field="export"]')).to_contain_text("acknowledged 20261120-head-001")
    page.screenshot(path=str(SHOTS / "exposure.png"), full_page=True)
    assert (SHOTS / "exposure.png").stat().st_size > 20_000

    page.goto(f"{url}/exposures/{s.deep}")
    expect(page.locator('[data-field="stop"]')).to_contain_text("unsafe: humidity 95%")
    expect(page.locator('#chips tr[data-det="111"] [data-field="stars"]')).to_have_text("42 · 3.50")
    expect(page.locator('#chips tr[data-det="112"] [data-field="stars"]')).to_have_text("0 · –")
    expect(page.locator("#mosaic")).to_have_js_property("complete", True)
    assert page.eval_on_selector("#mosaic", "i => i.naturalWidth") > 300  # the focal-plane mosaic, drawn
    expect(page.locator("#chips img.chip-look")).to_have_count(2)
    page.screenshot(path=str(SHOTS / "exposure-quicklook.png"), full_page=True)
    page.goto(f"{url}/exposures?night=2026-99-01")
    expect(page.locator("#filter-error")).to_contain_text("night: '2026-99-01' is not a date")
