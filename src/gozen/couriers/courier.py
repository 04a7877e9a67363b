"""`courier:cneos|gaia|mpec`: read a feed, keep what is new, queue the messages about it.

httpx with a timeout and retries with backoff; a conditional GET (ETag / If-Modified-Since)
where the source allows. New alerts and their messages are written in one transaction, keyed
by (feed, key): a restarted courier, or a feed that repeats itself, never posts twice. A row
the parser cannot read is logged with the offending line and skipped.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from gozen.config import Config, Feed, FollowUp
from gozen.couriers.feeds import PARSERS, Alert
from gozen.couriers.messages import messages_for
from gozen.couriers.outbox import enqueue
from gozen.db.events import record_event
from gozen.db.tables import alerts, feed_state
from gozen.db.types import utcnow
from gozen.fitstext import to_fits_text

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


class Courier:
    def __init__(self, cfg: Config, engine: Engine, host: str, feed: str) -> None:
        self.cfg, self.engine, self.host, self.feed = cfg, engine, host, feed
        self.conf: Feed = getattr(cfg.couriers, feed)
        self.failing = False

    def fetch(self) -> tuple[str | None, str, dict[str, str]]:
        """(body or None when not modified, status, validators for next time)."""
        assert self.conf.url is not None
        with self.engine.connect() as conn:
            st = conn.execute(select(feed_state).where(feed_state.c.feed == self.feed)).first()
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
                time.sleep(min(30.0, 0.5 * 4**attempt))
        raise ConnectionError(f"{self.conf.url}: {type(last).__name__}: {last}")

    def poll_once(self) -> PollResult:
        try:
            body, status, keep = self.fetch()
        except ConnectionError as err:
            self.remember(str(err)[:256], {})
            self.say(False, str(err))
            return PollResult(str(err), [], [])
        self.say(True, "")
        if body is None:
            self.remember(status, {}, keep_validators=True)
            return PollResult(status, [], [])
        parsed = PARSERS[self.feed](body)
        for why in parsed.rejected:
            log.warning("%s: %s", self.feed, why)
        new = self.store(parsed.alerts)
        self.remember(f"ok: {len(parsed.alerts)} read, {len(new)} new, {len(parsed.rejected)} skipped", keep)
        return PollResult(status, new, parsed.rejected)

    def store(self, found: list[Alert]) -> list[Alert]:
        """Record the alerts not seen before and queue their messages, in one transaction."""
        with self.engine.connect() as conn:
            known = set(
                conn.execute(
                    select(alerts.c.key).where(alerts.c.feed == self.feed, alerts.c.key.in_([a.key for a in found]))
                ).scalars()
            )
        new = [a for a in found if a.key not in known]
        if not new:
            return []
        messages = self.compose(new)
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(alerts),
                    [
                        {
                            "feed": a.feed,
                            "key": a.key,
                            "title": a.title,
                            "event_time": a.event_time,
                            "ra_deg": a.ra_deg,
                            "dec_deg": a.dec_deg,
                            "data": a.data,
                            "seen_at": now,
                        }
                        for a in new
                    ],
                )
                for text, blocks in messages:
                    enqueue(conn, self.cfg, self.feed, text, blocks)
        except IntegrityError:
            return []  # another courier of the same feed stored them first
        self.follow_up(new)
        return new

    def compose(self, new: list[Alert]) -> list[tuple[str, list[dict[str, Any]]]]:
        """The messages about new alerts; an alert no message can be made of is logged and kept unsaid."""
        try:
            return messages_for(self.feed, new)
        except (ValueError, KeyError, TypeError):
            pass
        out = []
        for a in new:
            try:
                out += messages_for(self.feed, [a])
            except (ValueError, KeyError, TypeError) as err:
                log.warning("%s: alert %r not told (%s: %s): %r", self.feed, a.key, type(err).__name__, err, a.data)
        return out

    def follow_up(self, new: list[Alert]) -> None:
        """Turn alerts that match a rule into queue recipes: one each, whatever happens (its uuid comes
        from the alert, so a second try is refused as a duplicate)."""
        from gozen.queue import store
        from gozen.queue.recipe import RecipeError, parse_recipe

        for rule in self.cfg.couriers.followups:
            if rule.feed != self.feed:
                continue
            for a in new:
                if a.ra_deg is None or a.dec_deg is None or a.dec_deg < rule.min_dec_deg:
                    continue
                if rule.classes is not None and a.data.get("Class") not in rule.classes:
                    continue
                body = followup_body(a, rule)
                try:
                    row = store.submit(self.engine, parse_recipe(body), f"courier:{self.feed}", {})
                except RecipeError as err:
                    log.warning("%s: no follow-up for %s: %s", self.feed, a.title, err)
                    continue
                with self.engine.begin() as conn:
                    conn.execute(
                        update(alerts)
                        .where(alerts.c.feed == a.feed, alerts.c.key == a.key)
                        .values(followup_uuid=row.uuid)
                    )
                record_event(
                    self.engine,
                    host=self.host,
                    source=f"courier:{self.feed}",
                    kind="followup_queued",
                    subject=a.title,
                    message=f"{row.name} queued ({rule.priority}) from the {a.feed} alert",
                )

    def remember(self, status: str, keep: dict[str, str], keep_validators: bool = False) -> None:
        with self.engine.begin() as conn:
            old = conn.execute(select(feed_state).where(feed_state.c.feed == self.feed)).first()
            if keep_validators and old is not None:
                keep = {"etag": old.etag, "last_modified": old.last_modified}
            conn.execute(delete(feed_state).where(feed_state.c.feed == self.feed))
            conn.execute(insert(feed_state).values(feed=self.feed, checked_at=utcnow(), status=status, **keep))

    def say(self, ok: bool, why: str) -> None:
        if ok == self.failing:
            self.failing = not ok
            record_event(
                self.engine,
                host=self.host,
                source=f"courier:{self.feed}",
                kind="feed_failing" if not ok else "feed_ok",
                subject=self.conf.url or self.feed,
                severity="warning" if not ok else "info",
                message=why or "the feed answers again",
            )

    def run_gcn(self) -> None:
        """MAXI notices as NASA GCN Kafka delivers them (gcn-kafka), each parsed and kept like a feed's.

        Not exercised by the tests: no Kafka broker runs on 127.0.0.1 here (see the README).
        """
        gcn = self.cfg.couriers.gcn
        assert gcn is not None
        try:
            from gcn_kafka import Consumer  # type: ignore[import-not-found]
        except ImportError:
            raise SystemExit("couriers.gcn: the gcn-kafka client is not installed (pip install 'gozen[gcn]')") from None
        consumer = Consumer(client_id=gcn.client_id, client_secret=gcn.client_secret, domain=gcn.domain)
        consumer.subscribe(gcn.topics)
        while True:
            for message in consumer.consume(timeout=5):
                if message.error():
                    log.warning("gcn: %s", message.error())
                    continue
                parsed = PARSERS["maxi"](message.value().decode("utf-8", errors="replace"))
                for why in parsed.rejected:
                    log.warning("maxi: %s", why)
                self.store(parsed.alerts)

    def run(self) -> None:
        if self.feed == "maxi" and self.cfg.couriers.gcn is not None:
            self.run_gcn()
        while True:
            try:
                self.poll_once()
            except Exception:  # a bug in one pass must not stop the courier
                log.exception("%s: poll failed", self.feed)
            time.sleep(self.conf.every_s)
