"""A night with the clock compressed to seconds: the DAQ, transfer and status board run in this process
(real rings, FITS files, copies and rows), recipes start and end, the weather turns; then the night's
report is made over that span and posted to sim:feeds' Slack stand-in, the demo's notifier by default."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from sqlalchemy import Engine, func, select

from gozen.config import Config
from gozen.couriers.outbox import Sender
from gozen.daq.catalog import ExposureRequest
from gozen.daq.readout import Readout
from gozen.daq.writer import Writer
from gozen.db.engine import make_engine
from gozen.db.migrate import upgrade
from gozen.db.tables import daq_files, exposures, outbox, replicas
from gozen.db.types import utcnow
from gozen.monitors.board import Reading, publish
from gozen.monitors.df import DfMonitor
from gozen.queue import store as queue_store
from gozen.queue.recipe import parse_recipe
from gozen.report.build import PLOT_TITLES, build_report
from gozen.report.night import night_of
from gozen.report.store import ReportRow, report_of
from gozen.service import Context
from gozen.transfer.agents import CopyAgent, Pusher
from gozen.transfer.prover import Prover
from tests.conftest import WAIT_S, free_port, wait_until
from tests.daq.exposing import expose
from tests.report.standin import png_size, report_config, sim_feeds, sim_slack_received

HOST = "localhost"
CHIPS = [111, 112, 113, 114]
FRAMES, FPS = 10, 20.0
PLAN = [("Survey M31 field", "M31", 4), ("Twilight flats", "FLAT", 2), ("Survey INB 11 45+01", "INB1145", 3)]


def night_config(tmp: Path) -> Config:
    cfg = report_config(
        tmp,
        None,
        None,
        sim_port=free_port(),
        camera={
            "width_px": 200,
            "height_px": 100,
            "fps": FPS,
            "chips": CHIPS,
            "faults": {"missed": [{"det_id": 112, "frame": 3}]},
        },
        daq={"writers": 1, "reserve_bytes": 0, "start_delay_s": 0.1, "frame_timeout_s": 1},
        transfer={"poll_s": 0.05, "node_reserve_bytes": 0},
    )
    for node in cfg.storage_nodes:
        cfg.under_data_dir(node.path).mkdir(parents=True, exist_ok=True)
    return cfg


def weather(engine: Engine, safe: bool, humidity: float) -> None:
    """The weather station's readings and the safety decision, as the board records them."""
    readings = [
        Reading("weather.humidity_pct", humidity, "%", 60),
        Reading("weather.wind_ms", 3.5, "m/s", 60),
        Reading("safety.safe", safe, "", 60),
    ]
    publish(engine, "monitor:weather", readings)


def observe(cfg: Config, engine: Engine) -> int:
    """The night's recipes, each exposure through a real readout and writer; how many exposures."""
    readout, writer = Readout(cfg, engine, 0, HOST), Writer(cfg, engine, 0, HOST)
    writer.attach(timeout_s=WAIT_S)
    df = DfMonitor(Context(cfg, HOST, engine, "storage:dfmonitor"))
    weather(engine, True, 40.0)
    made = 0
    for i, (name, obj, count) in enumerate(PLAN):
        recipe = parse_recipe({"name": name, "steps": [{"wait": {"seconds": 1}}]})
        uuid = queue_store.submit(engine, recipe, "t", {}).uuid
        queue_store.record(engine, uuid, "started", f"{name} starts")
        for _ in range(count):
            kind = "FLAT" if obj == "FLAT" else "OBJECT"
            expose(
                cfg,
                engine,
                readout,
                writer,
                ExposureRequest(obj, FRAMES, FPS, kind, recipe_uuid=uuid, recipe_name=name),
            )
            made += 1
            publish(engine, "storage:dfmonitor", df.sample())
        queue_store.record(engine, uuid, "done", f"{name} is done")
        weather(engine, i != 1, 40.0 + 20 * i)  # clouds after the flats: unsafe for a while
    return made


def transfer(cfg: Config, engine: Engine, files: int) -> None:
    """transfer:push, a copy agent and storage:prover until every file has its verified copy."""
    agents = [
        Pusher(Context(cfg, HOST, engine, "transfer:push")),
        CopyAgent(Context(cfg, HOST, engine, "transfer:pop-01")),
        Prover(Context(cfg, HOST, engine, "storage:prover")),
    ]

    def done() -> bool:
        busy = [a.run_once() for a in agents]
        return not any(busy) and count(engine, replicas.c.state == "verified") == files

    wait_until(done, WAIT_S, what="every file catalogued, copied and proven")


def count(engine: Engine, where: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(where)).scalar_one())  # type: ignore[arg-type]


def test_a_compressed_night_is_reported_with_every_exposure_and_posted_to_slack(tmp_path: Path) -> None:
    cfg = night_config(tmp_path)
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    with sim_feeds(cfg) as sim:
        started = time.monotonic()
        start_at = utcnow()
        made = observe(cfg, engine)
        transfer(cfg, engine, made * len(CHIPS))
        end_at = utcnow()
        night = night_of(start_at, cfg.local_tz)
        observed_s = time.monotonic() - started

        row = build_report(cfg, engine, night, start_at, end_at, host=HOST)
        report_s = time.monotonic() - started - observed_s

        assert_counts(engine, row, made, start_at, end_at)
        directory = Path(row.path)
        for name in PLOT_TITLES:
            w, h = png_size(directory / f"{name}.png")
            assert w >= 600 and h >= 300, (name, w, h)
        assert png_size(directory / "overview.png") >= (1500, 1000)
        page = (directory / "index.html").read_text()
        assert f'<td id="n-exposures">{made}</td>' in page and row.summary in page

        # The picture is up with the bot token at once; the summary and link go through the outbox.
        assert (row.slack_state, row.slack_error) == ("posted", None)
        [upload] = sim_slack_received(sim)
        assert (upload["via"], upload["channel"]) == ("files.completeUploadExternal", "CSIMULATED")
        [picture] = upload["files"]
        overview = (directory / "overview.png").read_bytes()
        assert (picture["title"], picture["mimetype"], picture["size"]) == (
            f"Nightly report {night}",
            "image/png",
            len(overview),
        )
        assert httpx.get(sim + picture["url"], timeout=30).content == overview
        link = f"http://127.0.0.1:{cfg.web.port}/reports/{night}/"
        assert upload["text"] == f"{row.summary} {link}"
        assert Sender(Context(cfg, HOST, engine, "courier:sender")).send_due() == 1
        _, summary = sim_slack_received(sim)
        assert summary["via"] == "webhook" and summary["text"] == f"{row.summary} {link}"
        assert f"*<{link}|Nightly report {night}>*" in summary["blocks"][0]["text"]["text"]
        stored = report_of(engine, night)
        assert stored is not None and stored.slack_state == "posted" and stored.posted_at is not None
        print(f"compressed night: {made} exposures and their copies in {observed_s:.1f} s, report in {report_s:.1f} s")


def assert_counts(engine: Engine, row: ReportRow, made: int, start_at: object, end_at: object) -> None:
    """The report counts what the database holds for the span: every exposure, frame, lost frame and byte."""
    with engine.connect() as conn:
        in_span = (exposures.c.start_at >= start_at) & (exposures.c.start_at < end_at)
        n_exposures = conn.execute(select(func.count()).where(in_span)).scalar_one()
        lost, written, n_bytes = conn.execute(
            select(
                func.sum(daq_files.c.frames_missing),
                func.sum(daq_files.c.frames_written),
                func.sum(daq_files.c.size_bytes),
            )
        ).one()
        queued = conn.execute(select(outbox.c.kind, outbox.c.notifier, outbox.c.state)).all()
    assert n_exposures == made == sum(c for *_, c in PLAN)
    assert (row.exposures, row.frames, row.frames_lost, row.bytes) == (made, written, lost, n_bytes)
    assert lost == made  # chip 112 misses frame 3 of every exposure
    assert written == made * len(CHIPS) * FRAMES - lost
    assert f"Night {row.night}: {made} exposures in 3 recipes" in row.summary
    assert f"{made * len(CHIPS)}/{made * len(CHIPS)} replicas verified" in row.summary
    assert queued == [("report", "sim-slack", "pending")]
