"""`queue:server`: works through the recipes all night by itself.

Each pass: honour maintenance mode and pause; expire recipes whose window closed; choose the
next recipe (scheduler); run its steps through the telescope (ASCOM Alpaca, via alpyca) and
the DAQ (exposure requests tagged with the recipe's uuid and name), saving progress after
every step and every exposure. At each step boundary an `interrupt` recipe that may run now
preempts the running one, which goes back to the queue with its progress. Exposures wait for
safe weather (`safety.safe` on the board) when the recipe asks for it. A recipe found
`executing` when the server starts was cut short by a crash: it is marked interrupted, and
queued again with its progress when `queue.requeue_interrupted`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from gozen.config import Config
from gozen.db.events import record_event
from gozen.db.types import utcnow
from gozen.monitors.board import snapshot
from gozen.queue import store
from gozen.queue.recipe import ExposeStep, ParkStep, Recipe, ShutdownStep, SlewStep, WaitStep, step_kind
from gozen.queue.scheduler import Candidate, choose, sky_at, verdicts

log = logging.getLogger(__name__)


class Stop(Exception):
    """Leave the recipe now: preempted, aborted, or the server is shutting down."""

    def __init__(self, why: str, state: str) -> None:
        super().__init__(why)
        self.state = state


class StepFailed(Exception):
    pass


def candidates(rows: list[store.RecipeRow]) -> list[Candidate]:
    return [Candidate(r.uuid, r.name, r.priority_rank, r.submitted_at, r.recipe, r.ra_deg, r.dec_deg) for r in rows]


def safety(engine: Engine) -> tuple[bool, str]:
    """(safe to observe, why not) from the board; a missing or stale decision is unsafe."""
    snap = snapshot(engine, "safety.")
    safe, reasons = snap.get("safety.safe"), snap.get("safety.reasons")
    if safe is None or safe.stale:
        return False, "no fresh safety decision (is monitor:safety running?)"
    return safe.value is True, str(reasons.value) if reasons and reasons.value else ""


class Telescope:
    """The telescope through ASCOM Alpaca; every failure is a StepFailed naming the device."""

    def __init__(self, cfg: Config) -> None:
        from alpaca.telescope import Telescope as AlpacaTelescope

        self.address = cfg.monitors.telescope.address
        self.scope = AlpacaTelescope(self.address, cfg.monitors.telescope.device_number)
        self.timeout_s = cfg.queue.slew_timeout_s

    def _do(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as err:  # alpyca raises requests' and ASCOM's exceptions
            raise StepFailed(f"telescope at {self.address}: {what}: {type(err).__name__}: {err}") from None

    def slew(self, ra_deg: float, dec_deg: float, interrupted: Callable[[], None]) -> None:
        if self._do("AtPark", lambda: self.scope.AtPark):
            self._do("Unpark", self.scope.Unpark)
        self._do("SlewToCoordinatesAsync", lambda: self.scope.SlewToCoordinatesAsync(ra_deg / 15.0, dec_deg))
        self._settle(interrupted)

    def park(self, interrupted: Callable[[], None]) -> None:
        self._do("Park", self.scope.Park)
        self._settle(interrupted)

    def _settle(self, interrupted: Callable[[], None]) -> None:
        deadline = time.monotonic() + self.timeout_s
        while self._do("Slewing", lambda: self.scope.Slewing):
            if time.monotonic() > deadline:
                raise StepFailed(f"telescope: still slewing after {self.timeout_s:g} s")
            interrupted()
            time.sleep(0.2)


class QueueServer:
    def __init__(self, cfg: Config, engine: Engine, host: str, telescope: Telescope | None = None) -> None:
        self.cfg, self.engine, self.host = cfg, engine, host
        self.telescope = telescope or Telescope(cfg)
        self.fields = cfg.queue.positions()
        self.running: store.RecipeRow | None = None
        self.demo_count: int | None = None  # read from the database at the first demo recipe
        self.cache = store.CandidateCache()

    # -- state shown on the page ---------------------------------------------
    def activity(self, text: str) -> None:
        store.put_state(self.engine, "activity", {"text": text, "pid": os.getpid(), "host": self.host})

    def mode(self) -> str:
        st = store.get_state(self.engine)
        return str(st.get("mode", ("normal", None))[0] or "normal")

    def paused(self) -> bool:
        return bool(store.get_state(self.engine).get("paused", (False, None))[0])

    # -- start ---------------------------------------------------------------
    def recover(self) -> None:
        """Recipes left executing by a server that died: interrupted, and queued again if so configured."""
        for r in store.in_state(self.engine, ("executing",), limit=1000):
            store.set_state(self.engine, r.uuid, "interrupted", "the queue server stopped while it ran")
            record_event(
                self.engine,
                host=self.host,
                source="queue:server",
                kind="recipe_interrupted",
                subject=r.name,
                severity="warning",
                message=f"{r.name} was cut short at step {r.step + 1} (the server stopped)",
            )
            if self.cfg.queue.requeue_interrupted:
                store.set_state(
                    self.engine, r.uuid, "queued", f"queued again at step {r.step + 1}", "requeued", finished_at=None
                )
        store.clear_state(self.engine, "abort")
        store.put_state(self.engine, "server", {"pid": os.getpid(), "host": self.host, "since": utcnow().isoformat()})

    # -- one pass --------------------------------------------------------------
    def expire(self, now: datetime) -> None:
        for uuid, end in store.closed_windows(self.engine, now):
            store.set_state(self.engine, uuid, "expired", f"its window closed at {end:%m-%d %H:%M} UTC")

    def next_recipe(self, now: datetime) -> store.RecipeRow | None:
        cols = self.cache.columns(self.engine)
        if not cols.cands and self.cfg.queue.demo_survey:
            self.demo_recipe(now)
            cols = self.cache.columns(self.engine)
        safe, why = safety(self.engine)
        sky = sky_at(self.cfg.site, now)
        pick = choose(cols, sky, self.cfg.site, safe)
        if pick is None:
            top = next(iter(verdicts(cols.cands, sky, self.cfg.site, safe, why)), None)
            self.activity(f"blocking: {top.candidate.name}: {top.reason}" if top else "blocking: waiting for work")
            return None
        return store.get(self.engine, pick.uuid)

    def step_once(self, now: datetime | None = None) -> bool:
        """One pass; True when a recipe ran (or was tried)."""
        now = now or utcnow()
        if self.mode() == "maintenance":
            self.activity("maintenance: nothing starts")
            return False
        if self.paused():
            self.activity("paused")
            return False
        self.expire(now)
        row = self.next_recipe(now)
        if row is None:
            return False
        self.run(row)
        return True

    def run_forever(self) -> None:
        self.recover()
        while True:
            try:
                if not self.step_once():
                    time.sleep(self.cfg.queue.poll_s)
            except SystemExit:
                raise
            except Exception:  # a bug must not stop the night: log it, record it, go on
                log.exception("queue pass failed")
                time.sleep(self.cfg.queue.poll_s)

    # -- one recipe ------------------------------------------------------------
    def run(self, row: store.RecipeRow) -> None:
        r = row.recipe
        progress = dict(row.progress or {"step": 0, "done": 0})
        first = int(progress.get("step", 0))
        store.set_state(
            self.engine,
            row.uuid,
            "executing",
            f"started at step {first + 1} of {len(r.steps)}",
            "started",
            started_at=utcnow(),
        )
        self.running = row
        target = None
        try:
            resume_at = next((j for j in range(first - 1, -1, -1) if isinstance(r.steps[j], SlewStep)), None)
            if resume_at is not None:  # resumed part way: point where the recipe was pointing again
                self.activity(f"executing: {row.name}: pointing again (resumed at step {first + 1})")
                target = self.do_step(row, resume_at, r.steps[resume_at], progress, None)
            for i in range(first, len(r.steps)):
                if i > first:
                    self.preempt_check(row)
                step = r.steps[i]
                self.activity(f"executing: {row.name}: step {i + 1}/{len(r.steps)} {step_kind(step)}")
                target = self.do_step(row, i, step, progress, target)
                progress = {"step": i + 1, "done": 0}
                store.record(self.engine, row.uuid, "step", f"step {i + 1} ({step_kind(step)}) done", progress)
        except Stop as stop:
            extra = {"finished_at": None} if stop.state == "queued" else {}
            store.set_state(
                self.engine, row.uuid, stop.state, str(stop), "preempted" if stop.state == "queued" else None, **extra
            )
            self.running = None
            return
        except StepFailed as err:
            store.set_state(self.engine, row.uuid, "failed", str(err))
            record_event(
                self.engine,
                host=self.host,
                source="queue:server",
                kind="recipe_failed",
                subject=row.name,
                severity="error",
                message=str(err),
            )
            self.running = None
            return
        store.set_state(self.engine, row.uuid, "done", f"all {len(r.steps)} steps done")
        self.running = None
        if any(isinstance(s, ShutdownStep) for s in r.steps):
            self.activity("shut down by a recipe")
            store.clear_state(self.engine, "server")
            raise SystemExit(0)

    def interrupted(self) -> None:
        """Raise Stop if the running recipe was asked to abort (called often during long steps)."""
        row = self.running
        abort = store.get_state(self.engine).get("abort")
        if row is not None and abort and abort[0] and abort[0].get("uuid") in (row.uuid, "*"):
            store.clear_state(self.engine, "abort")
            raise Stop(f"aborted by {abort[0].get('by', 'an operator')}", "aborted")

    def preempt_check(self, row: store.RecipeRow) -> None:
        self.interrupted()
        if row.priority == "interrupt":
            return
        urgent = [r for r in store.queued(self.engine) if r.priority == "interrupt"]
        if not urgent:
            return
        safe, _ = safety(self.engine)
        pick = choose(candidates(urgent), sky_at(self.cfg.site, utcnow()), self.cfg.site, safe)
        if pick is not None:
            raise Stop(f"preempted by {pick.name}; queued again with its progress", "queued")

    def do_step(
        self, row: store.RecipeRow, i: int, step: Any, progress: dict[str, int], target: Any
    ) -> tuple[float, float] | None:
        if isinstance(step, SlewStep):
            a = step.slew
            ra, dec = self.fields[a.field] if a.field else (a.ra_deg, a.dec_deg)
            assert ra is not None and dec is not None
            self.telescope.slew(ra, dec, self.interrupted)
            return ra, dec
        if isinstance(step, ExposeStep):
            self.expose(row, i, step, progress, target)
        elif isinstance(step, WaitStep):
            end = time.monotonic() + step.wait.seconds
            while time.monotonic() < end:
                self.interrupted()
                time.sleep(min(0.5, max(0.0, end - time.monotonic())))
        elif isinstance(step, ParkStep):
            self.telescope.park(self.interrupted)
        return target

    def wait_for_safe(self, row: store.RecipeRow) -> None:
        said = False
        while True:
            safe, why = safety(self.engine)
            if safe:
                if said:
                    store.record(self.engine, row.uuid, "resumed", "safe to observe again")
                return
            if not said:
                store.record(self.engine, row.uuid, "waiting", f"waiting for safe weather: {why}")
                said = True
            self.activity(f"blocking: {row.name}: waiting for safe weather: {why}")
            self.interrupted()
            if self.mode() == "maintenance":
                raise Stop("maintenance mode while waiting for safe weather; queued again", "queued")
            time.sleep(self.cfg.queue.poll_s)

    def expose(self, row: store.RecipeRow, i: int, step: ExposeStep, progress: dict[str, int], target: Any) -> None:
        e = step.expose
        resuming = progress.get("step") == i
        # An exposure asked for before the server stopped is waited for, never asked for again.
        pending = progress.get("exp_id") if resuming else None
        for k in range(int(progress.get("done", 0)) if resuming else 0, e.count):
            if pending is not None:
                exp_id, pending = int(pending), None
            else:
                exp_id = self.ask_exposure(row, i, k, e, target)
            state = self.wait_exposure(exp_id, e.frames / e.fps)
            store.record(
                self.engine,
                row.uuid,
                "exposure",
                f"exposure {exp_id} ({state}): {k + 1}/{e.count}",
                {"step": i, "done": k + 1},
            )

    def ask_exposure(self, row: store.RecipeRow, i: int, k: int, e: Any, target: Any) -> int:
        from gozen.daq.catalog import ExposureRequest

        r = row.recipe
        if r.constraints.safe_weather:
            self.wait_for_safe(row)
        self.interrupted()
        ra, dec = target if target else (None, None)
        if ra is not None and dec is not None and e.dither_arcsec:
            dra, ddec = DITHER[k % len(DITHER)]
            ra, dec = (ra + dra * e.dither_arcsec / 3600) % 360, dec + ddec * e.dither_arcsec / 3600
        try:
            req = ExposureRequest(
                e.object,
                e.frames,
                e.fps,
                data_type=e.data_type,
                project=r.project,
                observer=r.observer,
                ra_deg=ra,
                dec_deg=dec,
                recipe_uuid=row.uuid,
                recipe_name=row.name,
            )
        except ValueError as err:  # a recipe stored before its values were checked at submission
            raise StepFailed(f"steps[{i}].expose: the DAQ cannot take it: {err}") from None
        return store.request_exposure(self.engine, row.uuid, req, i, k)

    def wait_exposure(self, exp_id: int, duration_s: float) -> str:
        """Wait until the DAQ accounts for the exposure; its state. StepFailed if it failed, timed out,
        or left no file. The timeout runs from the exposure's start in the DAQ: time spent queued
        behind other exposures does not count."""
        from gozen.daq.catalog import exposure_outcome

        allowed_s = duration_s + self.cfg.queue.exposure_timeout_s
        deadline = time.monotonic() + allowed_s
        while True:
            out = exposure_outcome(self.engine, exp_id)
            if out.state in ("done", "incomplete"):
                if out.files_written == 0:
                    raise StepFailed(f"exposure {exp_id} ended with {out.why_no_file()}")
                return str(out.state)
            if out.state in ("failed", None):
                raise StepFailed(f"exposure {exp_id} {'failed' if out.state else 'is unknown'} in the DAQ")
            now = time.monotonic()
            if out.start_at is not None:
                deadline = now + (out.start_at - utcnow()).total_seconds() + allowed_s
            elif out.daq_busy:
                deadline = max(deadline, now + allowed_s)  # queued behind other DAQ work
            if now > deadline:
                where = "armed" if out.start_at else "still queued in the DAQ (is daq:control running?)"
                raise StepFailed(f"exposure {exp_id} timed out: {where}")
            time.sleep(0.2)

    # -- the demo survey ---------------------------------------------------------
    def demo_recipe(self, now: datetime) -> store.RecipeRow:
        """The simulated observatory's looping survey: the next field near the meridian, 12 frames at 2 fps."""
        sky = sky_at(self.cfg.site, now)
        first = self.demo_count is None
        if self.demo_count is None:
            self.demo_count = store.last_demo_number(self.engine)
        self.demo_count += 1
        n = self.demo_count
        ra = (sky.lst_deg + 6.0 * ((n % 5) - 2)) % 360
        dec = max(-89.0, min(89.0, self.cfg.site.lat_deg - 10.0 + 5.0 * (n % 4)))
        recipe = Recipe.model_validate(
            {
                "name": store.DEMO_NAME.format(n=n),
                "description": "demo survey field (queue.demo_survey)",
                "project": "demo",
                "priority": "low",
                "window": {  # a field about every minute, leaving the telescope free in between
                    "not_before": (now + timedelta(seconds=0 if first else 50)).astimezone(UTC).isoformat(),
                    "not_after": (now + timedelta(minutes=30)).astimezone(UTC).isoformat(),
                },
                "steps": [
                    {"slew": {"ra_deg": round(ra, 4), "dec_deg": round(dec, 4)}},
                    {"expose": {"object": f"DEMO-{n:03d}", "frames": 12, "fps": 2.0, "count": 1}},
                ],
            }
        )
        return store.submit(self.engine, recipe, store.DEMO_SUBMITTER, self.fields)


# A square dither pattern, in units of dither_arcsec: (dRA, dDec).
DITHER = [(0, 0), (1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1)]


def run_queue_server(cfg: Config, host: str, engine: Engine) -> None:
    QueueServer(cfg, engine, host).run_forever()
