"""The exposures browser (`/exposures`, `/exposures/{exp_id}`) and its JSON twin (`/api/exposures...`):
each exposure with its files, sizes, checksums, replicas and archive state, newest first, filtered by
night, object, recipe, data type and state, paged by exposure id (`before`)."""

from __future__ import annotations

from typing import Any

from astropy import units as u
from astropy.coordinates import Angle
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response

from gozen.daq.browse import MAX_LIMIT, ExposureFilter, FilterError, exposure_detail, list_exposures
from gozen.daq.catalog import DATA_TYPES
from gozen.db.states import ExposureState
from gozen.web.security import current_identity

router = APIRouter()


def size_words(n: int | None) -> str:
    """Bytes in human units: 54.2 MB, 4.55 GB."""
    if n is None:
        return "–"
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            v = n / scale
            return f"{v:.2f} {unit}" if v < 10 else f"{v:.1f} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{n} B"


def radec_words(ra_deg: float | None, dec_deg: float | None) -> str:
    """ "11:45:00.0 +01:00:00 (176.2500°, +1.0000°)", or "–" without a position."""
    if ra_deg is None or dec_deg is None:
        return "–"
    ra = Angle(ra_deg, u.deg).to_string(unit=u.hour, sep=":", precision=1, pad=True)
    dec = Angle(dec_deg, u.deg).to_string(unit=u.deg, sep=":", precision=0, alwayssign=True, pad=True)
    return f"{ra} {dec} ({ra_deg:.4f}°, {dec_deg:+.4f}°)"


# -- routes --------------------------------------------------------------------------
def _bad(parameter: str, why: str) -> JSONResponse:
    return JSONResponse({"detail": f"{parameter}: {why}", "parameter": parameter}, status_code=422)


@router.get("/api/exposures")
async def exposures_json(request: Request) -> Response:
    """Exposures newest first. Query: night (YYYY-MM-DD, local date of its evening), object (substring),
    recipe (name or uuid), data_type (OBJECT, FLAT, DARK), state, before (an exp_id), limit (1..200)."""
    try:
        f = ExposureFilter.parse(request.query_params)
    except FilterError as err:
        return _bad(err.parameter, str(err).partition(": ")[2])
    page = await run_in_threadpool(list_exposures, request.app.state.cfg, request.app.state.engine, f)
    return JSONResponse(
        {
            "filters": f.as_json(),
            "night_span": [t.isoformat() for t in page.span] if page.span else None,
            "exposures": [r.as_json() for r in page.rows],
            "next_before": page.next_before,
            "replication": request.app.state.cfg.transfer.replication,
        }
    )


@router.get("/exposures", response_class=HTMLResponse)
async def exposures_page(request: Request) -> Response:
    error, status = None, 200
    try:
        f = ExposureFilter.parse(request.query_params)
    except FilterError as err:
        error, status, f = str(err), 422, ExposureFilter()
    page = None
    if error is None:
        page = await run_in_threadpool(list_exposures, request.app.state.cfg, request.app.state.engine, f)
    ctx = _page_ctx(request) | {
        "f": f,
        "raw": request.query_params,
        "page": page,
        "error": error,
        "data_types": DATA_TYPES,
        "states": list(ExposureState),
        "max_limit": MAX_LIMIT,
    }
    return request.app.state.templates.TemplateResponse(request, "exposures.html", ctx, status_code=status)


def _page_ctx(request: Request) -> dict[str, Any]:
    return {"identity": current_identity(request), "size_words": size_words, "radec_words": radec_words}


def _exp_id(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) < 12 else None


@router.get("/api/exposures/{exp_id}")
async def exposure_json(request: Request, exp_id: str) -> Response:
    n = _exp_id(exp_id)
    if n is None:
        return _bad("exp_id", f"{exp_id!r} is not an exposure id (a whole number)")
    d = await run_in_threadpool(exposure_detail, request.app.state.cfg, request.app.state.engine, n)
    if d is None:
        return JSONResponse({"detail": f"no exposure {n}"}, status_code=404)
    return JSONResponse(d | {"replication": request.app.state.cfg.transfer.replication})


@router.get("/exposures/{exp_id}", response_class=HTMLResponse)
async def exposure_page(request: Request, exp_id: str) -> Response:
    n = _exp_id(exp_id)
    d, error, status = None, None, 200
    if n is None:
        error, status = f"exp_id: {exp_id!r} is not an exposure id (a whole number)", 422
    else:
        d = await run_in_threadpool(exposure_detail, request.app.state.cfg, request.app.state.engine, n)
        if d is None:
            error, status = f"No exposure {n}: it was never requested, or the id is mistyped.", 404
    ctx = _page_ctx(request) | {"e": d, "error": error, "replication": request.app.state.cfg.transfer.replication}
    return request.app.state.templates.TemplateResponse(request, "exposure.html", ctx, status_code=status)
