"""`GET /metrics`: gozen's Prometheus metrics (gozen/metrics.py), public or for any user with a token.

With `web.metrics_public` false, the scraper sends a viewer's (or operator's) API token as
`Authorization: Bearer ...` (Basic and a login session work too); anyone else gets 401. With the
database away the answer is still 200, with `gozen_database_up 0` and nothing else from it, so
that Prometheus tells "gozen's database is down" apart from "the web app is down" (its `up`).
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from gozen.metrics import GozenCollector
from gozen.web.security import current_identity

router = APIRouter()


def registry(request: Request) -> CollectorRegistry:
    """The app's registry, made at its first scrape (the collector keeps sums between scrapes)."""
    state = request.app.state
    if getattr(state, "metrics_registry", None) is None:
        reg = CollectorRegistry(auto_describe=False)
        reg.register(GozenCollector(state.cfg, state.engine))
        state.metrics_registry = reg
    return state.metrics_registry  # type: ignore[no-any-return]


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    if not request.app.state.cfg.web.metrics_public and current_identity(request) is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="/metrics needs an API token (Authorization: Bearer TOKEN): web.metrics_public is false",
            headers={"WWW-Authenticate": 'Bearer realm="gozen"'},
        )
    body = await run_in_threadpool(generate_latest, registry(request))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
