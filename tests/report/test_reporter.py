"""www:report without supervisord: a night with nothing in it, no Slack at all, a Slack that is down
and comes back, one report per night; and `gozen report` by hand."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from gozen.cli import app
from gozen.config import Config
from gozen.daq import catalog
from gozen.daq.snapshot import StatusSnapshot
from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.migrate import upgrade
from gozen.db.tables import nightly_reports, outbox
from gozen.db.types import utcnow
from gozen.report.build import PLOT_TITLES, build_report
from gozen.report.night import latest_finished_night, night_span
from gozen.report.nightly import Reporter
from gozen.service import Context
from tests.conftest import free_port
from tests.report.standin import UPLOAD_PATHS, png_size, report_config, slack_api, slack_webhook, upload_paths

HOST = "web1"


def migrated(cfg: Config) -> Engine:
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    return engine


def reporter(cfg: Config, engine: Engine) -> Reporter:
    return Reporter(Context(cfg, HOST, engine, "www:report"))


def outbox_rows(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [(r.kind, r.notifier) for r in conn.execute(select(outbox.c.kind, outbox.c.notifier))]


def test_an_empty_night_is_reported_with_every_plot_saying_no_data(tmp_path: Path) -> None:
    cfg = report_config(tmp_path, None, None)
    engine = migrated(cfg)
    row = build_report(cfg, engine, "2026-11-25", host=HOST)
    assert (row.exposures, row.frames, row.frames_lost, row.bytes) == (0, 0, 0, 0)
    assert row.summary == (
        "Night 2026-11-25: 0 exposures in 0 recipes, 0 frames (0 lost), 0.00 GB; 0/0 replicas verified, 0/0 archived."
    )
    for name in PLOT_TITLES:
        w, h = png_size(Path(row.path) / f"{name}.png")
        assert w >= 600 and h >= 300
    assert '<td id="n-exposures">0</td>' in (Path(row.path) / "index.html").read_text()


def test_with_no_slack_configured_the_report_is_kept_and_not_posted(tmp_path: Path) -> None:
    cfg = report_config(tmp_path, None, None)
    engine = migrated(cfg)
    reporter(cfg, engine).run_once()
    night = latest_finished_night(cfg, utcnow())
    with engine.connect() as conn:
        [r] = conn.execute(select(nightly_reports)).all()
    assert (r.night, r.host, r.slack_state, r.slack_error) == (night, HOST, "off", "no notifier takes reports")
    assert outbox_rows(engine) == []
    [event] = recent_events(engine, 5, kind="nightly_report")
    assert event.subject == night and event.message == r.summary


def test_a_night_is_reported_once_however_often_the_reporter_looks(tmp_path: Path) -> None:
    with slack_webhook() as hook, slack_api() as api:
        cfg = report_config(tmp_path, hook.url, api.url)
        engine = migrated(cfg)
        for _ in range(3):
            reporter(cfg, engine).run_once()  # a restarted program, too
        with engine.connect() as conn:
            assert conn.execute(select(nightly_reports.c.slack_state)).scalars().all() == ["posted"]
        assert upload_paths(api) == UPLOAD_PATHS
        assert outbox_rows(engine) == [("report", "tomoe-slack")]


def test_a_slack_that_is_down_is_tried_again_until_the_picture_is_posted(tmp_path: Path) -> None:
    port = free_port()
    with slack_webhook() as hook:
        cfg = report_config(tmp_path, hook.url, f"http://127.0.0.1:{port}")
        engine = migrated(cfg)
        night = latest_finished_night(cfg, utcnow())
        r = reporter(cfg, engine)
        r.run_once()  # Slack's API refuses: the pass ends normally, the report is kept
        r.run_once()
        with engine.connect() as conn:
            state, error = conn.execute(select(nightly_reports.c.slack_state, nightly_reports.c.slack_error)).one()
        assert state == "failed" and error.startswith("tomoe-slack: ") and "refused" in error.lower(), error
        with slack_api(port) as api:
            r.run_once()
            assert upload_paths(api) == UPLOAD_PATHS
        with engine.connect() as conn:
            row = conn.execute(select(nightly_reports)).one()
        assert (row.night, row.slack_state, row.slack_error) == (night, "posted", None) and row.posted_at is not None
        assert outbox_rows(engine) == [("report", "tomoe-slack")]  # the summary was queued once, with the report


def gozen(cfg_file: Path, *args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, ["--config", str(cfg_file), *args], env={"GOZEN_HOST": HOST, "COLUMNS": "200"})
    return r.exit_code, r.output


def test_gozen_report_makes_a_span_by_hand_without_posting(tmp_path: Path) -> None:
    f = tmp_path / "gozen.yaml"
    f.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "var"), "couriers": {"simulator": {"enabled": True}}}))
    code, output = gozen(f, "db", "upgrade")
    assert code == 0, output
    code, output = gozen(
        f, "report", "2026-11-25", "--since", "2026-11-25T10:00:00Z", "--until", "2026-11-25T11:00:00Z", "--no-post"
    )
    assert code == 0, output
    assert "Night 2026-11-25: 0 exposures" in output and "slack: off (not asked to post)" in output
    engine = make_engine(f"sqlite:///{tmp_path / 'var' / 'gozen.db'}")
    with engine.connect() as conn:
        r = conn.execute(select(nightly_reports)).one()
    assert (r.start_at.isoformat(), r.end_at.isoformat()) == ("2026-11-25T10:00:00+00:00", "2026-11-25T11:00:00+00:00")
    assert (tmp_path / "var" / "reports" / "2026-11-25" / "overview.png").is_file()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["2026-02-30"], "night '2026-02-30'"),
        (["../x"], "is not a date YYYY-MM-DD"),
        (["2026-11-25", "--since", "yesterday"], "--since 'yesterday' is not an ISO 8601 time"),
        (["2026-11-25", "--since", "2026-11-25T11:00Z", "--until", "2026-11-25T10:00Z"], "is not after --since"),
    ],
)
def test_gozen_report_refuses_bad_input_naming_it(tmp_path: Path, args: list[str], says: str) -> None:
    f = tmp_path / "gozen.yaml"
    f.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "var")}))
    code, output = gozen(f, "report", *args)
    assert code == 2 and says in output, output


def test_a_night_with_exposures_missed_while_the_reporter_was_down_is_reported_too(tmp_path: Path) -> None:
    cfg = report_config(tmp_path, None, None)
    engine = migrated(cfg)
    latest = latest_finished_night(cfg, utcnow())
    observed, quiet = (date_before(latest, 3), date_before(latest, 2))
    [exp_id] = catalog.request_exposures(engine, catalog.ExposureRequest("M31", 10, 2.0), 1)
    start = night_span(observed, cfg.local_tz).start_at + timedelta(hours=10)
    assert catalog.arm(
        engine, exp_id, start, start + timedelta(seconds=5), [111], StatusSnapshot(start.isoformat(), {})
    )
    reporter(cfg, engine).run_once()
    with engine.connect() as conn:
        made = dict(conn.execute(select(nightly_reports.c.night, nightly_reports.c.exposures)).all())
    assert made == {observed: 1, latest: 0} and quiet not in made


def date_before(night: str, days: int) -> str:
    return (date.fromisoformat(night) - timedelta(days=days)).isoformat()
