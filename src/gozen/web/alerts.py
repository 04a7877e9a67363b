"""The Alerts page: recent alerts per feed, what was posted where and when, the follow-ups made;
with the simulated observatory (couriers.simulator), which feeds are simulated and a link to the
Slack stand-in's page of the messages it received."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from gozen.config import FEEDS
from gozen.couriers import store
from gozen.web.security import current_identity

router = APIRouter()
GW_FEED = "gw"  # gozen.couriers.gw.FEED (not imported here: it brings astropy's sky along)


def _alerts(request: Request, limit: int = 30) -> dict[str, Any]:
    engine, cfg = request.app.state.engine, request.app.state.cfg
    sim = cfg.sim_feeds_url()
    states = store.feed_states(engine)
    feeds: dict[str, dict[str, Any]] = {}
    for f in FEEDS:
        url = cfg.feed_in_use(f).url
        simulated = sim is not None and url is not None and url.startswith(f"{sim}/")
        feeds[f] = _feed(engine, states, f, url, simulated, limit)
    # GW alerts come over GCN Kafka (courier:gw): shown when it runs or once any were kept.
    gw_runs = cfg.couriers.gcn is not None and cfg.couriers.gw.enabled
    gw = _feed(
        engine, states, GW_FEED, "GCN Kafka: " + ", ".join(cfg.couriers.gw.topics) if gw_runs else None, False, limit
    )
    if gw_runs or gw["alerts"]:
        feeds[GW_FEED] = gw
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
        for m in store.recent_messages(engine, 100)
    ]
    return {
        # sim:feeds (couriers.simulator): its feeds and its Slack stand-in, whose page shows what was "posted"
        "simulator": None if sim is None else {"url": sim, "slack_url": f"{sim}/sim/slack"},
        "feeds": feeds,
        "posts": posts,
        "notifiers": [{"name": n.name, "kind": n.kind, "kinds": n.kinds} for n in cfg.notifiers_in_use()],
    }


def _feed(
    engine: Any, states: dict[str, store.FeedState], feed: str, url: str | None, simulated: bool, limit: int
) -> dict[str, Any]:
    """One feed: where it is read, its last read, its newest alerts."""
    st = states.get(feed)
    seen = [
        {
            "title": a.title,
            "event_time": a.event_time.isoformat() if a.event_time else None,
            "ra_deg": a.ra_deg,
            "dec_deg": a.dec_deg,
            "seen_at": a.seen_at.isoformat(),
            "followup_uuid": a.followup_uuid,
            "data": a.data,
        }
        for a in store.recent_alerts(engine, feed, limit)
    ]
    read = {"checked_at": st.checked_at.isoformat(), "status": st.status} if st else {}
    return {"url": url, "simulated": simulated, **read, "alerts": seen}


@router.get("/api/alerts")
async def alerts_json(request: Request) -> dict[str, Any]:
    return await run_in_threadpool(_alerts, request)


@router.get("/alerts", response_class=HTMLResponse)
async def alerts_page(request: Request) -> Response:
    d = await run_in_threadpool(_alerts, request)
    ctx = d | {"identity": current_identity(request), "refresh_s": max(30.0, request.app.state.cfg.web.refresh_s)}
    return request.app.state.templates.TemplateResponse(request, "alerts.html", ctx)
