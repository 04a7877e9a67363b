"""The README's 5-host example as five separate hosts on this machine (tests/fleet/harness.py): its
layout, files flowing from both DAQ hosts to both storage hosts and the archive, a storage host killed,
another's link cut, the database restarted and a writer killed -9, all at once, and the exporters and
copy agents racing on PostgreSQL. Each test ends with `gozen audit` on every storage host and the head.

The tests of this module run in order (layout, flow, race, faults) on the fleet they share with
test_split_camera.py (`readme_fleet`)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gozen.supervise.programs import programs_for
from tests.conftest import START_S, WAIT_S, wait_until
from tests.fleet.harness import CHIPS, PASSWORD_FILES, Fleet, sleep_until

STORAGE_HOSTS = ("store1", "store2")
DAQ_HOSTS = ("daq1", "daq2")
DRAIN_S = 420.0  # a backlog left by the faults drains on a busy machine within this


@pytest.fixture
def fleet(readme_fleet: Fleet) -> Fleet:
    return readme_fleet


# -- what the tests look at -----------------------------------------------------------------------------
def ps_json(fleet: Fleet, on: str = "head") -> list[dict[str, object]]:
    r = fleet.gozen(on, "ps", "--json", "--timeout", "10")
    assert r.stdout.strip(), f"`gozen ps --json` on {on} printed nothing (exit {r.returncode}): {r.stderr}"
    hosts: list[dict[str, object]] = json.loads(r.stdout)
    return hosts


def expose(fleet: Fleet, obj: str, count: int = 1, frames: int = 4) -> None:
    r = fleet.gozen(
        "daq1", "daq", "expose", "--object", obj, "--count", str(count), "--frames", str(frames), "--no-wait"
    )
    assert r.returncode == 0, f"gozen daq expose: {r.stdout}{r.stderr}"


def quiesce(fleet: Fleet) -> None:
    """No new exposures (the queue paused), and none in flight: the counts below stop moving."""
    r = fleet.gozen("head", "queue", "pause")
    assert r.returncode == 0, r.stdout + r.stderr
    wait_until(
        lambda: not fleet.query("SELECT exp_id FROM exposures WHERE state IN ('queued', 'armed')"),
        WAIT_S,
        1.0,
        "no exposure queued or armed",
        fleet.dump,
    )


def resume(fleet: Fleet) -> None:
    r = fleet.gozen("head", "queue", "resume")
    assert r.returncode == 0, r.stdout + r.stderr


def not_flowed(fleet: Fleet, archive: bool = True) -> str | None:
    """What is short of the goal, None when every written file is catalogued, has a verified and
    proven replica on both storage nodes (2 in all), is acknowledged by the archive if it is exported,
    and its DAQ copy was freed by the janitor."""
    written = fleet.query("SELECT count(*) FROM daq_files WHERE state = 'written'")[0][0]
    files = fleet.query("SELECT count(*) FROM files")[0][0]
    if files != written:
        return f"{files} files catalogued of {written} written"
    short = fleet.query(
        "SELECT f.filename, count(r.id) FROM files f LEFT JOIN replicas r ON r.file_id = f.id"
        " AND r.state = 'verified' AND r.proved_at IS NOT NULL GROUP BY f.filename HAVING count(r.id) <> 2"
    )
    if short:
        return f"{len(short)} files without exactly 2 proven replicas, e.g. {short[:3]}"
    one_node = fleet.query(
        "SELECT f.filename FROM files f JOIN replicas r ON r.file_id = f.id AND r.state = 'verified'"
        " GROUP BY f.filename HAVING count(DISTINCT r.node) <> 2"
    )
    if one_node:
        return f"files with both copies on one node: {one_node[:3]}"
    if archive:
        unacked = fleet.query(
            "SELECT f.filename, e.state FROM files f LEFT JOIN exports e ON e.file_id = f.id"
            " WHERE e.state IS NULL OR e.state NOT IN ('acknowledged', 'not_selected')"
        )
        if unacked:
            return f"{len(unacked)} files not acknowledged by the archive, e.g. {unacked[:3]}"
    kept = fleet.query("SELECT filename FROM files WHERE daq_deleted_at IS NULL")
    if kept:
        return f"{len(kept)} DAQ copies not freed by the janitor, e.g. {kept[:3]}"
    return None


def on_disk(fleet: Fleet) -> None:
    """The catalog's claims hold on the hosts' own disks: each replica on its node's host (and on no
    other), the archive's copies on the head, no DAQ copy left on the DAQ hosts."""
    rows = fleet.query(
        "SELECT f.filename, f.size_bytes, r.node, r.path FROM files f JOIN replicas r ON r.file_id = f.id"
        " WHERE r.state = 'verified'"
    )
    node_host = {"node1": "store1", "node2": "store2"}
    for filename, size, node, path in rows:
        rel = Path(path).relative_to(fleet.data_dir)
        here = fleet.hosts[node_host[node]].disk / rel
        assert here.is_file() and here.stat().st_size == size, f"{filename}: {node} copy not on {node_host[node]}"
        for other in fleet.hosts.values():
            if other.name != node_host[node]:
                assert not (other.disk / rel).exists(), f"{filename}: {node}'s copy also on {other.name}"
    for daq in DAQ_HOSTS:
        daq_left = [p.name for p in (fleet.hosts[daq].disk / "daq").rglob("*.fits")]
        assert daq_left == [], f"DAQ copies left on {daq}'s disk: {daq_left[:5]}"
        parts = [p.name for p in fleet.hosts[daq].disk.rglob("*.part")]
        assert parts == [], f"half-written files left on {daq}: {parts}"


def archived_on_head(fleet: Fleet) -> None:
    """Every acknowledged file is in exactly one package manifest in the archive on the head."""
    acked = {
        r[0]
        for r in fleet.query(
            "SELECT f.filename FROM files f JOIN exports e ON e.file_id = f.id WHERE e.state = 'acknowledged'"
        )
    }
    archive = fleet.hosts["head"].disk / "archive"
    seen: dict[str, list[str]] = {}
    for manifest in archive.rglob("manifests/*.json"):
        for name in manifest_files(manifest):
            seen.setdefault(name, []).append(manifest.name)
    twice = {n: m for n, m in seen.items() if len(m) > 1}
    assert not twice, f"files in more than one package: {dict(list(twice.items())[:5])}"
    missing = sorted(acked - set(seen))
    assert not missing, f"acknowledged files in no manifest on the head: {missing[:5]}"


def manifest_files(path: Path) -> list[str]:
    data = json.loads(path.read_text())
    items = data.get("files", data) if isinstance(data, dict) else data
    names = []
    for item in items:
        if isinstance(item, dict):
            names.append(str(item.get("file") or item.get("filename") or item.get("name")))
        else:
            names.append(str(item))
    return names


AUDIT_ROW = re.compile(r"^\s*(?P<name>[A-Za-z][A-Za-z ()]*?)\s{2,}(?P<value>\d[\d.]*)\s*$")


def audit_numbers(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        m = AUDIT_ROW.match(line)
        if m:
            out[m["name"].strip()] = float(m["value"])
    return out


def audit_everywhere(fleet: Fleet) -> dict[str, dict[str, float]]:
    """`gozen audit` on each storage host (its proofs read from its own disks) and on the head: each
    exits 0 with 0 lost and 0 corrupted; the catalog's counts: every written file catalogued, and
    2 verified replicas each."""
    quiesce(fleet)
    wait_until(
        lambda: not_flowed(fleet, fleet.config_data.get("archive") is not None) is None,
        DRAIN_S,
        2.0,
        "every file copied, proven, archived and freed",
        fleet.dump,
    )
    out = {}
    for host in (*STORAGE_HOSTS, "head"):
        r = fleet.gozen(host, "audit", timeout_s=600)
        nums = audit_numbers(r.stdout)
        out[host] = nums
        assert r.returncode == 0, f"`gozen audit` on {host} exited {r.returncode}:\n{r.stdout}{r.stderr}"
        assert nums.get("files lost") == 0 and nums.get("replicas corrupted") == 0, f"{host}: {r.stdout}"
        assert nums.get("replicas missing") == 0, f"{host}: {r.stdout}"
    written = fleet.query("SELECT count(*) FROM daq_files WHERE state = 'written'")[0][0]
    files = fleet.query("SELECT count(*) FROM files")[0][0]
    verified = fleet.query("SELECT count(*) FROM replicas WHERE state = 'verified'")[0][0]
    assert written > 0 and files == written, f"files catalogued {files} != files written {written}"
    assert verified == 2 * files, f"replicas verified {verified} != 2 x {files} files"
    for host, nums in out.items():
        assert nums.get("files catalogued") == files, f"{host}'s audit: {nums}"
    on_disk(fleet)
    return out


def no_fatal(fleet: Fleet) -> None:
    """No program of any host FATAL, now or at any time (supervisord's events say so)."""
    for name in fleet.hosts:
        st = fleet.status(name)
        assert st.reachable, f"{name}: {st.error}"
        fatal = [p.full_name for p in st.processes if p.state == "FATAL"]
        assert not fatal, f"{name}: FATAL: {fatal}"
    ever = fleet.query(
        "SELECT time, host, subject, message FROM events"
        " WHERE source = 'supervisord' AND data->>'event' = 'PROCESS_STATE_FATAL'"
    )
    assert not ever, f"programs that went FATAL: {ever}"


def crashes(fleet: Fleet, since: datetime | None = None) -> list[str]:
    """Passes that failed with a traceback (pass_failed events) and duplicate-key errors anywhere."""
    rows = fleet.query(
        "SELECT time, host, source, kind, message FROM events"
        " WHERE (kind = 'pass_failed' OR message ILIKE '%%IntegrityError%%' OR message ILIKE '%%duplicate key%%')"
        " AND time >= %s ORDER BY id",
        since or datetime(2000, 1, 1, tzinfo=UTC),
    )
    found = [f"{t:%H:%M:%S} {h} {s} {k}: {m[:200]}" for t, h, s, k, m in rows]
    for h in fleet.hosts.values():
        for log in (h.disk / "log").glob("*.log"):
            text = log.read_text(errors="replace")
            for needle in ("IntegrityError", "UniqueViolation", "duplicate key"):
                if needle in text:
                    found.append(f"{h.name}: {log.name} mentions {needle}")
    return found


# -- layout ------------------------------------------------------------------------------------------------
def test_the_config_is_the_readme_example_untouched(fleet: Fleet) -> None:
    import yaml

    written = yaml.safe_load(fleet.config_file.read_text())

    def leaves(d: object, prefix: str = "") -> Iterator[tuple[str, object]]:
        if isinstance(d, dict):
            for k, v in d.items():
                yield from leaves(v, f"{prefix}.{k}" if prefix else k)
        else:
            yield prefix, d

    example = dict(leaves(fleet.example))
    changed = {k: (v, dict(leaves(written)).get(k)) for k, v in example.items() if dict(leaves(written)).get(k) != v}
    assert not changed, f"the fleet's gozen.yaml changes the README example: {changed}"
    assert "${GOZEN_DATABASE_URL}" in fleet.config_file.read_text()  # the secret is not in the file


def test_every_host_runs_its_programs(fleet: Fleet) -> None:
    hosts = {h["host"]: h for h in ps_json(fleet, "head")}
    assert set(hosts) == {"daq1", "daq2", "store1", "store2", "head"}
    cfg = fleet.cfg()
    for name, h in hosts.items():
        assert h["reachable"], f"{name}: {h['error']}"
        running = {f"{p['group']}:{p['name']}": p["state"] for p in h["processes"]}  # type: ignore[attr-defined]
        expected = {p.full_name for p in programs_for(cfg, cfg.host(name))}
        assert set(running) == expected, f"{name}: runs {sorted(running)}, the registry says {sorted(expected)}"
        assert all(s == "RUNNING" for s in running.values()), f"{name}: {running}"
    progs = {name: {f"{p['group']}:{p['name']}" for p in h["processes"]} for name, h in hosts.items()}  # type: ignore[attr-defined]
    # Each DAQ host reads and writes its chips, its copy agents copy its files; one daq:control, on
    # the daq-master; each storage host proves and exports its own node.
    for daq in DAQ_HOSTS:
        daq_progs = {"daq:readout-01", "daq:writer-01", "daq:writer-02", "transfer:push", "transfer:janitor"}
        assert daq_progs | {f"transfer:pop-{i:02d}" for i in range(1, 5)} <= progs[daq], progs[daq]
    assert [name for name, p in progs.items() if "daq:control" in p] == ["daq1"]
    assert cfg.chips_of("daq1") == CHIPS[:4] and cfg.chips_of("daq2") == CHIPS[4:]
    for s in STORAGE_HOSTS:
        assert {"storage:rsyncd", "storage:prover", "transfer:export"} <= progs[s], progs[s]
        assert not any(p.startswith("transfer:pop") for p in progs[s]), progs[s]
    head = {"storage:rsyncd", "archive:simulator", "fleet:watch", "courier:watch", "courier:sender", "www:dashboard"}
    assert head <= progs["head"], progs["head"]
    # Every host answers on its own address only.
    for name, h in hosts.items():
        assert h["address"] == fleet.hosts[name].address


def test_no_host_can_read_another_hosts_files(fleet: Fleet) -> None:
    r = fleet.run("store1", ["sh", "-c", 'echo only-store1 > "$GOZEN_DATA_DIR/fleet-secret" && ls "$GOZEN_DATA_DIR"'])
    assert r.returncode == 0, r.stderr
    assert "storage" in r.stdout.split()  # store1 sees its own node's directory
    assert (fleet.hosts["store1"].disk / "fleet-secret").read_text() == "only-store1\n"
    for other in ("daq1", "daq2", "store2", "head"):
        r = fleet.run(other, ["sh", "-c", 'cat "$GOZEN_DATA_DIR/fleet-secret"'])
        assert r.returncode != 0 and "only-store1" not in r.stdout, f"{other} reads store1's file: {r.stdout}"
        r = fleet.run(other, ["cat", str(fleet.hosts["store1"].disk / "fleet-secret")])
        assert r.returncode != 0 and "only-store1" not in r.stdout, f"{other} reads store1's disk: {r.stdout}"
        r = fleet.run(other, ["ls", "-A", str(fleet.hosts_dir)])
        assert r.returncode == 0 and r.stdout.strip() == "", f"{other} sees the hosts' disks: {r.stdout}"
    assert not any(fleet.data_dir.iterdir()), "the data dir outside the hosts' namespaces is not empty"
    # Only the DAQ hosts have DAQ volumes, only store1 node1, only the head the archive.
    for daq in DAQ_HOSTS:
        assert (fleet.hosts[daq].disk / "daq").is_dir() and not (fleet.hosts[daq].disk / "storage").exists()
    assert (fleet.hosts["store1"].disk / "storage" / "node1").is_dir()
    assert not (fleet.hosts["store1"].disk / "storage" / "node2").exists()
    assert not (fleet.hosts["store1"].disk / "daq").exists()
    (fleet.hosts["store1"].disk / "fleet-secret").unlink()


def test_the_shared_passwords_are_on_every_host_and_private(fleet: Fleet) -> None:
    for rel in PASSWORD_FILES:
        texts = set()
        for h in fleet.hosts.values():
            p = h.disk / rel
            assert p.is_file(), f"{h.name}: no {rel}"
            assert p.stat().st_mode & 0o777 == 0o600, f"{h.name}: {rel} is {oct(p.stat().st_mode & 0o777)}"
            texts.add(p.read_text())
        assert len(texts) == 1, f"{rel} differs between hosts"
    for h in fleet.hosts.values():
        for conf in (h.disk / "run").glob("*.conf"):
            assert conf.stat().st_mode & 0o077 == 0, f"{h.name}: {conf.name} is readable by others"


# -- flow ------------------------------------------------------------------------------------------------
def test_every_file_reaches_both_storage_hosts_and_the_archive_and_leaves_the_daq(fleet: Fleet) -> None:
    started = time.monotonic()
    resume(fleet)  # the demo survey runs, and exposures of our own
    expose(fleet, "FLOW", count=3)
    wait_until(
        lambda: fleet.query("SELECT count(*) FROM exposures WHERE state = 'done' AND object <> 'FLOW'")[0][0] >= 1,
        START_S,
        2.0,
        "an exposure of the demo survey",
        fleet.dump,
    )
    audits = audit_everywhere(fleet)
    archived_on_head(fleet)
    for host in STORAGE_HOSTS:
        read_here = audits[host].get("replicas read back here", audits[host].get("replicas checked", 0))
        assert read_here > 0, f"{host} read none of its replicas back: {audits[host]}"
    assert not crashes(fleet), crashes(fleet)
    no_fatal(fleet)
    print(f"flow: {time.monotonic() - started:.0f} s; audits {audits}")


# -- race ------------------------------------------------------------------------------------------------
def test_two_exporters_and_four_copy_agents_race_without_a_duplicate_or_a_crash(fleet: Fleet) -> None:
    """Both storage hosts hold every file (replication 2 over 2 nodes), so both exporters want each one;
    four copy agents on each DAQ host claim the same queue. A burst of files at once makes them meet."""
    t0 = datetime.now(UTC)
    resume(fleet)
    expose(fleet, "RACE", count=8)
    audit_everywhere(fleet)
    archived_on_head(fleet)
    packages = fleet.query(
        "SELECT package, count(DISTINCT e.file_id) FROM exports e WHERE package IS NOT NULL GROUP BY package"
    )
    assert packages, "no package made"
    per_host = fleet.query(
        "SELECT substring(package from '-([^-]+)-[0-9]+$') AS host, count(DISTINCT package) FROM exports"
        " WHERE package IS NOT NULL GROUP BY 1"
    )
    print("packages by host:", per_host)
    raced = fleet.query("SELECT count(DISTINCT package), count(*) FROM exports WHERE packaged_at >= %s", t0)
    race_files = fleet.query(
        "SELECT count(*) FROM files f JOIN exposures e ON e.exp_id = f.exp_id WHERE e.object = 'RACE'"
    )[0][0]
    assert race_files == 8 * len(CHIPS), f"8 exposures of {len(CHIPS)} chips made {race_files} files"
    print("since the burst: packages, files packaged:", raced)
    assert not crashes(fleet), crashes(fleet)
    no_fatal(fleet)


# -- faults -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Told:
    what: str
    host: str  # the events' subject / the Slack message must name it
    kinds: tuple[str, ...]  # the error event (any of these kinds)
    back: tuple[str, ...]  # the recovery event/message
    at: datetime  # when the fault began
    ended: datetime  # when it ended: its recovery is told after this, once


def told(fleet: Fleet, f: Told, db_away: tuple[datetime, datetime]) -> list[str]:
    """What is missing about one fault: its error event within 60 s (its real time: an event made
    while the database is away is spooled with it), the Slack message within 60 s, the recovery
    message once, after the fault ended. The Slack deadline of another fault is moved by the time
    the database was away within its 60 s: the outbox is in the database."""
    problems = []
    window_end = f.at + timedelta(seconds=60)
    overlap = min(window_end, db_away[1]) - max(f.at, db_away[0])
    slack_s = 60 + (overlap.total_seconds() if f.kinds != ("database_unreachable",) and overlap > timedelta(0) else 0)
    rows = fleet.query(
        "SELECT time, kind, severity, subject, message FROM events WHERE time >= %s AND kind = ANY(%s) ORDER BY id",
        f.at - timedelta(seconds=2),
        list(f.kinds),
    )
    hits = [r for r in rows if f.host in f"{r[3]} {r[4]}" and r[2] == "error"]
    if not hits:
        problems.append(f"{f.what}: no error event {f.kinds} naming {f.host} (saw {rows[:3]})")
    elif (hits[0][0] - f.at).total_seconds() > 60:
        problems.append(f"{f.what}: the error event came {(hits[0][0] - f.at).total_seconds():.0f} s after")
    posts = [p for p in fleet.slack.since(f.at) if f.host in p.text and any(k in p.text for k in f.kinds)]
    if not posts:
        problems.append(f"{f.what}: no Slack message with {f.kinds} and {f.host}")
    elif (posts[0].at - f.at).total_seconds() > slack_s:
        problems.append(f"{f.what}: Slack told {(posts[0].at - f.at).total_seconds():.0f} s after (> {slack_s:.0f} s)")
    back = [p for p in fleet.slack.since(f.at) if f.host in p.text and any(k in p.text for k in f.back)]
    if not back:
        problems.append(f"{f.what}: no recovery message {f.back} naming {f.host} on Slack")
    elif back[0].at < f.ended:
        problems.append(f"{f.what}: recovery told at {back[0].at:%H:%M:%S}, before it ended ({f.ended:%H:%M:%S})")
    elif len(back) > 1:
        problems.append(f"{f.what}: recovery told {len(back)} times: {[p.text[:80] for p in back]}")
    return problems


def writer_mid_file(fleet: Fleet, exp_id: int, det_id: int) -> bool:
    """A writer holds the half-written file of this exposure and chip:
    `.TMQ1<night><exp_id:08d><det % 100:02d>.fits.part` on a DAQ volume of daq1."""
    suffix = f"{exp_id:08d}{det_id % 100:02d}.fits.part"
    return any(p.name.endswith(suffix) for p in (fleet.hosts["daq1"].disk / "daq").rglob(".TMQ*.fits.part"))


def test_a_killed_host_a_cut_link_a_database_restart_and_a_killed_writer_lose_nothing(fleet: Fleet) -> None:
    """store1 killed for 2 min; 20 s in, store2's link cut for 1 min; 50 s in, PostgreSQL stopped for
    the last 30 s of the cut; a few seconds in, daq:writer-01 killed -9 mid-exposure. Exposures go on."""
    resume(fleet)
    expose(fleet, "WARM", count=1)
    wait_until(lambda: not_flowed(fleet) is None or fleet.query("SELECT count(*) FROM files")[0][0] > 0, WAIT_S, 2.0)
    faults: list[Told] = []
    now = lambda: datetime.now(UTC)  # noqa: E731
    t0 = time.monotonic()
    at0 = now()
    fleet.kill("store1")
    # A long exposure for the writer to be killed in (40 frames: 20 s).
    expose(fleet, "KILL9", count=1, frames=40)
    [(kill9,)] = fleet.query("SELECT exp_id FROM exposures WHERE object = 'KILL9'")
    # daq:writer-01 writes the first chip (chips are dealt to the writers round-robin).
    wait_until(lambda: writer_mid_file(fleet, kill9, 111), WAIT_S, 0.05, "writer-01 mid-file", fleet.dump)
    at_writer = now()
    fleet.kill_program("daq1", "daq:writer-01")
    expose(fleet, "DURING", count=6)
    sleep_until(t0, 20)
    at_cut = now()
    fleet.cut("store2")
    # The database goes 30 s after the cut: the fleet watch tells a host after ~20-25 s.
    sleep_until(t0, 50)
    at_pg = now()
    fleet.pg.stop()
    sleep_until(t0, 80)
    pg_back = now()  # a fault ends when its repair begins: the repair may be seen before it returns
    fleet.pg.start()
    sleep_until(t0, 80)
    fleet.heal("store2")
    healed = now()
    sleep_until(t0, 120)
    revived = now()
    fleet.revive("store1")  # returns once supervisord answers: the watcher may see the host back before
    faults = [
        Told("store1 killed", "store1", ("host_unreachable",), ("host_back",), at0, revived),
        Told("store2's link cut", "store2", ("host_unreachable",), ("host_back",), at_cut, healed),
        Told("PostgreSQL stopped", "database", ("database_unreachable",), ("database_back",), at_pg, pg_back),
        Told(
            "daq:writer-01 killed -9",
            "daq:writer-01",
            ("process_exited",),
            ("process_running", "process_back"),
            at_writer,
            at_writer,
        ),
    ]
    fleet.wait_all_running()
    problems: list[str] = []

    def all_told() -> bool:
        problems[:] = [p for f in faults for p in told(fleet, f, (at_pg, pg_back))]
        return not problems

    try:
        wait_until(all_told, 180, 2.0, "every fault told")
    except AssertionError:
        pass
    print("faults:", [(f.what, f"{f.at:%H:%M:%S}") for f in faults])
    print("slack:", [f"{p.at:%H:%M:%S} {p.text[:160]}" for p in fleet.slack.since(at0)])
    print(
        "events:",
        fleet.query(
            "SELECT time, host, source, severity, kind, subject FROM events WHERE time >= %s"
            " AND severity <> 'info' ORDER BY id",
            at0,
        ),
    )
    audit_everywhere(fleet)
    archived_on_head(fleet)
    # The exposure the writer died in: every chip has its file row, its frames all accounted for
    # (written or counted missing), and no half-written file is left (audit_everywhere: on_disk).
    rows = fleet.query(
        "SELECT det_id, state, frames_expected, frames_written, frames_missing FROM daq_files WHERE exp_id = %s",
        kill9,
    )
    print("the exposure writer-01 died in:", rows)
    print(
        "packages by exporter (after the faults):",
        fleet.query(
            "SELECT substring(package from '-([^-]+)-[0-9]+$'), count(DISTINCT package), count(*) FROM exports"
            " WHERE package IS NOT NULL GROUP BY 1"
        ),
    )
    assert sorted(r[0] for r in rows) == CHIPS, rows
    for det, _state, expected, written, missing in rows:
        assert written + missing == expected, f"chip {det}: {written} written + {missing} missing != {expected}"
    # Nothing lost: every exposure asked for during the faults is written whole.
    during = fleet.query(
        "SELECT e.exp_id, e.state, count(d.id), coalesce(sum(d.frames_missing), 0) FROM exposures e"
        " LEFT JOIN daq_files d ON d.exp_id = e.exp_id AND d.state = 'written'"
        " WHERE e.object = 'DURING' GROUP BY e.exp_id, e.state ORDER BY e.exp_id"
    )
    whole = ("done", len(CHIPS), 0)
    assert len(during) == 6 and all(r[1:] == whole for r in during), f"exposures during the faults: {during}"
    no_fatal(fleet)
    assert not problems, "\n".join(problems) + "\n" + fleet.dump()
    assert not crashes(fleet), crashes(fleet)
