"""Quick-look pictures: an exposure's focal-plane mosaic and each chip's binned first frame, as PNG.

Viewable by whoever may view pages (no login, as the pages); 404 with a JSON reason when there is none."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from gozen.daq.quicklook import chip_png, mosaic_png

router = APIRouter()
ExpId = Annotated[int, Path(ge=1, le=99_999_999, description="Exposure id (EXP_ID)")]
DetId = Annotated[int, Path(ge=0, le=999, description="Detector id (DET-ID), e.g. 111")]
MOSAIC_MAX_AGE_S = 10  # more chips may still arrive
CHIP_MAX_AGE_S = 300


def _png(data: bytes, max_age_s: int) -> Response:
    return Response(data, media_type="image/png", headers={"Cache-Control": f"public, max-age={max_age_s}"})


def _none(what: str) -> JSONResponse:
    return JSONResponse({"detail": f"no quick look of {what} (not made yet, skipped, or dropped)"}, status_code=404)


@router.get("/exposures/{exp_id}/mosaic.png", response_class=Response, responses={200: {"content": {"image/png": {}}}})
async def exposure_mosaic(request: Request, exp_id: ExpId) -> Response:
    """The focal-plane mosaic of an exposure's quick looks: chips in their places on the sky, labelled."""
    state = request.app.state
    png = await run_in_threadpool(mosaic_png, state.cfg, state.engine, exp_id)
    return _png(png, MOSAIC_MAX_AGE_S) if png else _none(f"exposure {exp_id}")


@router.get(
    "/exposures/{exp_id}/chips/{det_id}.png", response_class=Response, responses={200: {"content": {"image/png": {}}}}
)
async def chip_picture(request: Request, exp_id: ExpId, det_id: DetId) -> Response:
    """One chip's binned first frame (8-bit grey, zscale), north up."""
    png = await run_in_threadpool(chip_png, request.app.state.engine, exp_id, det_id)
    return _png(png, CHIP_MAX_AGE_S) if png else _none(f"chip {det_id} of exposure {exp_id}")
