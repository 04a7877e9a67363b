"""`daq:control`: arms queued exposures back to back and closes the books on finished ones."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from sqlalchemy import Engine

from gozen.config import Config
from gozen.daq import catalog
from gozen.daq.backlog import MAX_RETRY_S
from gozen.daq.snapshot import take_snapshot
from gozen.db.states import ExposureState
from gozen.db.types import utcnow
from gozen.service import Context, Service

log = logging.getLogger(__name__)
POLL_S = 0.1
FINISH_EVERY_S = 1.0
# Between exposures the chips are read out and re-armed; Tomo-e's gap is about this.
INTER_EXPOSURE_GAP_S = 0.05
# Passes further apart than this mean the database was away (a pass waits POLL_S otherwise).
AWAY_AFTER_S = 2.0
# After the database was away, the first exposures start this much later than usual: the
# readouts and writers ask it again within MAX_RETRY_S, and must know of an exposure before it starts.
RESUME_LEAD_S = 2 * MAX_RETRY_S + 1


def arm_next(cfg: Config, engine: Engine, host: str, lead_s: float = 0.0) -> int | None:
    """Arm the oldest queued exposure to start after the last armed one (or soon: start_delay_s
    plus `lead_s` from now); its id or None."""
    req = catalog.next_queued(engine)
    if req is None:
        return None
    now = utcnow()
    delay = timedelta(seconds=cfg.daq.start_delay_s + lead_s)
    earliest = now + delay
    last_end = catalog.last_armed_end(engine)
    if last_end is not None and last_end - now > timedelta(seconds=2):
        return None  # keep at most one exposure armed ahead
    start = max(earliest, (last_end or earliest) + timedelta(seconds=INTER_EXPOSURE_GAP_S))
    snap = take_snapshot(cfg, engine, start, req["ra_deg"], req["dec_deg"])
    # The snapshot can take a while on a busy host (the first one over a second): a start fixed
    # before it could already be past when the readouts see it, and the exposure would be lost.
    start = _to_ms(max(start, utcnow() + delay))
    end = start + timedelta(seconds=req["n_frames"] / req["fps"])
    if not catalog.arm(engine, req["exp_id"], start, end, list(cfg.camera.chips), snap):
        return None
    log.info("armed exposure exp_id=%s object=%s start=%s", req["exp_id"], req["object"], start.isoformat())
    return int(req["exp_id"])


def _to_ms(t: datetime) -> datetime:
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


class Control(Service):
    """Each pass arms what is queued (an exposure queued while the database was away is armed
    when it answers, to start then) and, every FINISH_EVERY_S, closes finished exposures."""

    period_s = POLL_S

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.grace = timedelta(seconds=ctx.cfg.daq.frame_timeout_s * 2 + 5)
        self.next_books = 0.0
        self.last_pass: float | None = None
        self.give_up_from = 0.0  # monotonic: before it, an exposure is never closed incomplete
        self.lead_until = 0.0  # monotonic: before it, exposures are armed RESUME_LEAD_S later

    def run_once(self) -> None:
        now = time.monotonic()
        if self.last_pass is None or now - self.last_pass > AWAY_AFTER_S:
            # Starting, or the database was away: the files written meanwhile wait in the writers'
            # spools and are recorded over the next moments (give them the grace again before
            # giving up), and the readouts may be backing off (start the next exposures later).
            self.give_up_from = now + self.grace.total_seconds()
            self.lead_until = now + RESUME_LEAD_S
        lead_s = RESUME_LEAD_S if now < self.lead_until else 0.0
        while arm_next(self.ctx.cfg, self.ctx.engine, self.ctx.host, lead_s) is not None:
            pass
        if now >= self.next_books:
            self.next_books = now + FINISH_EVERY_S
            for exp_id, state in catalog.finish_exposures(self.ctx.engine, self.grace, now >= self.give_up_from):
                if state != ExposureState.DONE:
                    self.ctx.event(
                        "exposure_incomplete",
                        f"exp {exp_id}",
                        f"exposure {exp_id} finished without every chip's file",
                        "warning",
                    )
        self.last_pass = time.monotonic()
