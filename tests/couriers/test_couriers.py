"""Couriers against real HTTP servers on 127.0.0.1: one plays Slack, another serves the saved feeds."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from gozen.config import Config, parse_config
from gozen.couriers.courier import Courier
from gozen.couriers.feeds import parse_gaia
from gozen.couriers.outbox import Sender
from gozen.couriers.watch import Watcher
from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.migrate import upgrade
from gozen.db.tables import alerts, outbox
from gozen.service import Context
from tests.conftest import WAIT_S, wait_until

DATA = Path(__file__).parents[1] / "data" / "feeds"


class Server:
    """A ThreadingHTTPServer on 127.0.0.1 whose answers the test scripts."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.state = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class SlackHandler(BaseHTTPRequestHandler):
    """Records every payload; answers from `script` (429 with Retry-After, 500) before 200 "ok"."""

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        st = self.server.state  # type: ignore[attr-defined]
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        st.received.append(body)
        code = st.script.pop(0) if st.script else 200
        self.send_response(code)
        if code == 429:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok" if code == 200 else b"rate_limited" if code == 429 else b"internal_error")

    def log_message(self, *args: Any) -> None:
        pass


class FeedHandler(BaseHTTPRequestHandler):
    """Serves files from DATA by path, with an ETag honoured by If-None-Match (304)."""

    def do_GET(self) -> None:  # noqa: N802
        st = self.server.state  # type: ignore[attr-defined]
        st.requests.append(dict(self.headers))
        path = DATA / self.path.lstrip("/")
        body = st.override.get(self.path) or path.read_bytes()
        etag = f'"{hash(body) & 0xFFFFFFFF:x}"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def make_courier(cfg: Config, engine: Engine, feed: str) -> Courier:
    return Courier(Context(cfg, "gozen", engine, f"courier:{feed}", {"feed": feed}))


def make_sender(cfg: Config, engine: Engine) -> Sender:
    return Sender(Context(cfg, "gozen", engine, "courier:sender"))


def make_watcher(cfg: Config, engine: Engine) -> Watcher:
    return Watcher(Context(cfg, "gozen", engine, "courier:watch"))


def setup(tmp: Path, slack: Server, feeds: Server) -> tuple[Config, Engine]:
    cfg = parse_config(
        {
            "data_dir": str(tmp / "var"),
            "notifiers": [{"name": "tomoe-slack", "kind": "slack", "url": f"{slack.url}/services/T0/B0/x"}],
            "couriers": {
                "cneos": {"url": f"{feeds.url}/cneos-cad.json", "timeout_s": 5},
                "gaia": {"url": f"{feeds.url}/gaia-alerts.csv", "timeout_s": 5},
                "mpec": {"url": f"{feeds.url}/mpec.xml", "timeout_s": 5},
                "retry_base_s": 0.01,
            },
        }
    )
    engine = make_engine(f"sqlite:///{tmp / 'c.db'}")
    upgrade(engine)
    return cfg, engine


def test_cneos_daily_update_is_posted_exactly_as_the_tomoe_courier_wrote_it(
    tmp_path: Path, slack: Server, feeds: Server
) -> None:
    cfg, engine = setup(tmp_path, slack, feeds)
    assert len(make_courier(cfg, engine, "cneos").poll_once().new) == 3
    assert make_sender(cfg, engine).send_due() == 1
    [payload] = slack.received  # type: ignore[attr-defined]
    assert payload["text"] == (
        "CNEOS Close Approaches daily updates\n"
        "2018 NM\n"
        "2018-Jul-17 05:38±00:33, H=26.4, dist: 0.0036 au (1.4 LD)\n"
        "2018 NW\n"
        "2018-Jul-18 09:40±&lt; 00:01, H=25.7, dist: 0.0300 au (11.7 LD)\n"  # "<" escaped for Slack mrkdwn
        "2026 WB1\n"
        "2026-Nov-27 07:29±1_02:14, H=27.9, dist: 0.0128 au (5.0 LD)"
    )
    assert payload["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "CNEOS Close Approaches daily updates"},
    }
    assert (
        payload["blocks"][1]["text"]["text"] == "*2018 NM*\n2018-Jul-17 05:38±00:33, H=26.4, dist: 0.0036 au (1.4 LD)"
    )


def test_a_restarted_courier_never_posts_twice_and_uses_conditional_gets(
    tmp_path: Path, slack: Server, feeds: Server
) -> None:
    cfg, engine = setup(tmp_path, slack, feeds)
    for feed in ("cneos", "gaia", "mpec"):
        make_courier(cfg, engine, feed).poll_once()
    again = [make_courier(cfg, engine, f).poll_once() for f in ("cneos", "gaia", "mpec")]  # "restarted"
    assert [r.status for r in again] == ["not modified"] * 3 and not any(r.new for r in again)
    assert feeds.requests[-1]["If-None-Match"]  # type: ignore[attr-defined]
    feeds.override["/gaia-alerts.csv"] = (DATA / "gaia-alerts.csv").read_bytes() + (  # type: ignore[attr-defined]
        b"Gaia26dxb,2026-11-25 02:10:00,120.5,-5.25,15.9,18.2,0.3,unknown,new today,\n"
    )
    r = make_courier(cfg, engine, "gaia").poll_once()
    assert [a.title for a in r.new] == ["Gaia26dxb"]  # only the new line makes a message
    make_sender(cfg, engine).send_due()
    texts = [p["text"] for p in slack.received]  # type: ignore[attr-defined]
    assert len(texts) == 1 + 3 + 2 + 1 and len(set(texts)) == len(texts)
    with engine.connect() as conn:
        assert len(conn.execute(select(alerts.c.id)).all()) == 3 + 3 + 2 + 1


def test_malformed_lines_are_logged_and_skipped_and_the_courier_goes_on(
    tmp_path: Path, slack: Server, feeds: Server, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, engine = setup(tmp_path, slack, feeds)
    with caplog.at_level(logging.WARNING):
        r = make_courier(cfg, engine, "gaia").poll_once()
    assert [a.title for a in r.new] == ["Gaia26dxa", "Gaia26dwz", "Gaia26dwx"]
    assert any("line 4 skipped" in m and "this line is broken" in m for m in caplog.messages)
    assert any("line 5 skipped" in m and "not-a-number" in m for m in caplog.messages)
    feeds.override["/cneos-cad.json"] = b"<html>502 Bad Gateway</html>"  # type: ignore[attr-defined]
    bad = make_courier(cfg, engine, "cneos").poll_once()
    assert bad.new == [] and "not a close-approach API answer" in bad.rejected[0]
    make_sender(cfg, engine).send_due()
    gaia = [p["text"] for p in slack.received]  # type: ignore[attr-defined]
    assert gaia[0].startswith("Gaia alert Gaia26dxa (SN Ia): 2026-11-24 21:33 UTC, RA 03:14:52.40 Dec +31:51:55.8")
    assert "G=17.58 (was 19.96±0.33)" in gaia[0] and "https://gsaweb.ast.cam.ac.uk/alerts/alert/Gaia26dxa/" in gaia[0]


def test_429_and_500_are_retried_and_nothing_is_lost(tmp_path: Path, slack: Server, feeds: Server) -> None:
    cfg, engine = setup(tmp_path, slack, feeds)
    make_courier(cfg, engine, "mpec").poll_once()
    slack.script += [429, 500, 500]  # type: ignore[attr-defined]
    sender = make_sender(cfg, engine)

    def both_sent() -> bool:
        sender.send_due()
        with engine.connect() as conn:
            return conn.execute(select(outbox.c.state)).scalars().all() == ["sent", "sent"]

    wait_until(both_sent, WAIT_S, 0.05, "both posts delivered through the refusals")
    with engine.connect() as conn:
        rows = conn.execute(select(outbox.c.state, outbox.c.attempts, outbox.c.last_error).order_by(outbox.c.id)).all()
    assert [r.state for r in rows] == ["sent", "sent"]
    assert sum(r.attempts for r in rows) == 2 + 3  # each delivered once; three refusals in between
    delivered = [p["text"] for p in slack.received if p]  # type: ignore[attr-defined]
    assert sorted(set(delivered)) == sorted(
        {
            "MPEC 2026-W112 : 2026 WB1 (2026-11-24 20:14 UTC) https://www.minorplanetcenter.net/mpec/K26/K26WB2.html",
            "MPEC 2026-W111 : DAILY ORBIT UPDATE (2026 NOV. 24 UT) (2026-11-24 09:02 UTC) "
            "https://www.minorplanetcenter.net/mpec/K26/K26WB1.html",
        }
    )
    kinds = [e.kind for e in reversed(recent_events(engine, 10))]
    assert kinds == ["notifier_failing", "notifier_ok"]  # said once each, not once per refusal


def test_an_unreachable_feed_is_an_event_once_and_the_courier_keeps_going(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = parse_config(
        {"data_dir": str(tmp_path / "var"), "couriers": {"cneos": {"url": "http://127.0.0.1:9/x", "timeout_s": 1}}}
    )
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    upgrade(engine)
    c = make_courier(cfg, engine, "cneos")
    monkeypatch.setattr(c.ctx, "sleep", lambda s: False)  # no backoff waits in the test
    assert c.poll_once().new == [] and c.poll_once().new == []
    events = recent_events(engine, 10, kind="feed_failing")
    assert len(events) == 1 and "ConnectError" in events[0].message


def test_failures_are_told_at_once_and_repeats_grouped(tmp_path: Path, slack: Server, feeds: Server) -> None:
    from datetime import UTC, datetime, timedelta

    from gozen.db.events import record_event

    cfg, engine = setup(tmp_path, slack, feeds)
    watcher = make_watcher(cfg, engine)
    record_event(
        engine, host="old", source="x", kind="process_exited", subject="a:b", message="before", severity="error"
    )
    assert watcher.pass_once() == 0  # history before the first start is not told
    t0 = datetime.now(UTC)

    def event(kind: str, subject: str, severity: str = "error", minutes: float = 0.0) -> None:
        record_event(
            engine,
            host="daq1",
            source="supervisord",
            kind=kind,
            subject=subject,
            severity=severity,
            message=f"{subject} went wrong",
            time=t0 + timedelta(minutes=minutes),
        )

    event("process_exited", "daq:writer-01")
    for m in (1, 2, 3):
        event("process_exited", "daq:writer-01", minutes=m)  # a crash loop
    event("process_state", "daq:writer-02", severity="info")  # not a failure
    event("safety_changed", "safe_to_observe", severity="info")  # safe again: not a failure
    event("pool_degraded", "data", minutes=4)
    record_event(
        engine,
        host="daq1",
        source="daq:readout-01",
        kind="frames_lost",
        subject="exp 7",
        severity="error",
        message="exposure 7: 0 frames dropped",
        data={"dropped": 0},
        time=t0,
    )  # under the threshold
    assert watcher.pass_once(now=t0 + timedelta(minutes=5)) == 2
    assert watcher.pass_once(now=t0 + timedelta(minutes=11)) == 1  # the crash loop's window closed: its count
    make_sender(cfg, engine).send_due()
    texts = [p["text"] for p in slack.received]  # type: ignore[attr-defined]
    assert texts == [
        ":rotating_light: daq1 · process_exited · daq:writer-01: daq:writer-01 went wrong",
        ":rotating_light: daq1 · pool_degraded · data: data went wrong",
        ":repeat: daq1 · process_exited · daq:writer-01: 3 more within 10 minutes of the first",
    ]
    assert make_watcher(cfg, engine).pass_once(now=t0 + timedelta(minutes=20)) == 0  # restarted: nothing twice


def test_an_alert_north_of_the_limit_becomes_one_interrupt_recipe(tmp_path: Path, slack: Server, feeds: Server) -> None:
    from gozen.queue import store

    cfg, engine = setup(tmp_path, slack, feeds)
    cfg = cfg.model_copy(
        update={
            "couriers": cfg.couriers.model_copy(
                update={
                    "followups": [
                        parse_config(
                            {
                                "couriers": {
                                    "followups": [{"feed": "gaia", "min_dec_deg": -20, "classes": ["SN Ia", "CV"]}]
                                }
                            }
                        ).couriers.followups[0]
                    ]
                }
            )
        }
    )
    make_courier(cfg, engine, "gaia").poll_once()
    queued = store.queued(engine)
    assert sorted(r.name for r in queued) == ["Queue-Observer GAIA Gaia26dwx", "Queue-Observer GAIA Gaia26dxa"]
    r = next(r for r in queued if r.name.endswith("Gaia26dxa"))
    assert r.priority == "interrupt" and (r.ra_deg, r.dec_deg) == (48.71834, 31.86551)
    with engine.connect() as conn:
        made = dict(conn.execute(select(alerts.c.title, alerts.c.followup_uuid)).all())
    assert made["Gaia26dxa"] == r.uuid and made["Gaia26dwz"] is None  # a YSO at -21 deg: no rule matches
    again = parse_gaia((DATA / "gaia-alerts.csv").read_text()).alerts
    make_courier(cfg, engine, "gaia").follow_up(again)  # the same alerts once more: still one recipe each
    assert len(store.queued(engine)) == 2


def test_the_daily_zfs_snippet_goes_out_once_at_one_in_the_morning(
    tmp_path: Path, slack: Server, feeds: Server
) -> None:
    from datetime import UTC, datetime

    from gozen.monitors.board import Reading, publish

    cfg, engine = setup(tmp_path, slack, feeds)
    status = (Path(__file__).parents[1] / "data" / "zpool").glob("status-*.txt")
    text = sorted(status)[0].read_text()
    for host in ("tomoebuf-node0", "tomoebuf-node1"):
        publish(
            engine,
            "storage:zfsmonitor",
            [Reading(f"zfs.{host}.available", True, "", 600), Reading(f"zfs.{host}.data.status_text", text, "", 600)],
        )
    w = make_watcher(cfg, engine)
    assert w.pass_once(now=datetime(2026, 11, 25, 15, 59, tzinfo=UTC)) == 0  # 00:59 in Japan
    assert w.pass_once(now=datetime(2026, 11, 25, 16, 0, tzinfo=UTC)) == 2  # 01:00: one per node
    assert w.pass_once(now=datetime(2026, 11, 25, 16, 30, tzinfo=UTC)) == 0  # once a day
    make_sender(cfg, engine).send_due()
    first = slack.received[0]["text"]  # type: ignore[attr-defined]
    assert first.startswith("zfs pool status on tomoebuf-node0\n```\n2026-11-26 01:00 JST\n")
    assert "pool: data" in first and first.endswith("```")


def test_a_maxi_transient_north_of_minus_30_becomes_queue_observer_maxi(
    tmp_path: Path, slack: Server, feeds: Server, caplog: pytest.LogCaptureFixture
) -> None:
    from gozen.queue import store

    cfg, engine = setup(tmp_path, slack, feeds)
    maxi = parse_config(
        {"couriers": {"maxi": {"url": f"{feeds.url}/maxi-notices.txt"}, "followups": [{"feed": "maxi"}]}}
    ).couriers
    cfg = cfg.model_copy(
        update={"couriers": cfg.couriers.model_copy(update={"maxi": maxi.maxi, "followups": maxi.followups})}
    )
    with caplog.at_level(logging.WARNING):
        r = make_courier(cfg, engine, "maxi").poll_once()
    assert [a.title for a in r.new] == ["11 45+01", "18 00-45"]
    assert any("notice skipped" in m and "garbled" in m for m in caplog.messages)
    [recipe] = store.queued(engine)
    assert (recipe.name, recipe.priority) == ("Queue-Observer MAXI 11 45+01", "interrupt")
    make_sender(cfg, engine).send_due()
    first = slack.received[0]["text"]  # type: ignore[attr-defined]
    assert first.startswith("MAXI Unknown Source 11 45+01 (trigger 9181634): 2026-11-24 13:45:12 UTC, RA 11:45:00.00")


def test_other_services_get_messages_through_apprise(tmp_path: Path, slack: Server, feeds: Server) -> None:
    cfg, engine = setup(tmp_path, slack, feeds)
    port = slack.url.rsplit(":", 1)[1]
    cfg = cfg.model_copy(
        update={
            "notifiers": parse_config(
                {
                    "notifiers": [
                        {
                            "name": "ops-json",
                            "kind": "apprise",
                            "url": f"json://127.0.0.1:{port}/hook",
                            "kinds": ["mpec"],
                        }
                    ]
                }
            ).notifiers
        }
    )
    make_courier(cfg, engine, "mpec").poll_once()
    make_courier(cfg, engine, "cneos").poll_once()  # not routed to ops-json: kept as unrouted
    assert make_sender(cfg, engine).send_due() == 2
    bodies = slack.received  # type: ignore[attr-defined]
    assert [b["message"] for b in bodies][0].startswith("MPEC 2026-W112 : 2026 WB1") and bodies[0]["title"] == "gozen"
    with engine.connect() as conn:
        states = sorted(conn.execute(select(outbox.c.kind, outbox.c.state)).all())
    assert states == [("cneos", "unrouted"), ("mpec", "sent"), ("mpec", "sent")]


class SlackApiHandler(BaseHTTPRequestHandler):
    """Slack's Web API as files_upload_v2 uses it: getUploadURLExternal, the upload, completeUploadExternal."""

    def do_POST(self) -> None:  # noqa: N802
        from urllib.parse import parse_qs

        st = self.server.state  # type: ignore[attr-defined]
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        st.calls.append((self.path, self.headers.get("Authorization"), raw))
        if self.path.startswith("/upload/"):
            answer = b"OK - 1"
        elif self.path.endswith("files.getUploadURLExternal"):
            args = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            answer = json.dumps(
                {"ok": True, "upload_url": f"{st.url}/upload/F1", "file_id": "F1", "args": args}
            ).encode()
        elif self.path.endswith("files.completeUploadExternal"):
            answer = json.dumps({"ok": True, "files": [{"id": "F1", "title": "t"}]}).encode()
        else:
            answer = json.dumps({"ok": False, "error": "unknown_method"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


def test_snippets_are_uploaded_as_files_with_the_bot_token(tmp_path: Path, slack: Server, feeds: Server) -> None:
    from gozen.couriers.store import enqueue

    api = Server(SlackApiHandler)
    api.calls = []  # type: ignore[attr-defined]
    try:
        cfg, engine = setup(tmp_path, slack, feeds)
        bot = {
            "name": "tomoe-log",
            "kind": "slack",
            "url": f"{slack.url}/hook",
            "bot_token": "xoxb-test",
            "channel": "C0LOG",
            "api_url": f"{api.url}/api/",
            "kinds": ["snippet"],
        }
        cfg = cfg.model_copy(update={"notifiers": parse_config({"notifiers": [bot]}).notifiers})
        with engine.begin() as conn:
            enqueue(conn, cfg, "snippet", "zfs pool status on tomoebuf-node0\n```\n  pool: data\n state: ONLINE\n```")
        assert make_sender(cfg, engine).send_due() == 1
        paths = [c[0] for c in api.calls]  # type: ignore[attr-defined]
        assert paths == ["/api/files.getUploadURLExternal", "/upload/F1", "/api/files.completeUploadExternal"]
        assert api.calls[0][1] == "Bearer xoxb-test"  # type: ignore[attr-defined]
        assert b"pool: data" in api.calls[1][2] and b"```" not in api.calls[1][2]  # type: ignore[attr-defined]
        assert b"C0LOG" in api.calls[2][2] and not slack.received  # type: ignore[attr-defined]
    finally:
        api.close()


def test_the_api_v15_shape_with_a_numeric_count_and_padded_fullname_is_read() -> None:
    from gozen.couriers.feeds import parse_cneos
    from gozen.couriers.messages import cneos_line

    parsed = parse_cneos((DATA / "cneos-cad-v15-fullname.json").read_text())
    assert parsed.rejected == [] and [a.title for a in parsed.alerts] == ["2026 WC3", "99942 Apophis (2004 MN4)"]
    assert cneos_line(parsed.alerts[1]) == "2029-Apr-13 21:46±< 00:01, H=19.7, dist: 0.0003 au (0.1 LD)"
    assert parsed.alerts[1].data["fullname"].strip() == "99942 Apophis (2004 MN4)"
