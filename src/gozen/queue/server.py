"""`queue:server`: works through the recipes all night by itself.

Each pass: honour maintenance mode and pause; expire recipes whose window closed; choose the
next recipe (scheduler); run its steps through the telescope (`devices.telescope`) and the DAQ
(exposure requests tagged with the recipe's uuid and name), saving progress after every step
and every exposure. At each step boundary an `interrupt` recipe that may run now preempts the
running one, which goes back to the queue with its progress. Exposures wait for safe weather
(`safety.safe` on the board) when the recipe asks for it. When it turns unsafe (`queue.close_when_unsafe`),
every pass (idle, paused or between recipes; not in maintenance) closes the dome and parks the telescope
(`queue.safety.Enclosure`), and a running recipe that needs safe weather stops: the exposure in hand is
ended at its next frame boundary (it counts, with the frames it got; one stopped before it started is
asked again), the next is not asked, and the recipe goes back to the queue with its progress; it
resumes where it was (pointing again first) once the dome is open again. A recipe cut short (the
server was stopped or killed, or a pass failed under it) is marked interrupted, and queued again with
its progress when `queue.requeue_interrupted`. A shutdown recipe stops the server with exit 0.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from gozen.daq.catalog import ExposureOutcome
from gozen.db.states import ExposureState, QueueMode, RecipeState
from gozen.db.types import utcnow
from gozen.devices.factory import dome_from_config, telescope_from_config
from gozen.devices.telescope import TelescopeError
from gozen.queue import store
from gozen.queue.recipe import ExposeStep, ParkStep, Recipe, ShutdownStep, SlewStep, WaitStep, step_kind
from gozen.queue.safety import Enclosure, safety
from gozen.queue.scheduler import Candidate, choose, sky_at, verdicts
from gozen.service import Context, DeviceUnavailable, Service

STOPPED = "the queue server stopped"
PASS_FAILED = "a pass of the queue server failed (see its log)"  # the database went away under it ...


class Stop(Exception):
    """Leave the recipe now: preempted, aborted, unsafe, or the server is shutting down."""

    def __init__(self, why: str, state: RecipeState, kind: str | None = None) -> None:
        super().__init__(why)
        self.state, self.kind = state, kind  # kind: the recipe event, when not the state's own


class StepFailed(Exception):
    pass


def candidates(rows: list[store.RecipeRow]) -> list[Candidate]:
    return [Candidate(r.uuid, r.name, r.priority_rank, r.submitted_at, r.recipe, r.ra_deg, r.dec_deg) for r in rows]


def sky_ok(engine: Engine, enclosure: Enclosure) -> tuple[bool, str]:
    """(recipes that need the sky may start, why not): safe weather, and the dome not held closed."""
    safe, why = safety(engine)
    held = enclosure.held() if safe else ""
    return safe and not held, why or held


class QueueServer(Service):
    """A pass every `queue.poll_s`; at once again after a recipe ran."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.cfg, self.engine, self.host = ctx.cfg, ctx.engine, ctx.host
        self.period_s = ctx.cfg.queue.poll_s
        self.telescope = telescope_from_config(ctx.cfg)
        self.enclosure = Enclosure(ctx, self.telescope, dome_from_config(ctx.cfg))
        self.fields = ctx.cfg.queue.positions()
        self.running: store.RecipeRow | None = None  # left set when a pass fails under a recipe
        self.demo_count: int | None = None  # read from the database at the first demo recipe
        self.cache = store.CandidateCache()

    def activity(self, text: str) -> None:
        """What the page shows the server doing."""
        store.set_activity(self.engine, text, self.host)

    # -- start, passes, stop -------------------------------------------------------
    def setup(self) -> None:
        self.recover(STOPPED)
        self.enclosure.restore()
        store.server_started(self.engine, self.host)

    def run_once(self) -> bool:
        if self.running is not None:
            self.recover(PASS_FAILED)
        return self.step_once()

    def teardown(self) -> None:
        store.server_stopped(self.engine)

    def recover(self, why: str) -> None:
        """Recipes left executing by a server that died, or by a pass that failed: interrupted."""
        for r in store.in_state(self.engine, (RecipeState.EXECUTING,), limit=1000):
            self.interrupt(r, why)
        self.running = None

    def interrupt(self, r: store.RecipeRow, why: str) -> None:
        """A recipe cut short: interrupted, and queued again with its progress if so configured."""
        store.set_state(self.engine, r.uuid, RecipeState.INTERRUPTED, f"{why} while it ran")
        self.ctx.event("recipe_interrupted", r.name, f"{r.name} was cut short at step {r.step + 1} ({why})", "warning")
        if self.cfg.queue.requeue_interrupted:
            store.set_state(
                self.engine,
                r.uuid,
                RecipeState.QUEUED,
                f"queued again at step {r.step + 1}",
                "requeued",
                finished_at=None,
            )

    # -- one pass --------------------------------------------------------------
    def expire(self, now: datetime) -> None:
        for uuid, end in store.closed_windows(self.engine, now):
            store.set_state(self.engine, uuid, RecipeState.EXPIRED, f"its window closed at {end:%m-%d %H:%M} UTC")

    def next_recipe(self, now: datetime) -> store.RecipeRow | None:
        cols = self.cache.columns(self.engine)
        if not cols.cands and self.cfg.queue.demo_survey:
            self.demo_recipe(now)
            cols = self.cache.columns(self.engine)
        safe, why = sky_ok(self.engine, self.enclosure)
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
        st = store.queue_status(self.engine)
        self.enclosure.tend(st.mode)
        if st.mode == QueueMode.MAINTENANCE:
            self.activity("maintenance: nothing starts")
            return False
        if st.paused:
            self.activity("paused")
            return False
        self.expire(now)
        row = self.next_recipe(now)
        if row is None:
            return False
        self.run(row)
        return True

    # -- one recipe ------------------------------------------------------------
    def run(self, row: store.RecipeRow) -> None:
        r = row.recipe
        progress = dict(row.progress or {"step": 0, "done": 0})
        first = int(progress.get("step", 0))
        started = f"started at step {first + 1} of {len(r.steps)}"
        store.set_state(self.engine, row.uuid, RecipeState.EXECUTING, started, "started", started_at=utcnow())
        self.running = row
        try:
            self.steps(row, first, progress)
        except Stop as stop:
            self.running = None
            if stop.state == RecipeState.INTERRUPTED:
                self.interrupt(store.get(self.engine, row.uuid) or row, STOPPED)
            elif stop.state == RecipeState.QUEUED:
                store.set_state(
                    self.engine, row.uuid, stop.state, str(stop), stop.kind or "preempted", finished_at=None
                )
            else:
                store.set_state(self.engine, row.uuid, stop.state, str(stop))
            return
        except StepFailed as err:
            self.running = None
            store.set_state(self.engine, row.uuid, RecipeState.FAILED, str(err))
            self.ctx.event("recipe_failed", row.name, str(err), "error")
            return
        self.running = None
        store.set_state(self.engine, row.uuid, RecipeState.DONE, f"all {len(r.steps)} steps done")
        if any(isinstance(s, ShutdownStep) for s in r.steps):
            self.activity("shut down by a recipe")
            self.ctx.stop.set()  # the runner stops after this pass: exit 0, and supervisord leaves it stopped

    def steps(self, row: store.RecipeRow, first: int, progress: dict[str, int]) -> None:
        """The recipe's steps from `first` on, its progress saved after each."""
        r = row.recipe
        target = None
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

    def interrupted(self) -> None:
        """Raise Stop if the running recipe was asked to abort, or the server to stop (called often
        during long steps)."""
        if self.ctx.stopping:
            raise Stop(STOPPED, RecipeState.INTERRUPTED)
        by = store.abort_asked_by(self.engine, self.running.uuid) if self.running is not None else None
        if by is not None:
            raise Stop(f"aborted by {by}", RecipeState.ABORTED)
        why = self.unsafe()
        if why is not None:
            raise Stop(f"unsafe ({why}): stopped; queued again with its progress", RecipeState.QUEUED, "stopped_unsafe")

    def unsafe(self) -> str | None:
        """Why the running recipe must leave the sky now (asked about once a second), else None. A recipe that
        observes in any weather (safe_weather: false) goes on: only the dome closes."""
        why = self.enclosure.unsafe_now()
        if why is None or self.running is None:
            return None
        if self.running.recipe.constraints.safe_weather:
            return why
        self.enclosure.close(why, park=False)
        return None

    def pause(self, seconds: float) -> None:
        """Wait between questions during a step; Stop when the recipe is to be left."""
        self.interrupted()
        if self.ctx.sleep(seconds):
            raise Stop(STOPPED, RecipeState.INTERRUPTED)

    def preempt_check(self, row: store.RecipeRow) -> None:
        self.interrupted()
        if row.priority == "interrupt":
            return
        urgent = [r for r in store.queued(self.engine) if r.priority == "interrupt"]
        if not urgent:
            return
        safe, _ = sky_ok(self.engine, self.enclosure)
        pick = choose(candidates(urgent), sky_at(self.cfg.site, utcnow()), self.cfg.site, safe)
        if pick is not None:
            raise Stop(f"preempted by {pick.name}; queued again with its progress", RecipeState.QUEUED)

    def do_step(
        self, row: store.RecipeRow, i: int, step: Any, progress: dict[str, int], target: Any
    ) -> tuple[float, float] | None:
        if isinstance(step, SlewStep):
            a = step.slew
            ra, dec = self.fields[a.field] if a.field else (a.ra_deg, a.dec_deg)
            assert ra is not None and dec is not None
            self.move(lambda: self.telescope.point(ra, dec, self.cfg.queue.slew_timeout_s, self.pause))
            return ra, dec
        if isinstance(step, ExposeStep):
            self.expose(row, i, step, progress, target)
        elif isinstance(step, WaitStep):
            end = time.monotonic() + step.wait.seconds
            while time.monotonic() < end:
                self.pause(min(0.5, max(0.0, end - time.monotonic())))
        elif isinstance(step, ParkStep):
            self.move(lambda: self.telescope.park(self.cfg.queue.slew_timeout_s, self.pause))
        return target

    def move(self, telescope_does: Callable[[], None]) -> None:
        """A telescope step; StepFailed saying why when the mount fails or does not answer."""
        try:
            telescope_does()
        except (TelescopeError, DeviceUnavailable) as err:
            raise StepFailed(str(err)) from None

    def wait_for_safe(self, row: store.RecipeRow) -> None:
        said = False
        while True:
            safe, why = sky_ok(self.engine, self.enclosure)
            if safe:
                if said:
                    store.record(self.engine, row.uuid, "resumed", "safe to observe again")
                return
            if not said:
                store.record(self.engine, row.uuid, "waiting", f"waiting for safe weather: {why}")
                said = True
            self.activity(f"blocking: {row.name}: waiting for safe weather: {why}")
            self.interrupted()
            if store.queue_status(self.engine).mode == QueueMode.MAINTENANCE:
                raise Stop("maintenance mode while waiting for safe weather; queued again", RecipeState.QUEUED)
            self.pause(self.cfg.queue.poll_s)

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
            out, unsafe = self.wait_exposure(exp_id, e.frames / e.fps)
            done = k + 1 if out.files_written else k  # stopped before it started: asked again when resumed
            how = str(out.state)
            if out.stopped:
                how = (
                    f"{how}, cut short: {out.frames_kept} frames" if out.files_written else "stopped before it started"
                )
            store.record(
                self.engine,
                row.uuid,
                "exposure",
                f"exposure {exp_id} ({how}): {done}/{e.count}",
                {"step": i, "done": done},
            )
            if unsafe is not None:
                raise Stop(
                    f"unsafe ({unsafe}): exposing stopped after {done}/{e.count} exposures of step {i + 1}; "
                    "queued again with its progress",
                    RecipeState.QUEUED,
                    "stopped_unsafe",
                )

    def ask_exposure(self, row: store.RecipeRow, i: int, k: int, e: Any, target: Any) -> int:
        from gozen.daq.catalog import ExposureRequest

        r = row.recipe
        if r.constraints.safe_weather:
            self.wait_for_safe(row)
            if not self.enclosure.open_dome(f"for {row.name}", self.pause):
                raise Stop("the dome did not open; queued again with its progress", RecipeState.QUEUED, "dome_not_open")
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

    def wait_exposure(self, exp_id: int, duration_s: float) -> tuple[ExposureOutcome, str | None]:
        """Wait until the DAQ accounts for the exposure: its outcome, and why it was asked to stop (unsafe;
        None if it was not). StepFailed if it failed, timed out, or left no file (unless stopped before it began).
        The timeout runs from the exposure's start in the DAQ: time spent queued behind other exposures
        does not count. An abort waits for the exposure in hand to end; unsafe weather ends it at the
        next frame boundary (daq.catalog.stop_exposure) and starts the dome closing meanwhile."""
        from gozen.daq.catalog import exposure_outcome, stop_exposure

        allowed_s = duration_s + self.cfg.queue.exposure_timeout_s
        deadline = time.monotonic() + allowed_s
        unsafe: str | None = None
        while True:
            out = exposure_outcome(self.engine, exp_id)
            if out.stopped and out.state == ExposureState.FAILED and out.files_written == 0:
                return out, unsafe  # stopped before its first frame: no file, asked again on resume
            if out.state in (ExposureState.DONE, ExposureState.INCOMPLETE):
                if out.files_written == 0:
                    raise StepFailed(f"exposure {exp_id} ended with {out.why_no_file()}")
                return out, unsafe
            if out.state in (ExposureState.FAILED, None):
                raise StepFailed(f"exposure {exp_id} {'failed' if out.state else 'is unknown'} in the DAQ")
            now = time.monotonic()
            if out.start_at is not None:
                deadline = now + (out.start_at - utcnow()).total_seconds() + allowed_s
            elif out.daq_busy:
                deadline = max(deadline, now + allowed_s)  # queued behind other DAQ work
            if now > deadline:
                where = "armed" if out.start_at else "still queued in the DAQ (is daq:control running?)"
                raise StepFailed(f"exposure {exp_id} timed out: {where}")
            if unsafe is None and (unsafe := self.unsafe()) is not None:
                stop_exposure(self.engine, exp_id, f"unsafe: {unsafe}")
                self.activity(f"stopping exposure {exp_id}: unsafe ({unsafe}); closing the dome")
                self.enclosure.close(unsafe, park=False)  # the shutter starts closing while the DAQ ends it
            if self.ctx.sleep(0.2):  # the exposure goes on: a restarted server waits for it
                raise Stop(STOPPED, RecipeState.INTERRUPTED)

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
