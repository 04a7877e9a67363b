"""One follow-up per source: a new alert about a source already followed up changes that recipe.

The same source:
- Gaia: the same name, or within SAME_STAR_ARCSEC of an earlier alert's position (Gaia names an
  alert anew each time a star brightens again; its positions agree to well under an arcsecond).
- MAXI: within the larger of the two alerts' error radii (EVENT_ERROR, 90 % containment;
  DEFAULT_ERROR_DEG when a notice gives none).
Only alerts followed up within LOOKBACK_DAYS count; the newest one that matches is the earlier.

What becomes of the earlier alert's recipe:
- queued: revised (same uuid): a new window end, the better position (MAXI: the smaller error
  circle), and in its history which alert revised it and why;
- executing: nothing; the alert is folded in (an event says so);
- finished (done, failed, aborted, cancelled, interrupted) more than REFOLLOW_AFTER_H ago, or
  expired unobserved: a new recipe; finished less long ago: folded in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine

from gozen.couriers import store
from gozen.couriers.feeds import Alert
from gozen.db.states import RecipeState
from gozen.queue.store import RecipeRow

SAME_STAR_ARCSEC = 2.0
DEFAULT_ERROR_DEG = 0.5
REFOLLOW_AFTER_H = 6.0
LOOKBACK_DAYS = 30


@dataclass(frozen=True)
class Decision:
    action: str  # "new", "revise" or "fold"
    why: str
    earlier: store.FollowedAlert | None = None
    recipe: RecipeRow | None = None
    error_deg: float = 0.0  # the smallest error radius among the alerts behind the recipe


def error_deg(feed: str, data: dict[str, object]) -> float:
    """An alert's error radius: MAXI's EVENT_ERROR (`0.20 [deg, radius, ...]`), Gaia's couple of arcseconds."""
    if feed != "maxi":
        return SAME_STAR_ARCSEC / 3600
    try:
        return float(str(data.get("error", "")).split()[0])
    except (IndexError, ValueError):
        return DEFAULT_ERROR_DEG


def separation_deg(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    d1, d2 = math.radians(dec1), math.radians(dec2)
    c = math.sin(d1) * math.sin(d2) + math.cos(d1) * math.cos(d2) * math.cos(math.radians(ra1 - ra2))
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def same_source(a: Alert, b: store.FollowedAlert) -> bool:
    if a.feed == "gaia" and a.title == b.title:
        return True
    if None in (a.ra_deg, a.dec_deg, b.ra_deg, b.dec_deg):
        return False
    radius = max(error_deg(a.feed, a.data), error_deg(a.feed, b.data))
    return separation_deg(a.ra_deg, a.dec_deg, b.ra_deg, b.dec_deg) <= radius  # type: ignore[arg-type]


def decide(engine: Engine, a: Alert, now: datetime) -> Decision:
    """What a new alert does to the follow-ups: a new recipe, a revision of the earlier one, or nothing."""
    from gozen.queue import store as queue

    followed = store.followed_up(engine, a.feed, now - timedelta(days=LOOKBACK_DAYS))
    earlier = next((b for b in followed if b.key != a.key and same_source(a, b)), None)
    if earlier is None:
        return Decision("new", "a source not followed up before")
    row = queue.get(engine, earlier.followup_uuid)
    if row is None:
        return Decision("new", f"the follow-up of {earlier.title} is gone", earlier)
    # the smallest error circle among the alerts behind this recipe: its position came from the best of them
    error = min(error_deg(a.feed, b.data) for b in followed if b.followup_uuid == row.uuid)
    return decide_for(row, earlier, now, error)


def decide_for(row: RecipeRow, earlier: store.FollowedAlert, now: datetime, error: float) -> Decision:
    if row.state == RecipeState.QUEUED:
        return Decision("revise", f"the same source as {earlier.title}, still queued", earlier, row, error)
    if row.state == RecipeState.EXECUTING:
        return Decision("fold", f"{row.name} is being observed now", earlier, row, error)
    if row.state == RecipeState.EXPIRED:
        return Decision("new", f"{row.name} expired unobserved", earlier, row, error)
    ago_h = (now - (row.finished_at or now)).total_seconds() / 3600
    if ago_h > REFOLLOW_AFTER_H:
        return Decision("new", f"{row.name} was {row.state} {ago_h:.0f} h ago", earlier, row, error)
    why = f"{row.name} was {row.state} {ago_h:.1f} h ago (< {REFOLLOW_AFTER_H:g} h)"
    return Decision("fold", why, earlier, row, error)


def better_position(a: Alert, d: Decision) -> tuple[float, float] | None:
    """Where the revised recipe points: the new alert's position if its error circle is the smallest yet."""
    assert d.recipe is not None
    if a.feed == "maxi" and error_deg(a.feed, a.data) < d.error_deg:
        return a.ra_deg, a.dec_deg  # type: ignore[return-value]
    if d.recipe.ra_deg is None or d.recipe.dec_deg is None:
        return None
    return d.recipe.ra_deg, d.recipe.dec_deg
