"""`daq:control`: arms queued exposures back to back on every DAQ host and closes the books on finished ones.

One for the whole camera (on the host with role daq-master, else the first DAQ host): every host's
readouts learn the armed exposures from the database and start at the same GPS-stamped time. An
exposure is closed when each of its chips is accounted for; a DAQ host that recorded no file of
its chips by the deadline is told (`daq_host_silent`) and those chips are recorded lost. An
exposure asked to stop (catalog.stop_exposure) ends at the next frame boundary: its end moves
earlier (the readouts cut their frames there themselves), or, not begun yet, it fails with no file.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Engine

from gozen.config import Config
from gozen.daq import catalog
from gozen.daq.backlog import MAX_RETRY_S
from gozen.daq.geometry import geometry
from gozen.daq.headers import tomoe_filename
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


def lost_file_row(cfg: Config, exp: catalog.OverdueExposure, det_id: int) -> dict[str, Any]:
    """The row of a chip whose file no DAQ host recorded by the deadline: every frame counted missing,
    on the host that reads the chip (a row the host records later replaces it: catalog.record_files)."""
    shape = geometry(cfg.camera)
    return catalog.lost_file_row(
        exp.exp_id,
        det_id,
        tomoe_filename(det_id, exp.exp_id, exp.start_at, cfg.site.lon_deg),
        cfg.daq_host_of_chip(det_id) or "(no DAQ host reads it)",
        catalog.CONTROL_WRITER,
        exp.n_frames,
        (shape.width, shape.height),
    ) | {"created_at": utcnow()}


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
        self.end_stopped()  # before arming: a stopped exposure is never armed
        while arm_next(self.ctx.cfg, self.ctx.engine, self.ctx.host, lead_s) is not None:
            pass
        if now >= self.next_books:
            self.next_books = now + FINISH_EVERY_S
            self.close_books(give_up=now >= self.give_up_from)
        self.last_pass = time.monotonic()

    def end_stopped(self) -> None:
        """Apply the stops asked since the last pass, each told once (`exposure_stopped`)."""
        for s in catalog.end_stopped(self.ctx.engine):
            if s.state == ExposureState.FAILED:
                what = f"exposure {s.exp_id} stopped before it started: {s.stop_reason}; no file is written"
            else:
                what = f"exposure {s.exp_id} stops after frame {s.frames_kept} of {s.n_frames}: {s.stop_reason}"
            log.info("%s", what)
            self.ctx.event(
                "exposure_stopped",
                f"exp {s.exp_id}",
                what,
                "info",
                {"exp_id": s.exp_id, "frames_kept": s.frames_kept, "n_frames": s.n_frames, "reason": s.stop_reason},
            )

    def close_books(self, give_up: bool) -> None:
        """Close the finished exposures; tell each DAQ host that sent no file of some chips, and each
        exposure closed without every chip's file."""
        lost_row = partial(lost_file_row, self.ctx.cfg)
        for closed in catalog.finish_exposures(self.ctx.engine, self.grace, give_up, lost_row):
            by_host: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
            for row in closed.lost:
                by_host[row["daq_host"]].append(row)
            for host, rows in by_host.items():
                self.tell_silent(host, closed, rows)
            if closed.state != ExposureState.DONE:
                self.ctx.event(
                    "exposure_incomplete",
                    f"exp {closed.exp_id}",
                    f"exposure {closed.exp_id} finished without every chip's file",
                    "warning",
                )

    def tell_silent(self, host: str, closed: catalog.ClosedExposure, rows: list[dict[str, Any]]) -> None:
        chips = sorted(r["det_id"] for r in rows)
        frames = sum(r["frames_missing"] for r in rows)
        reported = sorted(closed.reported & set(chips))
        what = (
            f"its readouts reported chips {reported} but no file of them was recorded"
            if reported
            else "nothing came from it (no file, no readout report)"
        )
        self.ctx.event(
            "daq_host_silent",
            host,  # the host, so that a notifier groups the exposures of one outage
            f"DAQ host {host} recorded no file of chips {chips} of exposure {closed.exp_id} by its deadline "
            f"(end + {self.grace.total_seconds():.0f} s): {what}; they are recorded lost, {frames} frames "
            "counted missing",
            "error",
            {"daq_host": host, "exp_id": closed.exp_id, "chips": chips, "frames_missing": frames},
        )
