"""The Queue page (like the seed's Queue Status Monitor), its JSON twin, and the recipe API.

Reading is open; submitting, cancelling, moving up, aborting, pausing and changing the mode
need an operator (session, Basic or Bearer), as the process actions do, and each is recorded
as an event naming who. The page shows those controls to operators only.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response

from gozen.db.events import Event, recent_events
from gozen.db.states import QueueMode
from gozen.queue import store
from gozen.queue.recipe import RecipeError, load_recipe_text, recipe_schema
from gozen.queue.view import queue_view
from gozen.web.auth import Identity
from gozen.web.security import current_identity, require_operator

router = APIRouter()
Operator = Annotated[Identity, Depends(require_operator)]
MAX_ERRORS_SHOWN = 20
MAX_ERROR_CHARS = 300
ACTIONS_SHOWN = 8  # the latest queue actions on the page
ACTIONS_SCANNED = 50  # the newest queue events searched for actions naming someone


def _fields(request: Request) -> dict[str, tuple[float, float]]:
    return request.app.state.cfg.queue.positions()


@router.get("/api/queue")
async def queue_json(request: Request) -> dict[str, Any]:
    return await run_in_threadpool(_view, request)


def _cache(request: Request) -> store.CandidateCache:
    state = request.app.state
    if not hasattr(state, "queue_cache"):
        state.queue_cache = store.CandidateCache()
    return state.queue_cache  # type: ignore[no-any-return]


def _view(request: Request) -> dict[str, Any]:
    state = request.app.state
    return queue_view(state.cfg, state.engine, cache=_cache(request))


@router.get("/api/recipes/schema")
async def schema() -> dict[str, Any]:
    return recipe_schema()


@router.post("/api/recipes", status_code=201)
async def submit(request: Request, ident: Operator) -> Response:
    body = await request.body()  # at most web.max_body_bytes (BodyLimit)
    state = request.app.state

    def parse_and_store() -> store.RecipeRow:
        # In a worker thread: parsing a large recipe must not stop the event loop (and /api/health).
        recipe = load_recipe_text(body, "recipe", state.cfg.queue.max_steps)
        return store.submit(state.engine, recipe, ident.name, _fields(request))

    try:
        row = await run_in_threadpool(parse_and_store)
    except RecipeError as err:
        lines = [_clipped(line) for line in str(err).splitlines()]
        errors = lines[1:] or lines
        if len(errors) > MAX_ERRORS_SHOWN:
            errors = [*errors[:MAX_ERRORS_SHOWN], f"... and {len(errors) - MAX_ERRORS_SHOWN} more problems"]
        return JSONResponse(
            {"detail": lines[-1] if len(lines) == 1 else "invalid recipe", "errors": errors}, status_code=422
        )
    return JSONResponse({"uuid": row.uuid, "name": row.name, "state": row.state}, status_code=201)


def _clipped(line: str) -> str:
    # Validation messages quote the value they refuse ("got '...'"): never send a huge input back.
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 20] + f" ... ({len(line)} characters)"


@router.get("/api/recipes/{uuid}")
async def show(request: Request, uuid: str) -> dict[str, Any]:
    row = await run_in_threadpool(store.find, request.app.state.engine, uuid)
    if row is None:
        raise HTTPException(404, f"uuid: no recipe {uuid!r}")
    events = await run_in_threadpool(store.history, request.app.state.engine, row.uuid)
    return {
        "uuid": row.uuid,
        "name": row.name,
        "state": row.state,
        "priority": row.priority,
        "progress": row.progress,
        "message": row.message,
        "recipe": row.recipe.model_dump(mode="json"),
        "history": [{"time": e["time"].isoformat(), "kind": e["kind"], "message": e["message"]} for e in events],
    }


@router.post("/api/recipes/{uuid}/cancel")
async def cancel(request: Request, uuid: str, ident: Operator) -> dict[str, str]:
    try:
        what = await run_in_threadpool(store.cancel, request.app.state.engine, uuid, ident.name)
    except RecipeError as err:
        raise HTTPException(409 if "nothing to cancel" in str(err) else 404, str(err)) from None
    return {"uuid": uuid, "result": what}


@router.post("/api/recipes/{uuid}/move-up")
async def move_up(request: Request, uuid: str, ident: Operator) -> dict[str, str]:
    """One priority level up (low -> normal -> high): 409 when not queued or already high."""
    try:
        priority = await run_in_threadpool(store.move_up, request.app.state.engine, uuid, ident.name)
    except RecipeError as err:
        raise HTTPException(404 if str(err).startswith("uuid: no recipe") else 409, str(err)) from None
    return {"uuid": uuid, "priority": priority, "by": ident.name}


@router.post("/api/queue/mode/{mode}")
async def set_mode(request: Request, mode: QueueMode, ident: Operator) -> dict[str, str]:
    await run_in_threadpool(store.set_mode, request.app.state.engine, mode, by=ident.name)
    return {"mode": str(mode), "by": ident.name}


@router.post("/api/queue/{action}")
async def act(request: Request, action: Literal["pause", "resume", "abort"], ident: Operator) -> dict[str, str]:
    engine = request.app.state.engine
    if action == "abort":
        if not await run_in_threadpool(store.request_abort, engine, by=ident.name):
            raise HTTPException(409, "nothing is executing")
    else:
        await run_in_threadpool(store.set_paused, engine, action == "pause", by=ident.name)
    return {"action": action, "by": ident.name}


def queue_actions(events: list[Event]) -> list[Event]:
    """The latest actions on the queue by someone (events naming `by`), newest first."""
    return [e for e in events if e.source == "queue" and e.data and e.data.get("by")][:ACTIONS_SHOWN]


async def _page(request: Request) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        return _view(request) | {
            "actions": queue_actions(recent_events(request.app.state.engine, ACTIONS_SCANNED, source="queue"))
        }

    ident = current_identity(request)
    d = await run_in_threadpool(read)
    return d | {
        "identity": ident,
        "can_act": bool(ident and ident.may_act),
        "refresh_s": request.app.state.cfg.web.refresh_s,
    }


@router.get("/queue", response_class=HTMLResponse)
async def queue_page(request: Request) -> Response:
    return request.app.state.templates.TemplateResponse(request, "queue.html", await _page(request))


@router.get("/queue/fragment", response_class=HTMLResponse)
async def queue_fragment(request: Request) -> Response:
    """The status line and the tables alone, for the page's self-refresh."""
    return request.app.state.templates.TemplateResponse(request, "_queue.html", await _page(request))
