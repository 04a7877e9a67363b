"""The Alerts page: recent alerts per feed, what was posted where and when, the follow-ups made."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from gozen.db.tables import alerts, feed_state, outbox
from gozen.web.security import current_identity

router = APIRouter()
FEEDS = ("cneos", "gaia", "maxi", "mpec")


def _alerts(request: Request, limit: int = 30) -> dict[str, Any]:
    engine = request.app.state.engine
    with engine.connect() as conn:
        per_feed = {
            f: [
                {
                    "title": a.title,
                    "event_time": a.event_time.isoformat() if a.event_time else None,
                    "ra_deg": a.ra_deg,
                    "dec_deg": a.dec_deg,
                    "seen_at": a.seen_at.isoformat(),
                    "followup_uuid": a.followup_uuid,
                    "data": a.data,
                }
                for a in conn.execute(
                    select(alerts).where(alerts.c.feed == f).order_by(alerts.c.id.desc()).limit(limit)
                )
            ]
            for f in FEEDS
        }
        states = {
            s.feed: {"checked_at": s.checked_at.isoformat(), "status": s.status}
            for s in conn.execute(select(feed_state))
            if s.feed in FEEDS
        }
        posts = [
            {
                "id": m.id,
                "kind": m.kind,
                "notifier": m.notifier,
                "state": m.state,
                "attempts": m.attempts,
                "created_at": m.created_at.isoformat(),
                "sent_at": m.sent_at.isoformat() if m.sent_at else None,
                "last_error": m.last_error,
                "text": m.text,
            }
            for m in conn.execute(select(outbox).order_by(outbox.c.id.desc()).limit(100))
        ]
    cfg = request.app.state.cfg
    return {
        "feeds": {f: {"url": getattr(cfg.couriers, f).url, **states.get(f, {}), "alerts": per_feed[f]} for f in FEEDS},
        "posts": posts,
        "notifiers": [{"name": n.name, "kind": n.kind, "kinds": n.kinds} for n in cfg.notifiers],
    }


@router.get("/api/alerts")
async def alerts_json(request: Request) -> dict[str, Any]:
    return await run_in_threadpool(_alerts, request)


@router.get("/alerts", response_class=HTMLResponse)
async def alerts_page(request: Request) -> Response:
    d = await run_in_threadpool(_alerts, request)
    ctx = d | {"identity": current_identity(request), "refresh_s": max(30.0, request.app.state.cfg.web.refresh_s)}
    return request.app.state.templates.TemplateResponse(request, "alerts.html", ctx)
