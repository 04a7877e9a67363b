"""The DAQ page (`/daq`) and its JSON twin (`/api/daq`): per DAQ host and per chip, with a map
of the focal plane as on the sky (north up, east left), each chip coloured by its state, its latest
quick look's sky, noise, stars and FWHM, and the latest quick-look mosaic."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from gozen.daq.focalplane import FOCAL_PLANE, MARGIN_PX
from gozen.daq.quicklook import ChipLook, latest_chip_looks, latest_look
from gozen.daq.stats import CHIP_STATE_WORDS, ChipState, ChipStats, DaqOverview, daq_overview, overview_json
from gozen.web.security import current_identity

router = APIRouter()
Hours = Annotated[float, Query(gt=0, le=24 * 31, description="Exposures that started in the last this many hours")]
# The compass's corner, in the top-left corner Q1's short outer column leaves empty (rows 5 and 6).
COMPASS_AT = (62.0, MARGIN_PX + 62.0)


def look_words(look: ChipLook | None) -> str:
    """A chip's quick look in one line: sky, noise, stars and FWHM."""
    if look is None:
        return "no quick look"
    stars = "stars not counted" if look.n_stars is None else f"{look.n_stars} stars"
    fwhm = f", FWHM {look.fwhm_px:.2f} px" if look.fwhm_px is not None else ""
    return f"quick look of exp {look.exp_id}: sky {look.sky_adu:.1f} ± {look.noise_adu:.1f} ADU, {stars}{fwhm}"


def chip_title(c: ChipStats, look: ChipLook | None = None) -> str:
    """The hover text: the chip, its host and state, its numbers, its latest quick look."""
    head = f"{c.det_id} · {c.host or 'no DAQ host'} · {CHIP_STATE_WORDS[c.state]}"
    tail = f"\n{look_words(look)}" if look else ""
    if not c.seen:
        return head + tail
    return (
        f"{head}\n{c.frames_read} frames read, {c.frames_missing} missing, {c.frames_damaged} damaged, "
        f"{c.frames_dropped} dropped\n{c.files} files, {c.mb_per_s:.1f} MB/s"
        + (f", last {c.last_file}" if c.last_file else "")
        + tail
    )


@dataclass(frozen=True)
class DaqView:
    ov: DaqOverview
    looks: dict[int, ChipLook]  # each chip's latest quick look in the page's window
    latest_look: int | None  # the newest exposure with a quick look (its mosaic is shown)


def _view(request: Request, hours: float) -> DaqView:
    now = datetime.now(UTC)
    engine = request.app.state.engine
    since = now - timedelta(hours=hours)
    ov = daq_overview(request.app.state.cfg, engine, since, now)
    return DaqView(ov, latest_chip_looks(engine, since), latest_look(engine))


def mosaic_url(exp_id: int | None) -> str | None:
    return None if exp_id is None else f"/exposures/{exp_id}/mosaic.png"


@router.get("/api/daq")
async def daq_json(request: Request, hours: Hours = 1.0) -> dict[str, Any]:
    v = await run_in_threadpool(_view, request, hours)
    doc = overview_json(v.ov)
    for c in doc["chips"]:
        look = v.looks.get(c["det_id"])
        c["quicklook"] = look.as_json() | {"png": f"/exposures/{look.exp_id}/chips/{look.det_id}.png"} if look else None
    return doc | {"hours": hours, "quicklook": {"exp_id": v.latest_look, "mosaic": mosaic_url(v.latest_look)}}


@router.get("/daq", response_class=HTMLResponse)
async def daq_page(request: Request, hours: Hours = 1.0) -> Response:
    v = await run_in_threadpool(_view, request, hours)
    ov = v.ov
    chips = {c.det_id: c for c in ov.chips}
    ctx = {
        "looks": v.looks,
        "latest_look": v.latest_look,
        "mosaic_url": mosaic_url(v.latest_look),
        "ov": ov,
        "hours": hours,
        "totals": ov.totals,
        "plane": FOCAL_PLANE,
        "chips": chips,
        "state_counts": Counter(chips[b.det_id].state for b in FOCAL_PLANE.boxes),
        "states": list(ChipState),
        "state_words": CHIP_STATE_WORDS,
        "chip_title": chip_title,
        "compass": COMPASS_AT,
        "identity": current_identity(request),
        "refresh_s": request.app.state.cfg.web.refresh_s,
    }
    return request.app.state.templates.TemplateResponse(request, "daq.html", ctx)
