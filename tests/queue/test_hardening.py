"""The queue against bad input, a DAQ that writes nothing or is busy, a server killed mid-exposure.

The queue server runs in this process (or as `gozen run queue:server` where it must die) with
the real DAQ code: control, readout and writer in threads, real rings, files and SQLite.
Recipes here neither slew nor wait for weather, so no telescope or monitor is needed.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError

from gozen.config import Config
from gozen.daq import catalog
from gozen.daq.control import arm_next
from gozen.daq.readout import Readout
from gozen.daq.writer import Writer
from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.migrate import upgrade
from gozen.db.states import QueueMode, RecipeState
from gozen.db.tables import daq_files, exposures, recipes
from gozen.devices.telescope import SimulatedTelescope
from gozen.queue import store
from gozen.queue.recipe import Recipe, RecipeError, parse_recipe
from gozen.queue.server import QueueServer
from gozen.service import Context, run_service
from gozen.sky import zenith_radec
from tests.conftest import gozen_cmd, wait_until, write_config

HOST = "obs1"


def config_data(tmp_path: Path, volume: Path | None = None, **queue: Any) -> dict[str, Any]:
    return {
        "data_dir": str(tmp_path / "var"),
        "camera": {"width_px": 100, "height_px": 50, "fps": 20, "chips": [111, 112]},
        "daq_volumes": [{"name": "vol1", "path": str(volume or tmp_path / "vol1")}],
        "daq": {"writers": 1, "reserve_bytes": 0, "start_delay_s": 0.1, "frame_timeout_s": 1},
        "queue": {"poll_s": 0.2, "demo_survey": False, **queue},
    }


def setup(tmp_path: Path, volume: Path | None = None, **queue: Any) -> tuple[Path, Config, Engine]:
    config_file = tmp_path / "gozen.yaml"
    cfg = write_config(config_file, config_data(tmp_path, volume, **queue))
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    return config_file, cfg, engine


def body(name: str, *steps: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"name": name, "constraints": {"safe_weather": False}, "steps": list(steps), **fields}


def expose(obj: str = "QTEST", frames: int = 4, count: int = 1) -> dict[str, Any]:
    return {"expose": {"object": obj, "frames": frames, "fps": 20, "count": count}}


def server(cfg: Config, engine: Engine) -> QueueServer:
    """queue:server in this process (its passes called by the test, or run by run_service in a thread)."""
    return QueueServer(Context(cfg, HOST, engine, "queue:server"))


def submit(engine: Engine, data: dict[str, Any]) -> str:
    return store.submit(engine, parse_recipe(data), "test", {}).uuid


def exposures_of(engine: Engine, uuid: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(exposures).where(exposures.c.recipe_uuid == uuid)))


def state_of(engine: Engine, exp_id: int) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(exposures.c.state).where(exposures.c.exp_id == exp_id)).scalar()


class InProcessDaq:
    """daq:control, daq:readout-01 and daq:writer-01's code in two threads of this process."""

    def __init__(self, cfg: Config, engine: Engine) -> None:
        self.cfg, self.engine = cfg, engine
        self.readout = Readout(cfg, engine, 0, HOST)
        self.writer = Writer(cfg, engine, 0, HOST)
        self.writer.attach(timeout_s=10)
        self.stopping = threading.Event()
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self.guard, args=(f,), daemon=True) for f in (self.control, self.write)]

    def guard(self, loop: Any) -> None:
        try:
            loop()
        except BaseException as err:  # shown by the test that owns this DAQ
            self.errors.append(err)

    def control(self) -> None:
        grace = timedelta(seconds=self.cfg.daq.frame_timeout_s * 2 + 5)
        last = 0
        while not self.stopping.is_set():
            arm_next(self.cfg, self.engine, HOST)
            for exp in catalog.armed_after(self.engine, last):
                self.readout.report(exp, self.readout.read_exposure(exp))
                last = exp.exp_id
            catalog.finish_exposures(self.engine, grace)
            time.sleep(0.05)

    def write(self) -> None:
        while not self.stopping.is_set():
            if self.writer.poll() == 0:
                time.sleep(0.005)

    def __enter__(self) -> InProcessDaq:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=60)
        assert not self.errors, self.errors


@pytest.fixture
def queue_env(tmp_path: Path) -> Iterator[tuple[Path, Config, Engine]]:
    yield setup(tmp_path)


# -- header values checked where they enter -----------------------------------------------
def test_recipe_values_bound_for_the_header_are_refused_naming_each_field() -> None:
    bad = body(
        "Queue-Observer 彗星",
        expose("彗星 ☄"),
        expose("O'" * 30),
        project="プロジェクト",
        observer="Zoë",
    )
    with pytest.raises(RecipeError) as err:
        parse_recipe(bad)
    lines = str(err.value).splitlines()[1:]
    assert lines == [
        "name: must be printable ASCII for the FITS header; character 16 is U+5F57 (CJK UNIFIED IDEOGRAPH-5F57)",
        "project: must be printable ASCII for the FITS header; character 1 is U+30D7 (KATAKANA LETTER PU)",
        "observer: must be printable ASCII for the FITS header; character 3 is U+00EB "
        "(LATIN SMALL LETTER E WITH DIAERESIS)",
        "steps[0].expose.object: must be printable ASCII for the FITS header; character 1 is U+5F57 "
        "(CJK UNIFIED IDEOGRAPH-5F57)",
        "steps[1].expose.object: too long for a FITS header card: 90 characters, at most 68 (a quote counts twice)",
    ]
    with pytest.raises(RecipeError, match=r"^recipe:\nname: too long for a FITS header card: 69 characters"):
        parse_recipe(body("N" * 69, expose()))


def test_queue_submit_refuses_a_non_ascii_object_with_exit_2(queue_env: tuple[Path, Config, Engine]) -> None:
    config_file, _, engine = queue_env
    recipe_file = config_file.parent / "comet.yaml"
    recipe_file.write_text(yaml.safe_dump(body("Queue-Observer COMET", expose("彗星 ☄")), allow_unicode=True))
    p = subprocess.run(gozen_cmd(config_file, "queue", "submit", str(recipe_file)), capture_output=True, text=True)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "steps[0].expose.object: must be printable ASCII" in p.stderr.replace("\n", "")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(recipes)).scalar_one() == 0


def test_a_recipe_stored_before_the_checks_fails_its_step_and_never_reaches_the_daq(
    queue_env: tuple[Path, Config, Engine],
) -> None:
    _, cfg, engine = queue_env
    old = Recipe.model_validate(body("Queue-Observer OLD", expose("彗星")))  # as stored by an older version
    uuid = store.submit(engine, old, "test", {}).uuid
    assert server(cfg, engine).step_once()
    row = store.get(engine, uuid)
    assert row is not None and row.state == "failed"
    assert row.message and "steps[0].expose: the DAQ cannot take it: object: must be printable ASCII" in row.message
    assert exposures_of(engine, uuid) == []


# -- what the DAQ made of an exposure -------------------------------------------------------
def test_an_exposure_that_left_no_file_fails_its_recipe(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.write_text("not a directory: no file can be written here")
    _, cfg, engine = setup(tmp_path, volume=broken)
    uuid = submit(engine, body("Queue-Observer NOFILE", expose()))
    with InProcessDaq(cfg, engine):
        assert server(cfg, engine).step_once()
    row = store.get(engine, uuid)
    assert row is not None and row.state == "failed", row
    [exp] = exposures_of(engine, uuid)
    assert (
        row.message
        == f"exposure {exp.exp_id} ended with no file written (2 recorded lost; see the events of daq:writer-*)"
    )
    with engine.connect() as conn:
        states = conn.execute(select(daq_files.c.state).where(daq_files.c.exp_id == exp.exp_id)).scalars().all()
    assert states == ["lost", "lost"]
    assert [e.subject for e in recent_events(engine, 5, kind="recipe_failed")] == ["Queue-Observer NOFILE"]


def test_time_queued_behind_other_exposures_does_not_count_toward_the_timeout(tmp_path: Path) -> None:
    _, cfg, engine = setup(tmp_path, exposure_timeout_s=2)
    [ahead] = catalog.request_exposures(engine, catalog.ExposureRequest("AHEAD", 100, 20.0), 1)  # 5 s of DAQ work
    uuid = submit(engine, body("Queue-Observer BEHIND", expose(frames=2)))
    with InProcessDaq(cfg, engine):
        wait_until(lambda: state_of(engine, ahead) == "armed", 30, what="the exposure ahead armed")
        t0 = time.monotonic()
        assert server(cfg, engine).step_once()
        waited_s = time.monotonic() - t0
    row = store.get(engine, uuid)
    assert row is not None and row.state == "done", row.message if row else None
    assert waited_s > 2.5  # it really waited behind the other exposure longer than its timeout
    [exp] = exposures_of(engine, uuid)
    with engine.connect() as conn:
        written = conn.execute(
            select(func.count()).where(daq_files.c.exp_id == exp.exp_id, daq_files.c.state == "written")
        ).scalar_one()
    assert exp.state == "done" and written == 2


def test_a_server_killed_mid_exposure_waits_for_it_instead_of_asking_again(
    queue_env: tuple[Path, Config, Engine],
) -> None:
    config_file, cfg, engine = queue_env
    uuid = submit(engine, body("Queue-Observer KILL", expose(count=2)))
    log = open(config_file.parent / "server.log", "ab")  # noqa: SIM115 - kept open for the children
    server = subprocess.Popen(gozen_cmd(config_file, "run", "queue:server"), stdout=log, stderr=log)
    try:
        wait_until(lambda: exposures_of(engine, uuid), 60, what="the first exposure asked of the DAQ")
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
        server = subprocess.Popen(gozen_cmd(config_file, "run", "queue:server"), stdout=log, stderr=log)
        with InProcessDaq(cfg, engine):
            wait_until(lambda: (r := store.get(engine, uuid)) and r.state in store.FINAL, 90, what="the recipe ended")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    row = store.get(engine, uuid)
    assert row is not None and row.state == "done", (config_file.parent / "server.log").read_text()[-3000:]
    kinds = [h["kind"] for h in store.history(engine, uuid)]
    assert "interrupted" in kinds and "requeued" in kinds
    exps = exposures_of(engine, uuid)
    assert [e.state for e in exps] == ["done", "done"]  # two asked for, two made: none twice
    assert row.progress == {"step": 1, "done": 0}


# -- operators' actions and the demo survey --------------------------------------------------
def test_mode_pause_resume_and_abort_are_recorded_as_events_with_who(queue_env: tuple[Path, Config, Engine]) -> None:
    _, _, engine = queue_env
    uuid = submit(engine, body("Queue-Observer RUNNING", {"wait": {"seconds": 60}}))
    store.set_state(engine, uuid, RecipeState.EXECUTING, "started")
    store.set_mode(engine, QueueMode.MAINTENANCE, by="alice")
    store.set_paused(engine, True, by="bob")
    store.set_paused(engine, False)
    assert store.request_abort(engine, by="carol")
    store.set_mode(engine, QueueMode.NORMAL, by="alice")
    store.set_activity(engine, "idle", HOST)  # the server's own state: no event
    got = [(e.kind, e.message) for e in reversed(recent_events(engine, 10, source="queue"))]
    assert got == [
        ("recipe_submitted", "Queue-Observer RUNNING submitted by test"),
        ("queue_mode", "queue mode set to maintenance by alice"),
        ("queue_paused", "queue paused by bob"),
        ("queue_resumed", "queue resumed by someone unnamed"),
        ("queue_abort", "abort of the running recipe by carol"),
        ("queue_mode", "queue mode set to normal by alice"),
    ]


def assert_runs_to_the_end(cfg: Config, engine: Engine, name: str) -> None:
    """A recipe of a 1.5 s wait, run by the server: done, not aborted by anything left behind."""
    uuid = submit(engine, body(name, {"wait": {"seconds": 1.5}}))
    assert server(cfg, engine).step_once()
    row = store.get(engine, uuid)
    assert row is not None and row.state == RecipeState.DONE, row


def test_an_abort_with_nothing_executing_leaves_nothing_to_stop_a_later_recipe(
    queue_env: tuple[Path, Config, Engine],
) -> None:
    _, cfg, engine = queue_env
    assert not store.request_abort(engine, by="carol")  # `gozen queue abort`: "nothing is executing"
    assert store.queue_status(engine).abort is None
    assert not [e for e in recent_events(engine, 10) if e.kind == "queue_abort"]
    assert_runs_to_the_end(cfg, engine, "Queue-Observer LATER")


def test_an_abort_of_a_recipe_that_ended_never_stops_the_next(queue_env: tuple[Path, Config, Engine]) -> None:
    _, cfg, engine = queue_env
    first = submit(engine, body("Queue-Observer FIRST", {"wait": {"seconds": 1}}))
    store.set_state(engine, first, RecipeState.EXECUTING, "started")
    assert store.request_abort(engine, by="carol")
    store.set_state(engine, first, RecipeState.DONE, "all 1 steps done")  # it ended before the server saw the abort
    assert store.queue_status(engine).abort is None
    assert_runs_to_the_end(cfg, engine, "Queue-Observer SECOND")


def test_cancel_of_the_executing_recipe_aborts_it(queue_env: tuple[Path, Config, Engine]) -> None:
    _, cfg, engine = queue_env
    uuid = submit(engine, body("Queue-Observer LONG", {"wait": {"seconds": 600}}))
    s = server(cfg, engine)
    ran = threading.Thread(target=s.step_once)
    ran.start()
    wait_until(lambda: (r := store.get(engine, uuid)) and r.state == RecipeState.EXECUTING, 30, what="executing")
    assert store.cancel(engine, uuid, "dave") == "abort requested"
    ran.join(timeout=30)
    row = store.get(engine, uuid)
    assert row is not None and row.state == RecipeState.ABORTED and row.message == "aborted by dave"
    assert store.queue_status(engine).abort is None


# -- the server as a program ----------------------------------------------------------------
def test_a_shutdown_recipe_ends_the_server_with_exit_0(queue_env: tuple[Path, Config, Engine]) -> None:
    _, cfg, engine = queue_env
    uuid = submit(engine, body("Shutdown the Queue-Observer system", {"shutdown": {}}))
    s = server(cfg, engine)
    code: list[int] = []
    runner = threading.Thread(target=lambda: code.append(run_service(s)))
    runner.start()
    runner.join(timeout=60)
    assert code == [0]
    row = store.get(engine, uuid)
    assert row is not None and row.state == RecipeState.DONE
    assert store.queue_status(engine).server is None  # the page says it is not running


def test_a_stopped_server_interrupts_its_recipe_and_queues_it_again(queue_env: tuple[Path, Config, Engine]) -> None:
    _, cfg, engine = queue_env
    uuid = submit(engine, body("Queue-Observer STOPPED", {"wait": {"seconds": 600}}, {"wait": {"seconds": 1}}))
    s = server(cfg, engine)
    code: list[int] = []
    runner = threading.Thread(target=lambda: code.append(run_service(s)))
    runner.start()
    wait_until(lambda: (r := store.get(engine, uuid)) and r.state == RecipeState.EXECUTING, 30, what="executing")
    s.ctx.stop.set()  # what SIGTERM does
    runner.join(timeout=30)
    assert code == [0]
    row = store.get(engine, uuid)
    assert row is not None and row.state == RecipeState.QUEUED and row.step == 0
    kinds = [h["kind"] for h in store.history(engine, uuid)]
    assert kinds[-2:] == ["interrupted", "requeued"]
    assert [e.subject for e in recent_events(engine, 5, kind="recipe_interrupted")] == ["Queue-Observer STOPPED"]


def test_a_recipe_cut_short_by_a_database_outage_is_queued_again_and_runs_to_its_end(
    queue_env: tuple[Path, Config, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, cfg, engine = queue_env
    uuid = submit(engine, body("Queue-Observer OUTAGE", {"wait": {"seconds": 0.5}}, {"wait": {"seconds": 0.5}}))
    record, failed = store.record, []

    def database_away_once(*args: Any, **kwargs: Any) -> None:
        if not failed:
            failed.append(True)
            raise OperationalError("UPDATE recipes ...", None, ConnectionRefusedError("the database is away"))
        record(*args, **kwargs)

    monkeypatch.setattr(store, "record", database_away_once)
    s = server(cfg, engine)
    runner = threading.Thread(target=run_service, args=(s,))
    runner.start()
    try:
        wait_until(lambda: (r := store.get(engine, uuid)) and r.state == RecipeState.DONE, 60, what="done")
    finally:
        s.ctx.stop.set()
        runner.join(timeout=30)
    kinds = [h["kind"] for h in store.history(engine, uuid)]
    assert kinds[:4] == ["submitted", "started", "interrupted", "requeued"] and kinds[-1] == "done", kinds
    told = [e.kind for e in reversed(recent_events(engine, 20))]
    assert told.count("database_unavailable") == 1 and told.count("database_back") == 1, told


def test_a_slew_and_a_park_move_the_telescope(queue_env: tuple[Path, Config, Engine]) -> None:
    _, cfg, engine = queue_env
    ra, dec = zenith_radec(cfg.site, datetime.now(UTC))  # up, whatever the hour
    uuid = submit(engine, body("Queue-Observer SLEW", {"slew": {"ra_deg": ra, "dec_deg": dec - 10}}, {"park": {}}))
    s = server(cfg, engine)
    start = time.time()
    scope = SimulatedTelescope(cfg.site, clock=lambda: start + 20 * (time.time() - start))  # 20 times faster
    s.telescope = scope
    assert s.step_once()
    row = store.get(engine, uuid)
    assert row is not None and row.state == RecipeState.DONE, row
    kinds = [h["message"] for h in store.history(engine, uuid) if h["kind"] == "step"]
    assert kinds == ["step 1 (slew) done", "step 2 (park) done"]
    assert scope.at_park() and not scope.slewing()


def test_a_telescope_that_does_not_answer_fails_the_recipe_naming_it(tmp_path: Path) -> None:
    data = config_data(tmp_path) | {"monitors": {"telescope": {"address": "127.0.0.1:9"}}}
    cfg = write_config(tmp_path / "gozen.yaml", data)
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    ra, dec = zenith_radec(cfg.site, datetime.now(UTC))
    uuid = submit(engine, body("Queue-Observer NOSCOPE", {"slew": {"ra_deg": ra, "dec_deg": dec - 10}}))
    assert server(cfg, engine).step_once()
    row = store.get(engine, uuid)
    assert row is not None and row.state == RecipeState.FAILED
    assert row.message and row.message.startswith("telescope: AtPark: cannot connect to 127.0.0.1:9")
    assert [e.subject for e in recent_events(engine, 5, kind="recipe_failed")] == ["Queue-Observer NOSCOPE"]


def test_demo_names_go_on_from_the_database_after_a_restart(queue_env: tuple[Path, Config, Engine]) -> None:
    _, cfg, engine = queue_env
    from gozen.db.types import utcnow

    first = server(cfg, engine)
    names = [first.demo_recipe(utcnow()).name for _ in range(2)]
    restarted = server(cfg, engine)
    names.append(restarted.demo_recipe(utcnow()).name)
    assert names == ["Queue-Observer DEMO 001", "Queue-Observer DEMO 002", "Queue-Observer DEMO 003"]
    objects = [r.recipe.steps[1].expose.object for r in store.queued(engine)]  # type: ignore[union-attr]
    assert sorted(objects) == ["DEMO-001", "DEMO-002", "DEMO-003"]
