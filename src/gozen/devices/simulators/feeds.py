"""`sim:feeds`: the CNEOS, Gaia, MAXI and MPEC feeds played locally with new items over time, and a Slack stand-in.

One HTTP server (FastAPI under uvicorn) on the couriers host's address and `couriers.simulator.port`:

- `GET /feeds/cneos` JPL's close-approach API (JSON; `fullname`, `dist-min`/`dist-max`, `date-min`/
  `date-max`, `h-min`/`h-max`, `sort`, `limit` as the API reads them), `/feeds/gaia` the Gaia alerts CSV,
  `/feeds/maxi` GCN classic-text MAXI notices, `/feeds/mpec` the MPC's RSS feed; each with an ETag and a
  Last-Modified, and 304 for a matching If-None-Match (or If-Modified-Since), as the real servers answer.
- At first start each feed has a few past items (the MAXI one far south, so no follow-up rule takes it).
  Each run, a MAXI notice appears `first_maxi_after_s` after the start, and a new item in one feed every
  `new_item_every_s` (Gaia, CNEOS, MPEC, MAXI in turn). MAXI notices are placed high in Kiso's sky at the
  time they appear, so the follow-up recipe they become can run. What was played is kept in
  `data_dir/sim/feeds.json`: a restart goes on from there and replays nothing as new.
- The Slack stand-in (`gozen.devices.simulators.slack`): `/slack/webhook`, `/slack/api/...`, and what it
  received at `/sim/slack` (a page like a channel) and `/sim/slack.json`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from gozen.config import FEEDS, Config, FeedName
from gozen.devices.simulators import feed_items
from gozen.devices.simulators.feed_items import Item
from gozen.devices.simulators.slack import SlackStandIn, slack_router
from gozen.service import Context

log = logging.getLogger(__name__)
ROTATION: tuple[FeedName, ...] = ("gaia", "cneos", "mpec", "maxi")  # whose turn it is for a new item
BACKLOG: dict[FeedName, int] = {"cneos": 3, "gaia": 3, "mpec": 2, "maxi": 1}  # past items at first start
KEEP_ITEMS = 100  # per feed: older items leave the feed, as they do from the real ones
MAX_CATCH_UP = 12  # after a long while unread, at most this many items are made at once
CAD_DOC = "https://ssd-api.jpl.nasa.gov/doc/cad.html"
CAD_PARAMS = {
    "date-min", "date-max", "dist-min", "dist-max", "h-min", "h-max", "v-inf-min", "v-inf-max", "v-rel-min",
    "v-rel-max", "class", "pha", "nea", "comet", "nea-comet", "neo", "kind", "spk", "des", "body", "sort", "limit",
    "limit-from", "fullname", "total-only", "diameter",
}  # fmt: skip
CAD_SORTS = {"date", "dist", "dist-min", "v-inf", "v-rel", "h", "object"}
AU_KM, LD_KM = 149_597_870.7, 384_400.0


class FeedError(ValueError):
    """A query the feed cannot answer: which parameter, and why."""


class FeedPlayer:
    """The items of the four feeds so far, and when the next one appears; kept in `state_file`."""

    def __init__(self, cfg: Config, state_file: Path, clock: Callable[[], float] = time.time) -> None:
        self.cfg, self.state_file, self.clock = cfg, state_file, clock
        self.sim = cfg.couriers.simulator
        self.lock = threading.Lock()
        self.state = self.load()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def load(self) -> dict[str, Any]:
        """The saved items, or a new state with each feed's backlog of past items. Either way a new run
        starts now: its first MAXI notice comes first_maxi_after_s from now, and the time it was stopped
        is not made up for (no burst of items after a night off)."""
        now = self.now()
        state = self.saved()
        if state is None:
            state = {"created_at": now.isoformat(), "seq": {f: 0 for f in FEEDS}, "items": {f: [] for f in FEEDS}}
            for feed, n in BACKLOG.items():
                for k in range(n, 0, -1):
                    self._add(state, feed, now - timedelta(hours=5 * k + FEEDS.index(feed)), observable=False)
        state.update(
            run_at=now.isoformat(),
            next_at=(now + timedelta(seconds=self.sim.new_item_every_s)).isoformat(),
            first_maxi_done=False,
            turn=0,
        )
        self.save(state)
        return state

    def saved(self) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = json.loads(self.state_file.read_text())
            if set(state["items"]) == set(FEEDS) and set(state["seq"]) == set(FEEDS):
                return state
            log.warning("%s: not a sim:feeds state (feeds %s); starting anew", self.state_file, sorted(state["items"]))
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError) as err:
            log.warning("%s: unreadable (%s); starting anew", self.state_file, err)
        return None

    def save(self, state: dict[str, Any]) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_file)

    def _add(self, state: dict[str, Any], feed: FeedName, at: datetime, observable: bool = True) -> Item:
        seq = state["seq"][feed]
        item = feed_items.make_item(feed, seq, at, self.cfg.site, observable=observable)
        state["seq"][feed] = seq + 1
        state["items"][feed] = (state["items"][feed] + [item])[-KEEP_ITEMS:]
        log.info("%s: new item %s", feed, item.get("des") or item.get("Name") or item.get("trigger") or item["title"])
        return item

    def advance(self) -> None:
        """Add the items due by now: the first MAXI notice, then one item every new_item_every_s."""
        now, period = self.now(), timedelta(seconds=self.sim.new_item_every_s)
        st = self.state
        changed = False
        if not st["first_maxi_done"]:
            first_at = datetime.fromisoformat(st["run_at"]) + timedelta(seconds=self.sim.first_maxi_after_s)
            if now >= first_at:
                self._add(st, "maxi", first_at if now - first_at < period else now)
                st["first_maxi_done"] = changed = True
        next_at = datetime.fromisoformat(st["next_at"])
        if now - next_at > MAX_CATCH_UP * period:  # nobody read the feeds a long while: only the latest are made
            next_at = now - (MAX_CATCH_UP - 1) * period
        while next_at <= now:
            self._add(st, ROTATION[st["turn"] % len(ROTATION)], next_at)
            st["turn"] += 1
            next_at += period
            changed = True
        st["next_at"] = next_at.isoformat()
        if changed:
            self.save(st)

    def items(self, feed: FeedName) -> list[Item]:
        """The feed's items, oldest first, after adding those due."""
        with self.lock:
            self.advance()
            return list(self.state["items"][feed])


# -- the close-approach API's query ------------------------------------------


def cad_date(name: str, value: str, now: datetime) -> datetime:
    """`now`, `+N` / `-N` days from now, `YYYY-MM-DD` or `YYYY-MM-DDThh:mm:ss`, as the CAD API reads them."""
    if value == "now":
        return now
    if re.fullmatch(r"[+-]\d+", value):
        return now + timedelta(days=int(value))
    for fmt in ("%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            pass
    raise FeedError(f"{name}: {value!r} is not a date (now, +N, -N, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss)")


def cad_distance_au(name: str, value: str) -> float:
    """`0.05` (au) or `10LD` (lunar distances)."""
    m = re.fullmatch(r"([0-9.]+(?:[eE][-+]?\d+)?)(LD|au)?", value)
    try:
        if m is None:
            raise ValueError
        v = float(m.group(1))
    except ValueError:
        raise FeedError(f"{name}: {value!r} is not a distance (au, or a number followed by LD)") from None
    return v * LD_KM / AU_KM if m.group(2) == "LD" else v


def cad_number(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise FeedError(f"{name}: {value!r} is not a number") from None


def cad_select(items: list[Item], query: dict[str, str], now: datetime) -> list[Item]:
    """The close approaches a CAD API query asks for (the parameters gozen's couriers use are honoured;
    the others are accepted and ignored); FeedError for an unknown parameter or a bad value."""
    unknown = sorted(set(query) - CAD_PARAMS)
    if unknown:
        raise FeedError(f"one or more query parameter was not recognized: {', '.join(unknown)}")
    out = list(items)
    jd_of = lambda t: t.timestamp() / 86400 + feed_items.UNIX_JD  # noqa: E731
    if "date-min" in query:
        jd = jd_of(cad_date("date-min", query["date-min"], now))
        out = [i for i in out if float(i["jd"]) >= jd]
    if "date-max" in query:
        jd = jd_of(cad_date("date-max", query["date-max"], now))
        out = [i for i in out if float(i["jd"]) <= jd]
    if "dist-min" in query:
        au = cad_distance_au("dist-min", query["dist-min"])
        out = [i for i in out if float(i["dist"]) >= au]
    if "dist-max" in query:
        au = cad_distance_au("dist-max", query["dist-max"])
        out = [i for i in out if float(i["dist"]) <= au]
    for key, keep in (("h-min", lambda h, v: h >= v), ("h-max", lambda h, v: h <= v)):
        if key in query:
            v = cad_number(key, query[key])
            out = [i for i in out if keep(float(i["h"]), v)]
    sort = query.get("sort", "date")
    field = sort.lstrip("-")
    if field not in CAD_SORTS:
        raise FeedError(f"sort: {sort!r} is not one of {', '.join(sorted(CAD_SORTS))} (- in front: descending)")
    renamed = {"date": "jd", "object": "des", "dist-min": "dist_min", "v-inf": "v_inf", "v-rel": "v_rel"}
    key_of = renamed.get(field, field)
    out.sort(key=lambda i: i[key_of] if key_of == "des" else float(i[key_of]), reverse=sort.startswith("-"))
    if "limit" in query:
        n = cad_number("limit", query["limit"])
        if n < 1 or n != int(n):
            raise FeedError(f"limit: {query['limit']!r} is not a whole number > 0")
        out = out[: int(n)]
    return out


def cad_flag(name: str, value: str) -> bool:
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise FeedError(f"{name}: {value!r} is not true or false")


# -- the server --------------------------------------------------------------


def not_modified(request: Request, etag: str, last_modified: datetime | None) -> bool:
    """If-None-Match (an ETag or *) decides; without it, If-Modified-Since."""
    inm = request.headers.get("if-none-match")
    if inm is not None:
        tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
        return "*" in tags or etag in tags
    ims = request.headers.get("if-modified-since")
    if ims and last_modified is not None:
        try:
            return last_modified.replace(microsecond=0) <= parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
    return False


def conditional(request: Request, body: bytes, media_type: str, items: list[Item]) -> Response:
    """The document with its validators, or 304 when the client has it already."""
    etag = f'"{hashlib.sha1(body).hexdigest()[:24]}"'
    newest = max((datetime.fromisoformat(i["at"]) for i in items), default=None)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if newest is not None:
        headers["Last-Modified"] = format_datetime(newest.astimezone(UTC), usegmt=True)
    if not_modified(request, etag, newest):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


def create_app(cfg: Config, clock: Callable[[], float] = time.time, page_refresh_s: float = 10.0) -> FastAPI:
    """The server; `clock` is the time the feeds play by, `page_refresh_s` how often /sim/slack reloads."""
    sim_dir = cfg.under_data_dir(Path("sim"))
    player = FeedPlayer(cfg, sim_dir / "feeds.json", clock)
    slack = SlackStandIn(sim_dir, cfg.local_tz, clock)
    app = FastAPI(title="gozen sim:feeds", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.player, app.state.slack = player, slack
    app.include_router(slack_router(slack, page_refresh_s))

    @app.exception_handler(FeedError)
    async def feed_error(_request: Request, err: FeedError) -> JSONResponse:
        return JSONResponse({"message": str(err), "code": "400", "moreInfo": CAD_DOC}, status_code=400)

    @app.get("/feeds/cneos")
    def cneos(request: Request) -> Response:
        query = dict(request.query_params)
        fullname = cad_flag("fullname", query.get("fullname", "false"))
        items = player.items("cneos")
        chosen = cad_select(items, query, player.now())
        doc = feed_items.cneos_document(chosen, fullname)
        return conditional(request, json.dumps(doc).encode(), "application/json", items)

    @app.get("/feeds/gaia")
    def gaia(request: Request) -> Response:
        items = player.items("gaia")
        return conditional(request, feed_items.gaia_document(items).encode(), "text/csv; charset=utf-8", items)

    @app.get("/feeds/maxi")
    def maxi(request: Request) -> Response:
        items = player.items("maxi")
        return conditional(request, feed_items.maxi_document(items).encode(), "text/plain; charset=utf-8", items)

    @app.get("/feeds/mpec")
    def mpec(request: Request) -> Response:
        items = player.items("mpec")
        body = feed_items.mpec_document(items, str(request.url)).encode()
        return conditional(request, body, "application/rss+xml; charset=utf-8", items)

    @app.get("/")
    def index() -> dict[str, Any]:
        return {
            "feeds": [f"/feeds/{f}" for f in FEEDS],
            "slack": ["/slack/webhook", "/slack/api/", "/sim/slack", "/sim/slack.json"],
        }

    return app


def server_config(cfg: Config) -> uvicorn.Config:
    """How sim:feeds serves: on the couriers host's address and couriers.simulator.port."""
    host = cfg.sim_feeds_host()
    if host is None:
        raise SystemExit("sim:feeds: couriers.simulator is off, or no host has role couriers")
    return uvicorn.Config(
        create_app(cfg), host=host.address, port=cfg.couriers.simulator.port, log_level="warning", access_log=False
    )


def main(ctx: Context) -> None:
    """`sim:feeds`: serve until SIGTERM (uvicorn's own handler finishes the requests in hand)."""
    uvicorn.Server(server_config(ctx.cfg)).run()
