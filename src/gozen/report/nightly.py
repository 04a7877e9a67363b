"""`www:report`: after each night's morning twilight, its report; posts that failed are tried again."""

from __future__ import annotations

import logging

from gozen.db.types import utcnow
from gozen.report.build import build_report, deliver
from gozen.report.night import latest_finished_night
from gozen.report.store import has_report, unposted
from gozen.service import Context, Service

log = logging.getLogger(__name__)


class Reporter(Service):
    """Every reports.every_s: the latest finished night without a report gets one; reports made here
    that did not reach Slack are posted again (a Slack that is down never blocks the program)."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.period_s = ctx.cfg.reports.every_s

    def run_once(self) -> None:
        cfg, engine = self.ctx.cfg, self.ctx.engine
        for row in unposted(engine, self.ctx.host):
            row = deliver(cfg, engine, row)
            log.info("report %s: slack %s %s", row.night, row.slack_state, row.slack_error or "")
        night = latest_finished_night(cfg, utcnow())
        if has_report(engine, night):
            return
        row = build_report(cfg, engine, night, host=self.ctx.host)
        self.ctx.event("nightly_report", night, row.summary, data={"path": row.path, "slack": row.slack_state})
