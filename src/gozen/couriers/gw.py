"""`courier:gw`: gravitational-wave alerts (IGWN/LVK notices over GCN Kafka) made into tiled follow-ups.

Every notice goes through `handle_gw_notice`, the Kafka consumer's and the tests' one path:
validated against the `igwn-gwalert-schema` package's JSON schema (a notice that does not
validate is refused naming the field, and the courier goes on), skipped when it is a mock
superevent (unless `couriers.gw.mock`) or its false-alarm rate is above `max_far_hz`, its sky
map tiled (couriers/tiling.py), then one recipe per superevent: queued on the first notice,
revised by an INITIAL or UPDATE while still queued, cancelled by a RETRACTION. Each notice is
kept once (a redelivered one changes nothing) with one message about it in the outbox.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import uuid as uuidlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

from gozen.config import GwFollowUp
from gozen.couriers import store
from gozen.couriers.feeds import Alert
from gozen.couriers.messages import messages_for
from gozen.couriers.skymap import SkyMapError, flatten, read_multiorder
from gozen.couriers.tiling import MAX_SUN_ALT_DEG, MIN_ALT_DEG, Tiling, tile
from gozen.db.engine import is_unavailable
from gozen.db.states import RecipeState
from gozen.db.types import utcnow
from gozen.fitstext import to_fits_text
from gozen.service import Context, Service

log = logging.getLogger(__name__)
FEED = "gw"
BY = "courier:gw"
SCHEMA_FILE = "igwn.alerts.Alert.schema.json"
COUNTED_LEVEL = 0.99  # tiles count the probability of the map's densest 99 %, not only the credible region's


class NoticeError(ValueError):
    """A notice refused: the message names the field and why."""


@dataclass(frozen=True)
class GwNotice:
    superevent_id: str
    alert_type: str  # EARLYWARNING, PRELIMINARY, INITIAL, UPDATE or RETRACTION
    time_created: datetime
    event: dict[str, Any] | None
    urls: dict[str, str]

    @property
    def key(self) -> str:
        """Its identity among the alerts kept: a redelivered notice has the same."""
        return f"{self.superevent_id}:{self.alert_type}:{self.time_created.isoformat()}"[:128]

    @property
    def far_hz(self) -> float | None:
        return None if self.event is None else float(self.event["far"])

    @property
    def link(self) -> str:
        return self.urls.get("gracedb") or next(iter(self.urls.values()), "")


@dataclass(frozen=True)
class GwOutcome:
    action: str  # queued, revised, cancelled, abort requested, not followed, not applied, skipped, refused, repeat
    reason: str
    uuid: str | None = None
    tiling: Tiling | None = None


@cache
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads((resources.files("igwn_gwalert_schema") / SCHEMA_FILE).read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)  # type: ignore[no-any-return]


def refusal(err: jsonschema.ValidationError) -> str:
    """`field.path: why` of a schema error (a missing property is named in the path)."""
    path = [str(p) for p in err.absolute_path]
    if err.validator == "required" and isinstance(err.instance, dict):
        path += [k for k in err.validator_value if k not in err.instance][:1]
    return f"{'.'.join(path) or '(notice)'}: {err.message}"


def read_notice(payload: bytes) -> GwNotice:
    """A notice from a Kafka message's value; NoticeError naming the field when it is not one."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as err:
        raise NoticeError(f"(notice): not JSON: {err}") from None
    wrong = best_match(validator().iter_errors(doc))
    if wrong is not None:
        raise NoticeError(refusal(wrong))
    try:
        created = datetime.fromisoformat(doc["time_created"].replace("Z", "+00:00"))
    except ValueError:
        raise NoticeError(f"time_created: not an ISO 8601 time: {doc['time_created']!r}") from None
    if created.tzinfo is None:
        raise NoticeError(f"time_created: needs a time zone: {doc['time_created']!r}")
    return GwNotice(doc["superevent_id"], doc["alert_type"], created, doc["event"], dict(doc["urls"]))


def skymap_bytes(n: GwNotice) -> bytes | None:
    text = None if n.event is None else n.event.get("skymap")
    if text is None:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise NoticeError(f"event.skymap: not base64: {err}") from None


def followup_uuid(superevent_id: str) -> str:
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"gozen:followup:gw:{superevent_id}"))


def gw_body(n: GwNotice, cfg: GwFollowUp, tiling: Tiling, now: datetime) -> dict[str, Any]:
    """The follow-up recipe: a slew and an exposure at each tile, most probable first."""
    sid = to_fits_text(n.superevent_id)
    steps: list[dict[str, Any]] = []
    for i, t in enumerate(tiling.tiles, start=1):
        steps.append({"slew": {"ra_deg": t.ra_deg % 360, "dec_deg": t.dec_deg}})
        steps.append(
            {"expose": {"object": f"{sid[:60]} T{i:02d}", "frames": cfg.frames, "fps": 2.0, "count": cfg.count}}
        )
    return {
        "uuid": followup_uuid(n.superevent_id),
        "name": f"Queue-Observer GW {sid}"[:128],
        "description": f"follow-up of {n.superevent_id} ({n.alert_type} notice of {n.time_created:%Y-%m-%d %H:%M:%S}): "
        f"{len(tiling.tiles)} tiles holding {tiling.covered:.0%} of the sky map",
        "project": "followup-gw",
        "priority": cfg.priority,
        "window": {"not_after": (now + timedelta(hours=cfg.window_hours)).isoformat()},
        "constraints": {"min_alt_deg": MIN_ALT_DEG, "max_sun_alt_deg": MAX_SUN_ALT_DEG},
        "steps": steps,
    }


def handle_gw_notice(ctx: Context, payload: bytes, now: datetime | None = None) -> GwOutcome:
    """One notice, whatever it holds: the Kafka consumer hands every message's value here."""
    cfg = ctx.cfg.couriers.gw
    try:
        n = read_notice(payload)
        outcome = _skipped(n, cfg)
        if outcome is not None:
            log.info("gw: %s %s skipped: %s", n.superevent_id, n.alert_type, outcome.reason)
            return outcome
        if not store.unseen(ctx.engine, FEED, [_alert(n, {})]):
            return GwOutcome("repeat", f"the {n.alert_type} notice of {n.superevent_id} was handled already")
        area, tiling = _tiling(n, ctx, now or utcnow())
    except NoticeError as err:
        log.warning("gw: notice refused: %s", err)
        ctx.event("gw_notice_refused", FEED, f"GW notice refused: {err}", severity="warning")
        return GwOutcome("refused", str(err))
    outcome = _act(ctx, n, tiling, now or utcnow())
    data = _summary(n, area, outcome)
    top = tiling.tiles[0] if tiling is not None and tiling.tiles else None
    a = _alert(n, data, top.ra_deg if top else None, top.dec_deg if top else None)
    messages = [store.Message(FEED, text, blocks) for text, blocks in messages_for(FEED, [a])]
    if store.keep_alerts(ctx.engine, ctx.cfg, [a], messages) and outcome.uuid is not None:
        store.note_followup(ctx.engine, a, outcome.uuid)
    return outcome


def _skipped(n: GwNotice, cfg: GwFollowUp) -> GwOutcome | None:
    if n.superevent_id.startswith("M") and not cfg.mock:
        return GwOutcome("skipped", "a mock superevent (couriers.gw.mock is false)")
    far = n.far_hz
    if n.alert_type != "RETRACTION" and far is not None and far > cfg.max_far_hz:
        return GwOutcome("skipped", f"false-alarm rate {far:.3g} Hz above couriers.gw.max_far_hz {cfg.max_far_hz:g}")
    return None


def _tiling(n: GwNotice, ctx: Context, now: datetime) -> tuple[float | None, Tiling | None]:
    """The credible region's area and its tiles; (None, None) for a retraction or a notice without a map."""
    raw = skymap_bytes(n) if n.alert_type != "RETRACTION" else None
    if raw is None:
        return None, None
    cfg = ctx.cfg.couriers.gw
    try:
        sky = read_multiorder(raw)
    except SkyMapError as err:
        raise NoticeError(f"event.skymap: not a multi-order sky map: {err}") from None
    flat = flatten(sky, sky.credible(max(COUNTED_LEVEL, cfg.credible_level)))
    region = flat.credible(cfg.credible_level)
    tiles = tile(flat, region, ctx.cfg.site, now, cfg.window_hours, cfg.credible_level, cfg.max_tiles)
    return sky.credible_area_deg2(cfg.credible_level), tiles


def _act(ctx: Context, n: GwNotice, tiling: Tiling | None, now: datetime) -> GwOutcome:
    """Queue, revise or cancel the superevent's follow-up as the notice says."""
    from gozen.queue import store as queue
    from gozen.queue.recipe import RecipeError, parse_recipe

    uuid, sid = followup_uuid(n.superevent_id), n.superevent_id
    existing = queue.get(ctx.engine, uuid)
    if n.alert_type == "RETRACTION":
        return _cancel(ctx, uuid, sid, "retracted") if existing else GwOutcome("not followed", "retracted")
    if tiling is None or not tiling.tiles:
        why = "the notice has no sky map" if tiling is None else tiling.reason
        if existing is not None and existing.state == RecipeState.QUEUED:
            return _cancel(ctx, uuid, sid, f"the {n.alert_type} sky map has no tile to observe: {why}")
        ctx.event("gw_not_followed", sid, f"{sid} {n.alert_type}: not followed up: {why}")
        return GwOutcome("not followed", why, tiling=tiling)
    try:
        recipe = parse_recipe(gw_body(n, ctx.cfg.couriers.gw, tiling, now), f"{sid} follow-up")
    except RecipeError as err:
        ctx.event("gw_not_followed", sid, f"{sid} {n.alert_type}: not followed up: {err}", severity="warning")
        return GwOutcome("not followed", str(err), tiling=tiling)
    what = f"{len(tiling.tiles)} tiles holding {tiling.covered:.0%} of the map"
    try:
        if existing is None:
            row = queue.submit(ctx.engine, recipe, BY, {})
            ctx.event("followup_queued", sid, f"{row.name} queued ({recipe.priority}): {what}")
            return GwOutcome("queued", what, uuid, tiling)
        if existing.state == RecipeState.QUEUED:
            queue.revise(ctx.engine, recipe, BY, f"{n.alert_type} notice of {n.time_created:%H:%M:%S}: {what}", {})
            ctx.event("followup_revised", sid, f"{existing.name} revised by the {n.alert_type} notice: {what}")
            return GwOutcome("revised", what, uuid, tiling)
    except RecipeError as err:  # taken by the queue (or queued by another courier) meanwhile
        log.warning("gw: %s: the follow-up could not be queued or revised: %s", sid, err)
        existing = queue.get(ctx.engine, uuid)
    state = existing.state if existing is not None else "gone"
    why = f"the follow-up is {state}: the {n.alert_type} notice is folded in, its tiles not applied"
    ctx.event("followup_folded", sid, f"{sid}: {why}")
    return GwOutcome("not applied", why, uuid, tiling)


def _cancel(ctx: Context, uuid: str, sid: str, why: str) -> GwOutcome:
    from gozen.queue import store as queue
    from gozen.queue.recipe import RecipeError

    try:
        done = queue.cancel(ctx.engine, uuid, f"{BY} ({why})")
    except RecipeError as err:
        return GwOutcome("not applied", f"{why}; {err}", uuid)
    ctx.event("followup_cancelled", sid, f"{sid} follow-up {done}: {why}", severity="warning")
    return GwOutcome("cancelled" if done == "cancelled" else done, why, uuid)


def _alert(n: GwNotice, data: dict[str, Any], ra: float | None = None, dec: float | None = None) -> Alert:
    when = None
    if n.event is not None:
        try:
            when = datetime.fromisoformat(str(n.event["time"]).replace("Z", "+00:00"))
        except ValueError:
            log.warning(
                "gw: %s: event.time %r is not an ISO 8601 time: kept without it", n.superevent_id, n.event["time"]
            )
    return Alert(FEED, n.key, n.superevent_id, when if when and when.tzinfo else None, data, ra, dec)


def _summary(n: GwNotice, area: float | None, outcome: GwOutcome) -> dict[str, Any]:
    """What is kept of a notice (its sky map is not) and what its message says."""
    ev = n.event or {}
    t = outcome.tiling
    return {
        "alert_type": n.alert_type,
        "time_created": n.time_created.isoformat(),
        "far_hz": n.far_hz,
        "significant": ev.get("significant"),
        "pipeline": ev.get("pipeline"),
        "instruments": ev.get("instruments"),
        "area_deg2": area,
        "tiles": len(t.tiles) if t is not None else 0,
        "covered": t.covered if t is not None else None,
        "action": outcome.action,
        "reason": outcome.reason,
        "link": n.link,
    }


class GwCourier(Service):
    """GW notices from GCN Kafka (`couriers.gcn` credentials, `couriers.gw.topics`)."""

    period_s = 0.0  # consume() waits for notices

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.consumer: Any = None

    def setup(self) -> None:
        gcn = self.ctx.cfg.couriers.gcn
        if gcn is None:
            raise SystemExit("couriers.gcn: GW alerts come over GCN Kafka: give its client_id and client_secret")
        try:
            from gcn_kafka import Consumer
        except ImportError:
            raise SystemExit("couriers.gcn: the gcn-kafka client is not installed (pip install 'gozen[gcn]')") from None
        self.consumer = Consumer(client_id=gcn.client_id, client_secret=gcn.client_secret, domain=gcn.domain)
        self.consumer.subscribe(self.ctx.cfg.couriers.gw.topics)

    def run_once(self) -> bool:
        """Not exercised by the tests (no Kafka broker runs on 127.0.0.1): they call handle_gw_notice."""
        for message in self.consumer.consume(timeout=5):
            if message.error():
                log.warning("gw: %s", message.error())
                continue
            try:
                handle_gw_notice(self.ctx, message.value())
            except Exception as err:  # one notice that breaks something unforeseen must not lose the rest
                if is_unavailable(err):
                    raise  # the database is away: run_service waits it out
                log.exception("gw: a notice could not be handled")
                self.ctx.event("gw_notice_failed", FEED, f"GW notice not handled: {type(err).__name__}: {err}", "error")
        return True

    def teardown(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
