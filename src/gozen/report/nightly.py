"""`www:report`: after each night's morning twilight, its report; posts that failed are tried again.

The latest finished night is always reported (a quiet night says so). Earlier nights missed while
the program was down (up to CATCH_UP_NIGHTS back) are reported too if they have exposures.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

from gozen.db.types import utcnow
from gozen.report.build import build_report, deliver
from gozen.report.facts import exposures_between
from gozen.report.night import latest_finished_night, night_span
from gozen.report.store import has_report, unposted
from gozen.service import Context, Service

log = logging.getLogger(__name__)
CATCH_UP_NIGHTS = 7


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
        for night in self.due():
            if self.ctx.stopping:
                return
            row = build_report(cfg, engine, night, host=self.ctx.host)
            self.ctx.event("nightly_report", night, row.summary, data={"path": row.path, "slack": row.slack_state})

    def due(self) -> list[str]:
        """Nights to report now, oldest first: the latest finished one, and earlier ones with exposures."""
        cfg, engine = self.ctx.cfg, self.ctx.engine
        latest = latest_finished_night(cfg, utcnow())
        evening = date.fromisoformat(latest)
        nights = [(evening - timedelta(days=n)).isoformat() for n in range(CATCH_UP_NIGHTS, -1, -1)]
        out = []
        for night in nights:
            if has_report(engine, night):
                continue
            span = night_span(night, cfg.local_tz)
            if night == latest or exposures_between(engine, span.start_at, span.end_at) > 0:
                out.append(night)
        return out
