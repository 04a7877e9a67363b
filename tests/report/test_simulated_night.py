"""A night with the clock compressed to seconds: the DAQ, transfer and status board run in this process
(real rings, FITS files, copies and rows), recipes start and end, the weather turns; then the night's
report is made over that span and posted to the Slack stand-ins."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import func, select

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
from gozen.report.store import report_of
from gozen.service import Context
from gozen.transfer.agents import CopyAgent, Pusher
from gozen.transfer.prover import Prover
from tests.conftest import WAIT_S, wait_until
from tests.daq.exposing import expose
from tests.report.standin import UPLOAD_PATHS, png_size, report_config, slack_api, slack_webhook, upload_paths

HOST = "localhost"
CHIPS = [111, 112, 113, 114]
FRAMES, FPS = 10, 20.0
PLAN = [("Survey M31 field", "M31", 4), ("Twilight flats", "FLAT", 2), ("Survey INB 11 45+01", "INB1145", 3)]


def weather(engine: object, safe: bool, humidity: float) -> None:
    """The weather station's readings and the safety decision, as the board records them."""
    publish(
        engine,  # type: ignore[arg-type]
        "monitor:weather",
        [
            Reading("weather.humidity_pct", humidity, "%", 60),
            Reading("weather.wind_ms", 3.5, "m/s", 60),
            Reading("safety.safe", safe, "", 60),
        ],
    )


def test_a_compressed_night_is_reported_with_every_exposure_and_posted_to_slack(tmp_path: Path) -> None:
    with slack_webhook() as hook, slack_api() as api:
        cfg = report_config(
            tmp_path,
            hook.url,
            api.url,
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
        engine = make_engine(cfg.database_url)
        upgrade(engine)
        readout, writer = Readout(cfg, engine, 0, HOST), Writer(cfg, engine, 0, HOST)
        writer.attach(timeout_s=WAIT_S)
        df = DfMonitor(Context(cfg, HOST, engine, "storage:dfmonitor"))
        pusher = Pusher(Context(cfg, HOST, engine, "transfer:push"))
        copier = CopyAgent(Context(cfg, HOST, engine, "transfer:pop-01"))
        prover = Prover(Context(cfg, HOST, engine, "storage:prover"))

        started = time.monotonic()
        start_at = utcnow()
        weather(engine, True, 40.0)
        made = 0
        for i, (name, obj, count) in enumerate(PLAN):
            recipe = queue_store.submit(
                engine, parse_recipe({"name": name, "steps": [{"wait": {"seconds": 1}}]}), "t", {}
            )
            queue_store.record(engine, recipe.uuid, "started", f"{name} starts")
            for _ in range(count):
                req = ExposureRequest(
                    obj,
                    FRAMES,
                    FPS,
                    data_type="FLAT" if obj == "FLAT" else "OBJECT",
                    recipe_uuid=recipe.uuid,
                    recipe_name=name,
                )
                expose(cfg, engine, readout, writer, req)
                made += 1
                publish(engine, "storage:dfmonitor", df.sample())
            queue_store.record(engine, recipe.uuid, "done", f"{name} is done")
            weather(engine, i != 1, 40.0 + 20 * i)  # clouds after the flats: unsafe for a while

        def transferred() -> bool:
            busy = [pusher.run_once(), copier.run_once(), prover.run_once()]
            return not any(busy) and verified(engine) == made * len(CHIPS)

        wait_until(
            transferred, WAIT_S, what="every file catalogued, copied and proven", dump=lambda: replica_states(engine)
        )
        end_at = utcnow()
        night = night_of(start_at, cfg.local_tz)
        exposed_s = time.monotonic() - started

        row = build_report(cfg, engine, night, start_at, end_at, host=HOST)

        with engine.connect() as conn:
            in_span = (exposures.c.start_at >= start_at) & (exposures.c.start_at < end_at)
            n_exposures = conn.execute(select(func.count()).where(in_span)).scalar_one()
            lost = conn.execute(select(func.sum(daq_files.c.frames_missing))).scalar_one()
            n_bytes = conn.execute(select(func.sum(daq_files.c.size_bytes))).scalar_one()
            summaries = conn.execute(select(outbox.c.kind, outbox.c.notifier, outbox.c.state)).all()
        assert n_exposures == made == sum(c for *_, c in PLAN)
        assert (row.exposures, row.frames_lost, row.bytes) == (made, lost, n_bytes)
        assert lost == made  # chip 112 misses frame 3 of every exposure
        assert row.frames == made * len(CHIPS) * FRAMES - lost
        directory = Path(row.path)
        for name in PLOT_TITLES:
            w, h = png_size(directory / f"{name}.png")
            assert w >= 600 and h >= 300, (name, w, h)
        assert png_size(directory / "overview.png") >= (1500, 1000)
        page = (directory / "index.html").read_text()
        assert f'<td id="n-exposures">{made}</td>' in page and row.summary in page
        assert f"Night {night}: {made} exposures in 3 recipes" in row.summary
        assert f"{made * len(CHIPS)}/{made * len(CHIPS)} replicas verified" in row.summary

        # The picture went up with the bot token; the summary and link wait in the outbox for courier:sender.
        assert (row.slack_state, row.slack_error) == ("posted", None)
        assert upload_paths(api) == UPLOAD_PATHS
        _, auth, _ = api.calls[0]  # type: ignore[attr-defined]
        assert auth == "Bearer xoxb-report"
        assert api.calls[1][2] == (directory / "overview.png").read_bytes()  # type: ignore[attr-defined]
        assert b"C0NIGHT" in api.calls[2][2]  # type: ignore[attr-defined]
        assert summaries == [("report", "tomoe-slack", "pending")]
        assert Sender(Context(cfg, HOST, engine, "courier:sender")).send_due() == 1
        [payload] = hook.received  # type: ignore[attr-defined]
        assert f"/reports/{night}/" in payload["text"] and row.summary in payload["text"]
        assert (
            f"<http://127.0.0.1:8470/reports/{night}/|Nightly report {night}>" in payload["blocks"][0]["text"]["text"]
        )
        stored = report_of(engine, night)
        assert stored is not None and stored.slack_state == "posted" and stored.posted_at is not None
        report_s = time.monotonic() - started - exposed_s
        print(f"compressed night: {made} exposures and their transfer in {exposed_s:.1f} s, report in {report_s:.1f} s")


def verified(engine: object) -> int:
    with engine.connect() as conn:  # type: ignore[attr-defined]
        return int(conn.execute(select(func.count()).where(replicas.c.state == "verified")).scalar_one())


def replica_states(engine: object) -> str:
    with engine.connect() as conn:  # type: ignore[attr-defined]
        return str(
            conn.execute(
                select(replicas.c.state, replicas.c.last_error, func.count()).group_by(
                    replicas.c.state, replicas.c.last_error
                )
            ).all()
        )
