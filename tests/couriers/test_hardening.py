"""Couriers and hostile feeds: Slack markup escaped, FITS-safe follow-ups, bad rows skipped, a disk flip told once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from gozen.config import Config, parse_config
from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.migrate import upgrade
from gozen.db.tables import alerts, outbox
from gozen.fitstext import fits_text_problem
from gozen.monitors.df import DfMonitor
from gozen.queue import store
from gozen.service import Context
from tests.couriers.test_couriers import Server, make_courier, make_sender, make_watcher

GAIA_HEADER = "#Name,Date,RaDeg,DecDeg,AlertMag,HistMag,HistStdDev,Class,Comment,TNSid\n"


def observatory(tmp: Path, slack: Server, feeds: Server, **couriers: object) -> tuple[Config, Engine]:
    cfg = parse_config(
        {
            "data_dir": str(tmp / "var"),
            "notifiers": [{"name": "tomoe-slack", "kind": "slack", "url": f"{slack.url}/services/T0/B0/x"}],
            "couriers": {"gaia": {"url": f"{feeds.url}/gaia-alerts.csv", "timeout_s": 5}, **couriers},
        }
    )
    engine = make_engine(f"sqlite:///{tmp / 'c.db'}")
    upgrade(engine)
    return cfg, engine


def serve_gaia(feeds: Server, *lines: str) -> None:
    feeds.override["/gaia-alerts.csv"] = (GAIA_HEADER + "".join(f"{x}\n" for x in lines)).encode()  # type: ignore[attr-defined]


def test_slack_gets_feed_text_escaped_but_our_own_links_intact(tmp_path: Path, slack: Server, feeds: Server) -> None:
    cfg, engine = observatory(tmp_path, slack, feeds)
    serve_gaia(
        feeds,
        'Gaia26zz1,2026-11-24 21:33:50,48.7,31.8,17.5,19.9,0.3,SN Ia,"<!channel> R&D <https://evil.example|click>",',
    )
    assert [a.title for a in make_courier(cfg, engine, "gaia").poll_once().new] == ["Gaia26zz1"]
    assert make_sender(cfg, engine).send_due() == 1
    [payload] = slack.received  # type: ignore[attr-defined]
    block = payload["blocks"][0]["text"]["text"]
    assert block.startswith("*<https://gsaweb.ast.cam.ac.uk/alerts/alert/Gaia26zz1/|Gaia26zz1>* ")  # our link
    assert "&lt;!channel&gt; R&amp;D &lt;https://evil.example|click&gt;" in block
    assert "&lt;!channel&gt; R&amp;D &lt;https://evil.example|click&gt;" in payload["text"]
    for text in (
        block.replace("*<https://gsaweb.ast.cam.ac.uk/alerts/alert/Gaia26zz1/|Gaia26zz1>*", ""),
        payload["text"],
    ):
        assert "<" not in text and ">" not in text  # nothing else Slack would read as markup
    with engine.connect() as conn:  # what was read is kept as it was, for the Alerts page
        assert "<!channel>" in conn.execute(select(alerts.c.data)).scalar_one()["Comment"]


def test_a_non_ascii_alert_becomes_a_fits_safe_follow_up(tmp_path: Path, slack: Server, feeds: Server) -> None:
    cfg, engine = observatory(tmp_path, slack, feeds, followups=[{"feed": "gaia", "min_dec_deg": -30}])
    serve_gaia(feeds, "Gaia26Île 彗星 ☄,2026-11-24 21:33:50,48.7,31.8,17.5,19.9,0.3,SN Ia,a comet?,")
    [alert] = make_courier(cfg, engine, "gaia").poll_once().new
    [recipe] = store.queued(engine)
    assert recipe.name == "Queue-Observer GAIA Gaia26Ile ?? ?"
    [_slew, expose] = recipe.recipe.steps
    assert expose.expose.object == "Gaia26Ile ?? ?"  # type: ignore[union-attr]
    assert fits_text_problem(recipe.name) is None and fits_text_problem(expose.expose.object) is None  # type: ignore[union-attr]
    with engine.connect() as conn:
        assert conn.execute(select(alerts.c.title, alerts.c.followup_uuid)).one() == (alert.title, recipe.uuid)
    assert [e.subject for e in recent_events(engine, 5, kind="followup_queued")] == ["Gaia26Île 彗星 ☄"]


def test_a_row_off_the_sky_is_logged_skipped_and_the_rest_told(
    tmp_path: Path, slack: Server, feeds: Server, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, engine = observatory(tmp_path, slack, feeds)
    bad = [
        "Gaia26bad1,2026-11-24 21:00:00,48.7,95.5,17.5,,,SN,dec beyond the pole,",
        "Gaia26bad2,2026-11-24 21:00:00,inf,10.0,17.5,,,SN,infinite RA,",
        ",2026-11-24 21:00:00,10.0,10.0,17.5,,,SN,no name,",
    ]
    serve_gaia(
        feeds,
        "Gaia26ok1,2026-11-24 21:33:50,48.7,31.8,17.5,,,SN,fine,",
        *bad,
        "Gaia26ok2,2026-11-24 22:00:00,1,2,16,,,CV,,",
    )
    courier = make_courier(cfg, engine, "gaia")
    with caplog.at_level(logging.WARNING):
        r = courier.poll_once()
    assert [a.title for a in r.new] == ["Gaia26ok1", "Gaia26ok2"]
    for n, line in enumerate(bad, start=3):
        assert any(f"line {n} skipped" in m and line in m for m in caplog.messages), (n, caplog.messages)
    assert courier.poll_once().status == "not modified"  # the courier goes on: the bad rows stopped nothing
    assert make_sender(cfg, engine).send_due() == 2
    with engine.connect() as conn:
        assert sorted(conn.execute(select(alerts.c.key)).scalars()) == ["Gaia26ok1", "Gaia26ok2"]
        assert conn.execute(select(func.count()).select_from(outbox).where(outbox.c.state == "sent")).scalar() == 2


def test_one_disk_flip_is_one_slack_message(tmp_path: Path, slack: Server, feeds: Server, small_tmpfs: Path) -> None:
    cfg, engine = observatory(tmp_path, slack, feeds)
    dirs = {"daq_volumes": ["vol1", "vol2"], "storage_nodes": ["node0", "node1", "node2"]}
    for names in dirs.values():
        for n in names:
            (small_tmpfs / n).mkdir()
    cfg = parse_config(
        {
            **cfg.model_dump(mode="json"),
            **{k: [{"name": n, "path": str(small_tmpfs / n)} for n in names] for k, names in dirs.items()},
            "monitors": {"df_warn_pct": 50, "df_alarm_pct": 95},
        }
    )
    watcher = make_watcher(cfg, engine)
    watcher.pass_once()  # starts reading events from here
    mon = DfMonitor(Context(cfg, "daq1", engine, "storage:dfmonitor"))
    mon.sample()
    (small_tmpfs / "vol1" / "cube.fits").write_bytes(b"x" * 600_000)
    mon.sample()
    assert watcher.pass_once() == 1
    assert make_sender(cfg, engine).send_due() == 1
    [payload] = slack.received  # type: ignore[attr-defined]
    assert "disk_warn · vol1,vol2,node0,node1,node2" in payload["text"]
    assert f"filesystem {small_tmpfs} (vol1, vol2, node0, node1, node2) over the warning line" in payload["text"]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(outbox)).scalar() == 1


def test_the_outbox_forgets_settled_messages_after_30_days_but_never_a_pending_one(
    tmp_path: Path, slack: Server, feeds: Server
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from gozen.couriers.store import enqueue
    from gozen.db.types import utcnow

    cfg, engine = observatory(tmp_path, slack, feeds)
    no_sim = cfg.couriers.model_copy(update={"simulator": cfg.couriers.simulator.model_copy(update={"enabled": False})})
    unrouted = cfg.model_copy(update={"notifiers": [], "couriers": no_sim})
    with engine.begin() as conn:
        for i in range(3):
            enqueue(conn, cfg, "failure", f"told {i}")
        enqueue(conn, unrouted, "failure", "nowhere to go")
    slack.script += [200, 200, 500]  # type: ignore[attr-defined]
    sender = make_sender(cfg, engine)
    assert sender.send_due() == 2  # the third is refused: it stays pending
    with engine.begin() as conn:
        conn.execute(update(outbox).values(created_at=utcnow() - timedelta(days=31)))
    assert sender.trim() == 3
    with engine.connect() as conn:
        assert conn.execute(select(outbox.c.text, outbox.c.state)).all() == [("told 2", "pending")]
