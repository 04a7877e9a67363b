"""`courier:<feed>`: read a feed, keep what is new, queue the messages about it.

httpx with a timeout and retries with backoff; a conditional GET (ETag / If-Modified-Since)
where the source allows. New alerts and their messages are written in one transaction, keyed
by (feed, key): a restarted courier, or a feed that repeats itself, never posts twice. A row
the parser cannot read is logged with the offending line and skipped. MAXI notices come from
NASA GCN Kafka instead when `couriers.gcn` is configured. An alert about a source already
followed up revises (or is folded into) that recipe rather than adding one: couriers/followup.py.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from gozen.config import FEEDS, Feed, FeedName, FollowUp
from gozen.couriers import followup, store
from gozen.couriers.feeds import PARSERS, Alert
from gozen.couriers.messages import messages_for
from gozen.db.types import utcnow
from gozen.fitstext import to_fits_text
from gozen.service import Context, Service

log = logging.getLogger(__name__)
ATTEMPTS = 3
NAME_MAX, OBJECT_MAX = 128, 68  # a recipe's name; OBJECT's value in a FITS card


@dataclass
class PollResult:
    status: str
    new: list[Alert]
    rejected: list[str]


def followup_body(a: Alert, rule: FollowUp) -> dict[str, Any]:
    """The recipe a rule makes of an alert. Its name and object go into FITS headers: a title from a
    feed is transliterated to printable ASCII ("Île" -> "Ile") and cut to the header's length."""
    title = " ".join(to_fits_text(a.title).split()) or to_fits_text(a.key) or a.feed
    now = utcnow()
    return {
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"gozen:followup:{a.feed}:{a.key}")),
        "name": f"Queue-Observer {a.feed.upper()} {title}"[:NAME_MAX],
        "description": f"follow-up of {a.feed} alert {a.title}",
        "project": f"followup-{a.feed}",
        "priority": rule.priority,
        "window": {"not_after": (now + timedelta(hours=rule.window_hours)).isoformat()},
        "steps": [
            {"slew": {"ra_deg": a.ra_deg % 360 if a.ra_deg is not None else None, "dec_deg": a.dec_deg}},
            {"expose": {"object": title[:OBJECT_MAX], "frames": rule.frames, "fps": 2.0, "count": rule.count}},
        ],
    }


def feed_named(name: str) -> FeedName:
    """One of gozen.config.FEEDS; ValueError naming the ones there are."""
    for feed in FEEDS:
        if feed == name:
            return feed
    raise ValueError(f"feed: {name!r} is not one of {', '.join(FEEDS)}")


class Courier(Service):
    """One feed, read every `couriers.<feed>.every_s` (or its GCN Kafka stream, for MAXI)."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.cfg, self.engine, self.feed = ctx.cfg, ctx.engine, feed_named(ctx.args["feed"])
        self.conf: Feed = ctx.cfg.feed_in_use(self.feed)
        self.period_s = self.conf.every_s
        self.feed_trouble = ctx.trouble("feed_failing", "feed_ok", self.conf.url or self.feed, severity="warning")
        self.consumer: Any = None  # the GCN Kafka consumer, when MAXI comes from there

    def setup(self) -> None:
        gcn = self.cfg.couriers.gcn
        if self.feed != "maxi" or gcn is None:
            return
        try:
            from gcn_kafka import Consumer  # type: ignore[import-not-found]
        except ImportError:
            raise SystemExit("couriers.gcn: the gcn-kafka client is not installed (pip install 'gozen[gcn]')") from None
        self.consumer = Consumer(client_id=gcn.client_id, client_secret=gcn.client_secret, domain=gcn.domain)
        self.consumer.subscribe(gcn.topics)

    def run_once(self) -> bool:
        if self.consumer is not None:
            self.consume_gcn()
            return True  # consume() waited for notices already
        self.poll_once()
        return False

    def teardown(self) -> None:
        if self.consumer is not None:
            self.consumer.close()

    def fetch(self) -> tuple[str | None, str, dict[str, str]]:
        """(body or None when not modified, status, validators for next time)."""
        assert self.conf.url is not None
        st = store.feed_state_of(self.engine, self.feed)
        headers = {"User-Agent": "gozen courier"}
        if st is not None and st.etag:
            headers["If-None-Match"] = st.etag
        if st is not None and st.last_modified:
            headers["If-Modified-Since"] = st.last_modified
        last: Exception | None = None
        for attempt in range(ATTEMPTS):
            try:
                r = httpx.get(self.conf.url, headers=headers, timeout=self.conf.timeout_s, follow_redirects=True)
                if r.status_code == 304:
                    return None, "not modified", {}
                if r.status_code >= 500:
                    raise httpx.HTTPStatusError(f"HTTP {r.status_code}", request=r.request, response=r)
                r.raise_for_status()
                keep = {
                    k: r.headers[h] for k, h in (("etag", "ETag"), ("last_modified", "Last-Modified")) if h in r.headers
                }
                return r.text, "ok", keep
            except httpx.HTTPError as err:
                last = err
                if self.ctx.sleep(min(30.0, 0.5 * 4**attempt)):
                    break
        raise ConnectionError(f"{self.conf.url}: {type(last).__name__}: {last}")

    def poll_once(self) -> PollResult:
        try:
            body, status, keep = self.fetch()
        except ConnectionError as err:
            store.remember_read(self.engine, self.feed, str(err)[:256], {})
            self.feed_trouble.failing(str(err))
            return PollResult(str(err), [], [])
        self.feed_trouble.ok("the feed answers again")
        if body is None:
            store.remember_read(self.engine, self.feed, status, None)
            return PollResult(status, [], [])
        parsed = PARSERS[self.feed](body)
        for why in parsed.rejected:
            log.warning("%s: %s", self.feed, why)
        new = self.keep(parsed.alerts)
        status_line = f"ok: {len(parsed.alerts)} read, {len(new)} new, {len(parsed.rejected)} skipped"
        store.remember_read(self.engine, self.feed, status_line, keep)
        return PollResult(status, new, parsed.rejected)

    def keep(self, found: list[Alert]) -> list[Alert]:
        """Keep the alerts not seen before and queue their messages, in one transaction; the new ones."""
        new = store.unseen(self.engine, self.feed, found)
        if not new or not store.keep_alerts(self.engine, self.cfg, new, self.compose(new)):
            return []  # nothing new, or another courier of the same feed kept them first
        self.follow_up(new)
        return new

    def compose(self, new: list[Alert]) -> list[store.Message]:
        """The messages about new alerts; an alert no message can be made of is logged and kept unsaid."""
        try:
            return [store.Message(self.feed, text, blocks) for text, blocks in messages_for(self.feed, new)]
        except (ValueError, KeyError, TypeError):
            pass
        out = []
        for a in new:
            try:
                out += [store.Message(self.feed, text, blocks) for text, blocks in messages_for(self.feed, [a])]
            except (ValueError, KeyError, TypeError) as err:
                log.warning("%s: alert %r not told (%s: %s): %r", self.feed, a.key, type(err).__name__, err, a.data)
        return out

    def follow_up(self, new: list[Alert]) -> None:
        """Turn alerts that match a rule into queue recipes, one per source (couriers/followup.py): a new
        recipe, or the earlier one of the same source revised, or the alert folded into it. Never twice:
        an alert already noted with a recipe is passed over, and a new recipe's uuid comes from its alert."""
        for rule in self.cfg.followups_in_use():
            if rule.feed != self.feed:
                continue
            for a in new:
                if a.ra_deg is None or a.dec_deg is None or a.dec_deg < rule.min_dec_deg:
                    continue
                if rule.classes is not None and a.data.get("Class") not in rule.classes:
                    continue
                if store.followup_of(self.engine, a) is None:
                    self.follow_up_one(a, rule)

    def follow_up_one(self, a: Alert, rule: FollowUp) -> None:
        from gozen.queue import store as queue
        from gozen.queue.recipe import RecipeError, parse_recipe

        d = followup.decide(self.engine, a, utcnow())
        if d.action == "revise":
            try:
                self.revise(a, rule, d)
                return
            except RecipeError as err:  # it started (or was cancelled) meanwhile
                log.info("%s: %s not revised: %s", self.feed, d.recipe.name if d.recipe else "?", err)
                row = queue.get(self.engine, d.recipe.uuid) if d.recipe else None
                if row is not None and d.earlier is not None:
                    d = followup.decide_for(row, d.earlier, utcnow(), d.error_deg)
        if d.action == "fold" and d.recipe is not None:
            store.note_followup(self.engine, a, d.recipe.uuid)
            log.info("%s: alert %s folded into %s: %s", self.feed, a.title, d.recipe.name, d.why)
            self.ctx.event("followup_folded", a.title, f"the {a.feed} alert {a.title} folded into {d.why}")
            return
        try:
            row = queue.submit(self.engine, parse_recipe(followup_body(a, rule)), f"courier:{self.feed}", {})
        except RecipeError as err:
            log.warning("%s: no follow-up for %s: %s", self.feed, a.title, err)
            return
        store.note_followup(self.engine, a, row.uuid)
        again = f" again ({d.why})" if d.earlier is not None else ""
        self.ctx.event(
            "followup_queued", a.title, f"{row.name} queued ({rule.priority}) from the {a.feed} alert{again}"
        )

    def revise(self, a: Alert, rule: FollowUp, d: followup.Decision) -> None:
        """The queued follow-up of the same source, renewed by this alert: same uuid and name, a new window."""
        from gozen.queue import store as queue
        from gozen.queue.recipe import parse_recipe

        assert d.recipe is not None and d.earlier is not None
        body = followup_body(a, rule) | {"uuid": d.recipe.uuid, "name": d.recipe.name}
        body["description"] = f"{d.recipe.recipe.description}; updated by {a.feed} alert {a.title}"[:2000]
        where = followup.better_position(a, d)
        if where is not None:
            body["steps"][0] = {"slew": {"ra_deg": where[0] % 360, "dec_deg": where[1]}}
        moved = " and its position" if where == (a.ra_deg, a.dec_deg) and a.feed == "maxi" else ""
        why = (
            f"{a.feed} alert {a.title} ({a.key}) is the same source as {d.earlier.title}: "
            f"window to {body['window']['not_after'][:16]}Z{moved}"
        )
        queue.revise(self.engine, parse_recipe(body), f"courier:{self.feed}", why, {})
        store.note_followup(self.engine, a, d.recipe.uuid)
        self.ctx.event("followup_revised", a.title, f"{d.recipe.name} revised: {why}")

    def consume_gcn(self) -> None:
        """MAXI notices as NASA GCN Kafka delivers them (gcn-kafka), each parsed and kept like a feed's.

        Not exercised by the tests: no Kafka broker runs on 127.0.0.1 here (see the README).
        """
        for message in self.consumer.consume(timeout=5):
            if message.error():
                log.warning("gcn: %s", message.error())
                continue
            parsed = PARSERS["maxi"](message.value().decode("utf-8", errors="replace"))
            for why in parsed.rejected:
                log.warning("maxi: %s", why)
            self.keep(parsed.alerts)
