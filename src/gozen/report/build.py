"""Make one night's report: the facts, the plots, index.html under reports_dir/NIGHT/, its row in
nightly_reports and, when asked, its post to Slack."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Engine

from gozen.config import Config
from gozen.db.types import utcnow
from gozen.report import slack
from gozen.report.facts import NightFacts, night_facts
from gozen.report.night import night_span, parse_night
from gozen.report.plots import OVERVIEW, PLOTS, save_plots
from gozen.report.store import ReportRow, SlackState, mark_slack, save_report
from gozen.service import this_host
from gozen.web.times import when_text

log = logging.getLogger(__name__)
TEMPLATES = Path(__file__).parent / "templates"
STYLESHEET = "report.css"
PLOT_TITLES = {
    "volume": "Data volume and frame rate through the night",
    "lost": "Frames lost per chip, on the focal plane as on the sky",
    "weather": "Weather and safety",
    "recipes": "Recipes executed",
    "transfer": "Transfer and archive progress",
    "disk": "Disk use",
    OVERVIEW: "All of it on one picture (posted to Slack)",
}
STEPS = len(PLOTS) + 4  # facts, the plots, the overview, the page, the post
Progress = Callable[[str], None]


def summary_line(night: str, facts: NightFacts) -> str:
    """The one line posted with the link."""
    n, recipes = len(facts.exposures), len(facts.recipes())
    parts = [
        f"Night {night}: {n} exposure{'s' * (n != 1)} in {recipes} recipe{'s' * (recipes != 1)}",
        f"{facts.frames:,} frames ({facts.frames_lost:,} lost)",
        f"{facts.bytes / 1e9:.2f} GB",
        f"{len(facts.verified)}/{facts.n_replicas_wanted} replicas verified",
        f"{len(facts.exported)}/{facts.n_export_wanted} archived",
    ]
    safe = facts.safe_fraction()
    line = ", ".join(parts[:3]) + "; " + ", ".join(parts[3:])
    return line + (f"; safe {safe:.0%} of the night." if safe is not None else ".")


def build_report(
    cfg: Config,
    engine: Engine,
    night: str,
    start_at: datetime | None = None,
    end_at: datetime | None = None,
    post: bool = True,
    host: str | None = None,
    progress: Progress | None = None,
) -> ReportRow:
    """Make (or make again) the report of `night` over its span (default: local noon to noon) and,
    with `post`, post it; its row as written."""
    step = progress or (lambda _what: None)
    parse_night(night)
    span = night_span(night, cfg.local_tz)
    start_at, end_at = start_at or span.start_at, end_at or span.end_at
    if end_at <= start_at:
        raise ValueError(
            f"night {night}: the span ends ({end_at.isoformat()}) before it starts ({start_at.isoformat()})"
        )
    facts = night_facts(engine, start_at, end_at)
    step("facts")
    directory = cfg.reports_dir / night
    directory.mkdir(parents=True, exist_ok=True)
    summary = summary_line(night, facts)
    save_plots(facts, cfg.local_tz, directory, f"{cfg.site.name}: night {night}", done=step)
    host = host or this_host()
    row = ReportRow(
        night=night,
        host=host,
        made_at=utcnow(),
        start_at=start_at,
        end_at=end_at,
        path=str(directory.resolve()),
        exposures=len(facts.exposures),
        frames=facts.frames,
        frames_lost=facts.frames_lost,
        bytes=facts.bytes,
        summary=summary,
        slack_state=SlackState.PENDING,
        slack_error=None,
        posted_at=None,
    )
    write_page(cfg, directory, row, facts)
    step("page")
    if not post:
        row = replace(row, slack_state=SlackState.OFF, slack_error="not asked to post")
    elif not slack.routed(cfg):
        row = replace(row, slack_state=SlackState.OFF, slack_error="no notifier takes reports")
    pending = row.slack_state == SlackState.PENDING
    save_report(engine, row, (lambda conn: slack.queue_summary(conn, cfg, night, summary)) if pending else None)
    log.info("report %s: %s (%s)", night, summary, directory)
    if row.slack_state == SlackState.PENDING:
        row = deliver(cfg, engine, row)
    step("post")
    return row


def write_page(cfg: Config, directory: Path, row: ReportRow, facts: NightFacts) -> Path:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    tz = cfg.local_tz
    html = env.get_template("index.html").render(
        night=row.night,
        site=cfg.site.name,
        summary=row.summary,
        facts=facts,
        recipes=facts.recipes(),
        host=row.host,
        start=when_text(row.start_at, tz),
        end=when_text(row.end_at, tz),
        made=when_text(row.made_at, tz),
        plots=list(PLOT_TITLES.items()),
    )
    tmp = directory / "index.html.tmp"
    tmp.write_text(html)
    tmp.replace(directory / "index.html")
    shutil.copyfile(TEMPLATES / STYLESHEET, directory / STYLESHEET)
    return directory / "index.html"


def deliver(cfg: Config, engine: Engine, row: ReportRow) -> ReportRow:
    """Upload the overview picture to Slack; the row's new state (failed: tried again later)."""
    failed = slack.upload_overview(cfg, row.night, Path(row.path) / f"{OVERVIEW}.png", row.summary)
    state, error = (SlackState.FAILED, "; ".join(failed)) if failed else (SlackState.POSTED, None)
    mark_slack(engine, row.night, state, error)
    return replace(row, slack_state=state, slack_error=error, posted_at=utcnow() if not failed else None)
