"""A fleet of gozen hosts on this one machine, each as separate as one machine allows.

The config is the README's "Several hosts" example (the ```yaml block after `<!-- fleet-example -->`),
read from README.md and used as it is, plus only keys it does not set (OVERLAY: a small camera, short
periods, simulator ports of their own): `gozen.yaml` holds every key and value of the example unchanged.

Each host:
- has its own loopback address (127.0.0.11 daq1, .15 daq2, .12 store1, .13 store2, .14 head, from the example);
- has its own disk: a tmpfs mounted at `<tmp>/hosts/<name>` (its own free space, as on real machines);
- runs `gozen up --host NAME` in its own mount namespace (`unshare --mount --propagation private`), in
  which its disk is bound onto the data dir and a tmpfs covers `<tmp>/hosts/`, so no host can read
  another's files. Every `gozen` command the tests give a host runs in such a namespace too.

The data dir: the example's `data_dir: /var/lib/gozen` is the same absolute path on every host. Here it is
`<tmp>/data` instead, given with GOZEN_DATA_DIR (which the config honours on every host, as `gozen up`
would be told on real machines): binding onto /var/lib/gozen would need that directory on the machine
running the tests, shared with anything else there. In the root namespace `<tmp>/data` stays an empty
directory: the test process reads a host's files through `<tmp>/hosts/<name>`.

Secrets come from the environment as the example says: GOZEN_DATABASE_URL (a private PostgreSQL cluster,
tests/private_pg.py, which the tests stop and start; the shared server at 5432 is never touched) and
GOZEN_SLACK_WEBHOOK (a fake Slack on 127.0.0.1 that records what it receives, with the time).

What one machine cannot separate: the network. A cut link (nftables, table `gozen_fleet_test`) drops
every packet to or from the host's address, so nothing reaches its supervisord or rsync daemon and it
reaches no other host; its own connections to services on 127.0.0.1 (the database, Slack) leave from
127.0.0.1 and still work.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import psycopg
import yaml

from gozen.config import Config, load_config
from gozen.supervise.client import Action, HostStatus, SupervisorClient
from gozen.supervise.programs import programs_for
from tests.conftest import START_S, WAIT_S, free_port, tail, wait_until
from tests.private_pg import PrivatePostgres

README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLE_MARK = "<!-- fleet-example -->"
NFT_TABLE = "gozen_fleet_test"
RPC_TIMEOUT_S = 10.0  # one XML-RPC call from the tests (a cut host: this long, then "unreachable")
PASSWORD_FILES = ("run/supervisor-password", "run/rsync-password")  # copied to every host, as the README says
HOST_DISK = "4g"  # each host's tmpfs: a limit, not memory taken
CHIPS = [111, 112, 113, 114, 311, 312, 313, 314]  # the overlay's camera: quadrants 1 and 3, 4 chips each


def readme_example() -> str:
    """The ```yaml block that follows `<!-- fleet-example -->` in README.md, verbatim."""
    text = README.read_text()
    at = text.find(EXAMPLE_MARK)
    assert at >= 0, f"README.md has no {EXAMPLE_MARK} line (the fleet example)"
    rest = text[at + len(EXAMPLE_MARK) :]
    start = rest.find("```yaml\n")
    assert start >= 0 and rest[:start].strip() == "", f"no ```yaml block right after {EXAMPLE_MARK} in README.md"
    body = rest[start + len("```yaml\n") :]
    end = body.find("\n```")
    assert end >= 0, "the fleet example's ```yaml block is not closed"
    return body[: end + 1]


def overlay(sim_host: str) -> dict[str, Any]:
    """Keys the example does not set, for a test that runs in minutes on a shared 2-core machine.

    A small camera (8 chips of 200 x 100 px, files of ~200 kB: 4 in quadrant 1, read on daq1, and 4 in
    quadrant 3, read on daq2), short periods, exports after 5 s; the janitor's high-water mark at ~0 so
    it frees every DAQ file whose copies are proven, at once (the example's 1 GiB volumes would otherwise
    never fill); four copy agents on each DAQ host, racing (the race test); the simulated devices on the
    monitors host's address on ports of their own."""
    alpaca = f"{sim_host}:{free_port()}"
    return {
        "camera": {"chips": CHIPS, "width_px": 200, "height_px": 100, "frames_per_exposure": 4},
        # A lead time and frame timeout for a machine with both cores busy (see tests/outage/observatory.py).
        "daq": {"reserve_bytes": 0, "start_delay_s": 3.0, "frame_timeout_s": 20},
        "transfer": {
            "pop_workers": 4,
            "node_reserve_bytes": 0,
            "poll_s": 0.5,
            "scan_every_s": 5,
            "retry_base_s": 1,
            "retry_max_s": 5,
            "janitor_every_s": 3,
            "daq_high_water_pct": 1e-6,
            "daq_low_water_pct": 1e-9,
            "retention_every_s": 10,
            "rsync_timeout_s": 20,
        },
        "archive": {"min_age_s": 3, "every_s": 3},
        "monitors": {
            "every_s": 3,
            "df_every_s": 5,
            "start_grace_s": 20,
            "telescope": {"address": alpaca},
            "weather": {"address": alpaca},
            "safety_monitor": {"address": alpaca},
            "simulator": {"dome_shutter_s": 3},
            "gpsd": {"host": sim_host, "port": free_port()},
        },
        # An outage with no safety news past start_grace_s closes the dome: it opens again by itself.
        "queue": {"poll_s": 0.5, "auto_open": True, "reopen_after_safe_s": 0},
        "couriers": {"send_every_s": 0.5, "simulator": {"enabled": False}},
    }


def merged(example: dict[str, Any], extra: dict[str, Any], path: str = "") -> dict[str, Any]:
    """`example` with `extra`'s keys added; a key the example sets is never changed (AssertionError)."""
    out = copy.deepcopy(example)
    for k, v in extra.items():
        key = f"{path}.{k}" if path else k
        if k not in out:
            out[k] = copy.deepcopy(v)
        elif isinstance(out[k], dict) and isinstance(v, dict):
            out[k] = merged(out[k], v, key)
        else:
            raise AssertionError(f"the test would change the README example's {key}")
    return out


# -- a fake Slack ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Posted:
    at: datetime
    text: str


class Slack:
    """An incoming webhook on 127.0.0.1 recording every post (its text, when it came)."""

    def __init__(self) -> None:
        posts: list[Posted] = []
        self.posts = posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    payload = json.loads(body)
                    text = payload.get("text") or json.dumps(payload)
                except (ValueError, AttributeError):
                    text = body.decode(errors="replace")
                posts.append(Posted(datetime.now(UTC), str(text)))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/services/T0/B0/fleet"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def since(self, t: datetime) -> list[Posted]:
        return [p for p in list(self.posts) if p.at >= t]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- the fleet --------------------------------------------------------------------------------------
# Run in the host's new mount namespace: its disk onto the data dir, then every host's disk hidden.
NAMESPACE_SH = (
    'set -e; disk=$1; data=$2; hosts=$3; shift 3; mount --bind "$disk" "$data"; '
    'mount -t tmpfs -o size=1m,mode=0755 fleet-hidden "$hosts"; exec "$@"'
)


@dataclass
class Host:
    name: str
    address: str
    disk: Path  # the host's data dir as the test process sees it
    up_log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    killed: bool = False  # by the test: its `gozen up` exiting is expected


@dataclass
class Fleet:
    """The README's example fleet, each host in its own mount namespace, on a private PostgreSQL."""

    tmp: Path
    pg: PrivatePostgres
    slack: Slack
    changes: dict[str, Any] = field(default_factory=dict)  # replaced top-level keys (e.g. archive: None)
    hosts: dict[str, Host] = field(default_factory=dict)
    cut_addresses: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.data_dir = self.tmp / "data"
        self.hosts_dir = self.tmp / "hosts"
        self.config_file = self.tmp / "gozen.yaml"
        self.example_text = readme_example()
        self.example: dict[str, Any] = yaml.safe_load(self.example_text)
        names = [h["name"] for h in self.example["hosts"]]
        sim_host = next(h["address"] for h in self.example["hosts"] if "monitors" in h.get("roles", []))
        data = merged(self.example, overlay(sim_host))
        data.update(self.changes)
        self.config_data = data
        self.config_file.write_text(yaml.safe_dump(data, sort_keys=False))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for h in self.example["hosts"]:
            disk = self.hosts_dir / h["name"]
            disk.mkdir(parents=True, exist_ok=True)
            try:
                mount("-t", "tmpfs", "-o", f"size={HOST_DISK},mode=0755", f"fleet-{h['name']}", str(disk))
            except AssertionError:
                self.stop()  # the disks mounted so far
                raise
            self.hosts[h["name"]] = Host(h["name"], h["address"], disk, self.tmp / f"up-{h['name']}.log")
        assert list(self.hosts) == names
        self.env = {
            **os.environ,
            "GOZEN_DATABASE_URL": self.pg.url,
            "GOZEN_SLACK_WEBHOOK": self.slack.url,
            "GOZEN_DATA_DIR": str(self.data_dir),
            "COLUMNS": "200",
        }
        self.env.pop("GOZEN_CONFIG", None)
        self.env.pop("GOZEN_HOST", None)

    # -- the config as the test process sees it -----------------------------------------------------
    def cfg(self, host: str = "head") -> Config:
        """The config as `host` loads it, its data dir being that host's disk (for passwords, logs)."""
        with _environ({k: self.env[k] for k in ("GOZEN_DATABASE_URL", "GOZEN_SLACK_WEBHOOK")}):
            with _environ({"GOZEN_DATA_DIR": str(self.hosts[host].disk)}):
                return load_config(self.config_file)

    # -- running things on a host -------------------------------------------------------------------
    def in_namespace(self, host: str, argv: list[str]) -> list[str]:
        h = self.hosts[host]
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            NAMESPACE_SH,
            f"fleet-{host}",
            str(h.disk),
            str(self.data_dir),
            str(self.hosts_dir),
            *argv,
        ]

    def gozen_argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "gozen", "--config", str(self.config_file), *args]

    def run(self, host: str, argv: list[str], timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        """A command on `host` (in a namespace of its own, seeing what the host sees)."""
        return subprocess.run(
            self.in_namespace(host, argv),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**self.env, "GOZEN_HOST": host},
        )

    def gozen(self, host: str, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        """`gozen ARGS` on `host`, as its operator would type it there."""
        return self.run(host, self.gozen_argv(*args), timeout_s)

    def up(self, host: str) -> None:
        """`gozen up --host NAME` on the host (in the background; it becomes the host's supervisord)."""
        h = self.hosts[host]
        assert h.proc is None or h.proc.poll() is not None, f"{host} is already up"
        h.starts += 1
        with h.up_log.open("ab") as log:
            log.write(f"\n=== gozen up #{h.starts} at {datetime.now(UTC):%H:%M:%S}\n".encode())
            log.flush()
            h.proc = subprocess.Popen(
                self.in_namespace(host, self.gozen_argv("up", "--host", host)),
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**self.env, "GOZEN_HOST": host},
                start_new_session=True,
            )

    def start(self) -> None:
        """Every host up: the head first (its `gozen up` makes the database's tables and the passwords),
        the password files copied to every other host as the README says, then the others; every
        program of every host RUNNING."""
        first = "head" if "head" in self.hosts else next(iter(self.hosts))
        self.up(first)
        head = self.hosts[first]
        wait_until(
            lambda: self.check_up(first) or (head.disk / PASSWORD_FILES[0]).exists(),
            START_S,
            1.0,
            f"{first}'s `gozen up` making {PASSWORD_FILES[0]}",
            self.dump,
        )
        self.wait_answering(first)
        for name in self.hosts:
            if name != first:
                self.copy_passwords(first, name)
                self.up(name)
        self.wait_all_running()

    def copy_passwords(self, source: str, dest: str) -> None:
        for rel in PASSWORD_FILES:
            src = self.hosts[source].disk / rel
            if src.exists():
                dst = self.hosts[dest].disk / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
                dst.chmod(0o600)

    def check_up(self, host: str) -> None:
        """Fail at once if a host's `gozen up` (its supervisord) exited by itself."""
        h = self.hosts[host]
        if h.proc is not None and h.proc.poll() is not None and not h.killed:
            raise AssertionError(f"`gozen up --host {host}` exited {h.proc.returncode}:\n{tail(h.up_log, 40)}")

    def wait_answering(self, host: str) -> None:
        wait_until(
            lambda: self.check_up(host) or self.status(host).reachable,
            START_S,
            1.0,
            f"{host}'s supervisord answering",
            self.dump,
        )

    def not_running(self) -> list[str]:
        """Every program of every host that is not RUNNING (a host that does not answer: one entry), and
        every program of the registry its supervisord does not list yet (it answers before it has them)."""
        bad = []
        cfg = self.cfg()
        for name in self.hosts:
            self.check_up(name)
            st = self.status(name)
            if not st.reachable:
                bad.append(f"{name}: {st.error}")
                continue
            bad += [f"{name}:{p.full_name} {p.state}" for p in st.processes if p.state != "RUNNING"]
            listed = {p.full_name for p in st.processes}
            expected = [p.full_name for p in programs_for(cfg, cfg.host(name))]
            bad += [f"{name}:{p} not listed" for p in expected if p not in listed]
        return bad

    def wait_all_running(self, timeout_s: float = START_S) -> None:
        for name in self.hosts:
            self.wait_answering(name)
        wait_until(lambda: not self.not_running(), timeout_s, 1.0, "every program of every host RUNNING", self.dump)

    def status(self, host: str, timeout_s: float = RPC_TIMEOUT_S) -> HostStatus:
        """The host's supervisord's answer (XML-RPC, from the test process)."""
        return SupervisorClient(self.cfg().host(host), timeout_s=timeout_s).status()

    def programs(self, host: str) -> dict[str, tuple[str, int | None]]:
        st = self.status(host)
        if not st.reachable:
            raise ConnectionError(f"{host}: {st.error}")
        return {p.full_name: (p.state, p.pid) for p in st.processes}

    # -- faults -----------------------------------------------------------------------------------------
    def kill(self, host: str) -> None:
        """The host dies: SIGKILL to its supervisord and every process it started, all at once."""
        h = self.hosts[host]
        assert h.proc is not None and h.proc.poll() is None, f"{host} is not up"
        victims = self._tree(h.proc.pid)
        for p in victims:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        h.killed = True
        h.proc.wait(timeout=60)
        psutil.wait_procs(victims, timeout=60)
        left = [p for p in self._tree(h.proc.pid) if p.is_running()]
        assert not left, f"{host}: still running after SIGKILL: {left}"

    def _tree(self, pid: int) -> list[psutil.Process]:
        """The process and every descendant, and anything else in its session (programs that
        daemonised, rsync's forked children)."""
        out: dict[int, psutil.Process] = {}
        try:
            root = psutil.Process(pid)
            out[pid] = root
            out.update({c.pid: c for c in root.children(recursive=True)})
        except psutil.NoSuchProcess:
            pass
        for p in psutil.process_iter():
            try:
                if os.getsid(p.pid) == pid:
                    out[p.pid] = p
            except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
                continue
        return list(out.values())

    def revive(self, host: str) -> None:
        """`gozen up` again on a killed host, its supervisord answering."""
        h = self.hosts[host]
        h.killed = False
        self.up(host)
        self.wait_answering(host)

    def cut(self, host: str) -> None:
        """Cut the host's link: every packet to or from its address dropped."""
        self.cut_addresses.add(self.hosts[host].address)
        self._apply_cuts()

    def heal(self, host: str) -> None:
        self.cut_addresses.discard(self.hosts[host].address)
        self._apply_cuts()

    def _apply_cuts(self) -> None:
        remove_cuts()
        if not self.cut_addresses:
            return
        rules = [f"add table inet {NFT_TABLE}"]
        rules.append(f"add chain inet {NFT_TABLE} input {{ type filter hook input priority -10 ; policy accept ; }}")
        for a in sorted(self.cut_addresses):
            rules.append(f"add rule inet {NFT_TABLE} input ip saddr {a} drop")
            rules.append(f"add rule inet {NFT_TABLE} input ip daddr {a} drop")
        r = subprocess.run(["nft", "-f", "-"], input="\n".join(rules) + "\n", capture_output=True, text=True)
        assert r.returncode == 0, f"nft: {r.stderr}"

    def act(self, host: str, action: Action, program: str) -> None:
        """start/stop/restart one program of the host (XML-RPC to its supervisord, waiting for it)."""
        SupervisorClient(self.cfg().host(host), timeout_s=START_S).act(action, program)

    def kill_program(self, host: str, program: str) -> int:
        """kill -9 one program (its pid as the host's supervisord says); the pid killed."""
        state, pid = self.programs(host)[program]
        assert state == "RUNNING" and pid, f"{host}:{program} is {state}"
        os.kill(pid, signal.SIGKILL)
        return pid

    # -- the database ---------------------------------------------------------------------------------
    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return self.pg.query(sql, *params)

    # -- what went on -------------------------------------------------------------------------------
    def dump(self) -> str:
        """Every host's programs, log tails, the latest events, the outbox and what Slack got."""
        out = []
        try:
            r = self.gozen("head", "ps", timeout_s=60)
            out.append(f"--- `gozen ps` on head (exit {r.returncode})\n{r.stdout}{r.stderr}")
        except subprocess.TimeoutExpired:
            out.append("--- `gozen ps` on head: no answer within 60 s")
        for name, h in self.hosts.items():
            alive = h.proc is not None and h.proc.poll() is None
            st = self.status(name, timeout_s=3)
            out.append(
                f"--- {name} ({h.address}): gozen up {'running' if alive else 'not running'}; "
                f"supervisord {'answers' if st.reachable else st.error}"
            )
            out += [
                f"  {p.full_name:28} {p.state:9} pid={p.pid} exit={p.exitstatus} {p.spawnerr or p.description}"
                for p in st.processes
            ]
            out.append(f"--- {name}: gozen up output (tail)\n{tail(h.up_log, 10)}")
            for log in sorted((h.disk / "log").glob("*.log")):
                if log.stat().st_size:
                    out.append(f"--- {name}: {log.name} (tail)\n{tail(log, 8)}")
        for title, sql in (
            (
                "latest events",
                "SELECT time, host, source, severity, kind, subject, message FROM events ORDER BY id DESC LIMIT 40",
            ),
            ("outbox", "SELECT created_at, kind, state, attempts, text FROM outbox ORDER BY id DESC LIMIT 20"),
            ("replicas by state", "SELECT node, state, count(*) FROM replicas GROUP BY node, state ORDER BY 1, 2"),
            ("exports by state", "SELECT state, count(*) FROM exports GROUP BY state"),
        ):
            try:
                rows = self.query(sql)
                out.append(f"--- {title}\n" + "\n".join("  " + " | ".join(map(str, r)) for r in reversed(rows)))
            except psycopg.Error as err:
                out.append(f"--- {title}: {err}")
        out.append(
            "--- Slack received (last 15)\n"
            + "\n".join(f"  {p.at:%H:%M:%S} {p.text[:200]}" for p in self.slack.posts[-15:])
        )
        if self.cut_addresses:
            out.append(f"--- links cut: {sorted(self.cut_addresses)}")
        return "\n".join(out)

    def stop(self) -> None:
        """Every host down (SIGTERM: supervisord stops its programs), its disk unmounted; links healed."""
        self.cut_addresses.clear()
        remove_cuts()
        live = [h for h in self.hosts.values() if h.proc is not None and h.proc.poll() is None]
        for h in live:
            h.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        for h in live:
            assert h.proc is not None
            try:
                h.proc.wait(timeout=START_S)
            except subprocess.TimeoutExpired:
                for p in self._tree(h.proc.pid):
                    try:
                        p.send_signal(signal.SIGKILL)
                    except psutil.NoSuchProcess:
                        pass
                h.proc.wait(timeout=30)
        for h in self.hosts.values():
            subprocess.run(["umount", "-l", str(h.disk)], check=False, capture_output=True)


def mount(*args: str) -> None:
    r = subprocess.run(["mount", *args], capture_output=True, text=True)
    assert r.returncode == 0, f"mount {' '.join(args)}: {r.stderr}"


def remove_cuts() -> None:
    """No nft table of ours left (also after a run that died)."""
    subprocess.run(["nft", "delete", "table", "inet", NFT_TABLE], capture_output=True, check=False)


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def since(t: datetime) -> float:
    return (datetime.now(UTC) - t).total_seconds()


def sleep_until(t0: float, offset_s: float) -> None:
    """Wait until `offset_s` after monotonic `t0`: the fault schedule (the passing of time is what
    is tested there, so a sleep)."""
    left = t0 + offset_s - time.monotonic()
    if left > 0:
        time.sleep(left)


Predicate = Callable[[], Any]
__all__ = ["WAIT_S", "Fleet", "Predicate", "Slack", "readme_example"]
