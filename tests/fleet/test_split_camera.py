"""The camera split over the README example's two DAQ hosts (daq1 reads quadrant 1, daq2 quadrant 3; 4
chips each): every chip's file written once, on its own host; daq2's readout killed -9 mid-exposure
(its chips' frames counted missing); daq2 dying mid-exposure (daq:control tells `daq_host_silent` and
records its chips lost); each time the next exposure whole. Ends with an audit of every file.

Runs on the fleet it shares with test_fleet.py (`readme_fleet`), after it. Over a minute because
daq:control's deadline for a silent host is waited out: the exposure's end + 2 x frame_timeout_s + 5 s
(45 s with the fleet's frame_timeout_s of 20 s, set for a busy machine).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import xxhash

from gozen.daq.readout import LATE_START_S
from tests.conftest import START_S, WAIT_S, tail, wait_until
from tests.fleet.harness import CHIPS, Fleet, sleep_until
from tests.fleet.test_fleet import crashes, expose, no_fatal, quiesce

DAQ_HOSTS = ("daq1", "daq2")
CLOSED = ("done", "incomplete")
EVENT_KINDS = ("frames_lost", "exposure_timeout", "daq_host_silent")  # how a chip's missing frames are told
ROW = (
    "exp_id, det_id, state, daq_host, writer, filename, path, size_bytes, checksum_xxh3, frames_expected, "
    "frames_missing"
)


@pytest.fixture
def fleet(readme_fleet: Fleet) -> Fleet:
    return readme_fleet


# -- what the tests look at ------------------------------------------------------------------------------
def requested(fleet: Fleet, obj: str, count: int = 1, frames: int = 4) -> list[int]:
    """Exposures asked of daq:control (on daq1, the daq-master) by `gozen daq expose`; their ids."""
    expose(fleet, obj, count=count, frames=frames)
    ids = [r[0] for r in fleet.query("SELECT exp_id FROM exposures WHERE object = %s ORDER BY exp_id", obj)]
    assert len(ids) == count, f"{obj}: {ids}"
    return ids


def closed(fleet: Fleet, ids: list[int], timeout_s: float = WAIT_S) -> dict[int, str]:
    """Wait until daq:control has closed every one of the exposures; their states."""

    def states() -> dict[int, str]:
        return {e: s for e, s in fleet.query("SELECT exp_id, state FROM exposures WHERE exp_id = ANY(%s)", ids)}

    def all_closed() -> bool:
        return all(s in CLOSED for s in states().values())

    wait_until(all_closed, timeout_s, 1.0, f"exposures {ids} closed", fleet.dump)
    return states()


def under_way(fleet: Fleet, exp_id: int, by_s: float) -> None:
    """Wait until the exposure has been under way for `by_s` (its frames are being read and written)."""
    wait_until(
        lambda: fleet.query(
            "SELECT 1 FROM exposures WHERE exp_id = %s AND start_at + %s < now()", exp_id, timedelta(seconds=by_s)
        ),
        WAIT_S,
        0.1,
        f"exposure {exp_id} under way",
        fleet.dump,
    )


def rows(fleet: Fleet, ids: list[int]) -> dict[tuple[int, int], dict[str, Any]]:
    names = [c.strip() for c in ROW.split(",")]
    got = fleet.query(f"SELECT {ROW} FROM daq_files WHERE exp_id = ANY(%s)", ids)
    out = {(r[0], r[1]): dict(zip(names, r, strict=True)) for r in got}
    assert len(out) == len(got), f"two rows for one chip of one exposure: {got}"
    return out


def whole(fleet: Fleet, exp_id: int) -> None:
    """The exposure is done and every chip's file written with every frame, on the chip's host."""
    cfg = fleet.cfg()
    state = closed(fleet, [exp_id])[exp_id]
    got = rows(fleet, [exp_id])
    expected = {(exp_id, d): ("written", 0, cfg.daq_host_of_chip(d)) for d in CHIPS}
    seen = {k: (r["state"], r["frames_missing"], r["daq_host"]) for k, r in got.items()}
    assert (state, seen) == ("done", expected), f"exposure {exp_id}: {state}, {seen}\n{what_became_of(fleet, exp_id)}"


def what_became_of(fleet: Fleet, exp_id: int) -> str:
    """The exposure's readout reports, the events since it was asked for, the DAQ programs' logs."""
    out = [f"--- readout reports of exposure {exp_id}"]
    out += map(str, fleet.query("SELECT * FROM readout_reports WHERE exp_id = %s ORDER BY det_id", exp_id))
    out.append("--- events since it was asked for")
    out += map(
        str,
        fleet.query(
            "SELECT time, host, source, kind, subject, message FROM events WHERE time >="
            " (SELECT requested_at FROM exposures WHERE exp_id = %s) - interval '5 s' ORDER BY id",
            exp_id,
        ),
    )
    for h in DAQ_HOSTS:
        for log in sorted((fleet.hosts[h].disk / "log").glob(f"{h}-daq-*.log")):
            out.append(f"--- {h}: {log.name}\n{tail(log, 25)}")
    return "\n".join(out) + "\n" + fleet.dump()


def told(fleet: Fleet, since: datetime, exp_id: int, kinds: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """Events of these kinds about the exposure since then: (host, source, kind, subject, message)."""
    return fleet.query(
        "SELECT host, source, kind, subject, message FROM events WHERE time >= %s AND kind = ANY(%s)"
        " AND (subject = %s OR subject LIKE %s OR data->>'exp_id' = %s) ORDER BY id",
        since - timedelta(seconds=2),
        list(kinds),
        f"exp {exp_id}",
        f"exp {exp_id} det %",
        str(exp_id),
    )


def on_disk(fleet: Fleet, host: str, path: str) -> Path:
    return fleet.hosts[host].disk / Path(path).relative_to(fleet.data_dir)


def xxh3(path: Path) -> str:
    return xxhash.xxh3_64(path.read_bytes()).hexdigest()


@contextmanager
def janitors_stopped(fleet: Fleet) -> Iterator[None]:
    """The DAQ hosts' janitors stopped: the DAQ copies stay on their disks while the test looks."""
    for h in DAQ_HOSTS:
        fleet.act(h, "stop", "transfer:janitor")
    try:
        yield
    finally:
        for h in DAQ_HOSTS:
            fleet.act(h, "start", "transfer:janitor")


def readout_back(fleet: Fleet, host: str, since: datetime) -> None:
    """The host's daq:readout-01 RUNNING again and looking for armed exposures (its heartbeat since
    then): an exposure armed before would find it still starting, and be read late or not at all."""
    key = f"service.{host}.daq:readout-01.alive_at"

    def back() -> bool:
        running = fleet.programs(host)["daq:readout-01"][0] == "RUNNING"
        return running and bool(fleet.query("SELECT 1 FROM status WHERE key = %s AND time > %s", key, since))

    wait_until(back, START_S, 1.0, f"{host}:daq:readout-01 back", fleet.dump)


# -- the tests -------------------------------------------------------------------------------------------
def test_each_chip_is_written_once_on_its_own_daq_host(fleet: Fleet) -> None:
    started = time.monotonic()
    quiesce(fleet)  # no exposure of the demo survey in between
    cfg = fleet.cfg()
    assert cfg.daq_control_host() == "daq1"
    with janitors_stopped(fleet):
        quiet = time.monotonic()
        ids = requested(fleet, "SPLIT", count=5)
        assert closed(fleet, ids) == dict.fromkeys(ids, "done")
        print(f"quiesced in {quiet - started:.0f} s, 5 exposures closed {time.monotonic() - quiet:.0f} s later")
        got = rows(fleet, ids)
        assert sorted(got) == [(e, d) for e in ids for d in CHIPS]
        for (exp_id, det), r in got.items():
            host = cfg.daq_host_of_chip(det)
            assert host == ("daq1" if det < 300 else "daq2")
            assert (r["state"], r["daq_host"], r["frames_missing"]) == ("written", host, 0), r
            here = on_disk(fleet, host, r["path"])
            assert here.is_file() and here.stat().st_size == r["size_bytes"], f"{exp_id}/{det}: not on {host}"
            assert xxh3(here) == r["checksum_xxh3"], f"{here}: checksum differs from its row"
            other = on_disk(fleet, "daq2" if host == "daq1" else "daq1", r["path"])
            assert not other.exists(), f"{exp_id}/{det}: also on the other DAQ host"
    # One readout report per chip and exposure, from the chip's own host.
    reports = fleet.query(
        "SELECT daq_host, readout, count(*) FROM readout_reports WHERE exp_id = ANY(%s) GROUP BY 1, 2 ORDER BY 1",
        ids,
    )
    assert reports == [("daq1", "daq:readout-01", 20), ("daq2", "daq:readout-01", 20)], reports


def test_a_readout_killed_mid_exposure_counts_its_chips_frames_missing_and_the_next_exposure_is_whole(
    fleet: Fleet,
) -> None:
    """daq2's readout hangs (SIGSTOP) for longer than the frames wait in the camera (LATE_START_S), then
    is killed -9; supervisord starts it again, and it reads the rest of the exposure. (Killed without
    the hang, it may be back within LATE_START_S and read every frame: then nothing is missing.)"""
    t0 = datetime.now(UTC)
    [exp_id] = requested(fleet, "RKILL", frames=30)  # 15 s: the restarted readout is back before the end
    under_way(fleet, exp_id, by_s=1.5)
    _, pid = fleet.programs("daq2")["daq:readout-01"]
    assert pid
    os.kill(pid, signal.SIGSTOP)
    sleep_until(time.monotonic(), LATE_START_S + 1)
    killed_at = datetime.now(UTC)
    fleet.kill_program("daq2", "daq:readout-01")
    assert closed(fleet, [exp_id])[exp_id] in CLOSED
    got = rows(fleet, [exp_id])
    print("the exposure daq2's readout died in:", sorted(got.values(), key=lambda r: r["det_id"]))
    assert sorted(d for _, d in got) == CHIPS
    missing = {d: r["frames_missing"] for (_, d), r in got.items()}
    assert all(missing[d] == 0 for d in CHIPS[:4]), f"daq1's chips: {missing}"
    assert all(missing[d] > 0 for d in CHIPS[4:]), f"daq2's chips lost no frame: {missing}"
    events = told(fleet, t0, exp_id, EVENT_KINDS)
    print("told:", events)
    about_daq2 = [e for e in events if "daq2" in (e[0], e[3])]
    assert about_daq2, f"no event from or about daq2: {events}"
    readout_back(fleet, "daq2", killed_at)
    [after] = requested(fleet, "AFTER-RKILL")
    whole(fleet, after)


def test_a_daq_host_dying_mid_exposure_is_told_silent_and_its_chips_recorded_lost(fleet: Fleet) -> None:
    """daq2 dies (SIGKILL to its supervisord and every program) and is started again once the exposure
    is over, well before daq:control's deadline: no file of the exposure comes from it (its writers
    remove what they had begun; its readout, if back in time, reports the exposure missed). Stopped
    gracefully instead, its readout would send the writers an end and they would close its chips'
    files with the frames not read flagged missing: not a silent host."""
    t0 = datetime.now(UTC)
    [exp_id] = requested(fleet, "HALT", frames=10)  # 5 s
    under_way(fleet, exp_id, by_s=1.5)
    fleet.kill("daq2")
    under_way(fleet, exp_id, by_s=5.5)  # over: the host back now cannot read the rest of it
    revived_at = datetime.now(UTC)
    fleet.revive("daq2")
    # The deadline is 45 s after the exposure's end.
    assert closed(fleet, [exp_id], WAIT_S + 60) == {exp_id: "incomplete"}
    got = rows(fleet, [exp_id])
    assert sorted(d for _, d in got) == CHIPS
    for (_, det), r in got.items():
        if det in CHIPS[:4]:
            assert (r["state"], r["daq_host"], r["frames_missing"]) == ("written", "daq1", 0), r
        else:
            lost = (r["state"], r["daq_host"], r["writer"], r["path"], r["frames_missing"])
            assert lost == ("lost", "daq2", "daq:control", None, 10), r
    [(missing,)] = fleet.query("SELECT sum(frames_missing) FROM daq_files WHERE exp_id = %s", exp_id)
    assert missing == 40  # what `gozen daq stats` counts
    # Told just after the exposure is closed (the event follows the transaction closing it).
    wait_until(lambda: told(fleet, t0, exp_id, ("daq_host_silent",)), WAIT_S, 0.5, "daq_host_silent", fleet.dump)
    silent = told(fleet, t0, exp_id, ("daq_host_silent",))
    assert len(silent) == 1, silent
    [(host, source, _, subject, message)] = silent
    assert (host, source, subject) == ("daq1", "daq:control", "daq2")
    assert f"chips {CHIPS[4:]} of exposure {exp_id}" in message and "40 frames counted missing" in message, message
    fleet.wait_all_running()
    readout_back(fleet, "daq2", revived_at)  # RUNNING is 2 s after its start: it may still be importing
    [after] = requested(fleet, "AFTER-HALT")
    whole(fleet, after)


def test_audit_every_file_of_the_split_camera(fleet: Fleet) -> None:
    """Counts, states and checksums of every exposure above: one row per chip, on the chip's host; each
    written file on its DAQ host's disk (or, freed by the janitor, in verified copies on the storage
    hosts' disks) with its recorded checksum; each lost row with no file anywhere."""
    cfg = fleet.cfg()
    states = dict(fleet.query("SELECT object, array_agg(state ORDER BY exp_id) FROM exposures GROUP BY object"))
    assert states["SPLIT"] == ["done"] * 5 and states["AFTER-RKILL"] == states["AFTER-HALT"] == ["done"]
    assert states["RKILL"][0] in CLOSED and states["HALT"] == ["incomplete"]
    ids = [r[0] for r in fleet.query("SELECT exp_id FROM exposures WHERE object = ANY(%s)", list(states))]
    assert not fleet.query("SELECT exp_id FROM exposures WHERE state IN ('queued', 'armed')")
    got = rows(fleet, ids)
    assert sorted(got) == sorted((e, d) for e in ids for d in CHIPS)
    copies = replicas_by_file(fleet)
    for r in got.values():
        assert r["daq_host"] == cfg.daq_host_of_chip(r["det_id"]), r
        if r["state"] == "lost":
            assert r["path"] is None and r["frames_missing"] == r["frames_expected"], r
            for h in DAQ_HOSTS:
                assert not list(fleet.hosts[h].disk.rglob(f"*{r['filename']}*")), f"{r['filename']} on {h}"
            continue
        here = on_disk(fleet, r["daq_host"], r["path"])
        if here.exists():
            assert xxh3(here) == r["checksum_xxh3"], f"{here}: checksum differs from its row"
            continue
        proven = [on_disk(fleet, host, path) for host, path in copies.get(here.name, [])]
        assert len(proven) == 2, f"{here.name}: freed from {r['daq_host']} with copies {proven}"
        assert all(xxh3(p) == r["checksum_xxh3"] for p in proven), f"{here.name}: a copy differs"
    [(first,)] = fleet.query("SELECT min(requested_at) FROM exposures WHERE exp_id = ANY(%s)", ids)
    assert not crashes(fleet, first), crashes(fleet, first)
    no_fatal(fleet)


def replicas_by_file(fleet: Fleet) -> dict[str, list[tuple[str, str]]]:
    """filename -> (storage host, path) of its verified copies."""
    node_host = {n.name: n.host or "" for n in fleet.cfg().storage_nodes}
    out: dict[str, list[tuple[str, str]]] = {}
    for name, node, path in fleet.query(
        "SELECT f.filename, r.node, r.path FROM files f JOIN replicas r ON r.file_id = f.id WHERE r.state = 'verified'"
    ):
        out.setdefault(name, []).append((node_host[node], path))
    return out
