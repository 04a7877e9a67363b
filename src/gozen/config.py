"""The observatory's one config: the `gozen.yaml` schema and its built-in simulated default.

Every field carries a description; `gozen config show` prints the effective tree and
`gozen config check FILE` names the key path of anything wrong.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from gozen.addresses import host_port_problem, host_problem
from gozen.config_secrets import SecretError, SecretFiles, expand_env, masked, read_secret_files
from gozen.yamltext import YamlTextError, load_yaml_text

CONFIG_ENV = "GOZEN_CONFIG"
CONFIG_MAX_BYTES = 4_000_000
DATA_DIR_ENV = "GOZEN_DATA_DIR"

Role = Literal["web", "daq", "daq-master", "buffer", "storage", "archive", "queue", "monitors", "couriers"]
ALL_ROLES: tuple[Role, ...] = (
    "web",
    "daq",
    "daq-master",
    "buffer",
    "storage",
    "archive",
    "queue",
    "monitors",
    "couriers",
)
DEFAULT_ROLES: tuple[Role, ...] = tuple(r for r in ALL_ROLES if r != "daq-master")

# The alert feeds gozen reads, each by a `courier:<feed>` program (couriers.<feed> in gozen.yaml).
FeedName = Literal["cneos", "gaia", "mpec", "maxi"]
FEEDS: tuple[FeedName, ...] = ("cneos", "gaia", "mpec", "maxi")

# A secret field: `KEY_file: PATH` may give it, `gozen config show` masks it ("url": only the password in it).
SECRET: dict[str, Any] = {"secret": "value"}
SECRET_URL: dict[str, Any] = {"secret": "url"}
RSYNC_USER = "gozen"  # the one user of gozen's rsync daemons (storage:rsyncd)

# Chips of one Tomo-e Gozen quadrant: columns 1..4 hold 6, 6, 5 and 4 chips.
CHIPS_PER_COLUMN = (6, 6, 5, 4)


class ConfigError(Exception):
    """A config file that cannot be used; the message names the key path and why."""


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _known_timezone(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"not an IANA time zone name (e.g. Asia/Tokyo, UTC), got {v!r}") from None
    return v


class Site(Model):
    name: str = Field("Kiso Observatory (simulated)", description="Observatory name.")
    lat_deg: float = Field(35.797222, ge=-90, le=90, description="Geodetic latitude, degrees north.")
    lon_deg: float = Field(137.625417, ge=-180, le=360, description="Longitude, degrees east.")
    height_m: float = Field(1132.0, description="Height above sea level, metres.")
    mpc_code: str = Field("381", description="Minor Planet Center observatory code.")
    timezone: str = Field(
        "Asia/Tokyo",
        description="The site's local time zone (IANA name): pages show times in UTC with local time beside "
        "them, and a night is named by the local date of its evening.",
    )
    horizon: tuple[tuple[float, float], ...] = Field(
        (),
        description="Horizon mask: [azimuth deg (N=0, E=90), lowest usable altitude deg] points, interpolated "
        "linearly in azimuth around the circle (trees, buildings, the dome's reach); empty: no mask. Recipes "
        "are never scheduled below it, whatever their own min_alt_deg.",
    )

    _timezone_is_known = field_validator("timezone")(_known_timezone)

    @field_validator("horizon")
    @classmethod
    def _horizon_points(cls, v: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        for i, (az, alt) in enumerate(v):
            if not (0.0 <= az < 360.0):
                raise ValueError(f"[{i}]: azimuth must be in [0, 360), got {az:g}")
            if not (-10.0 <= alt <= 90.0):
                raise ValueError(f"[{i}]: altitude must be in [-10, 90], got {alt:g}")
        azs = [az for az, _ in v]
        if len(set(azs)) != len(azs):
            raise ValueError("two points at the same azimuth")
        return tuple(sorted(v))


class SupervisorEndpoint(Model):
    address: str | None = Field(
        None,
        description="Address supervisord listens on and is reached at (default: the host's address). "
        "Firewall the port: only gozen's hosts may reach it.",
    )
    port: int = Field(9001, gt=0, lt=65536, description="supervisord inet_http_server port.")
    username: str = Field(
        "gozen", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$", description="supervisord XML-RPC user."
    )
    password: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="supervisord XML-RPC password (printable ASCII; `${ENV_VAR}` works). Default: the install's "
        "generated password in password_file.",
        json_schema_extra=SECRET,
    )
    password_file: Path | None = Field(
        None,
        description="File holding the password when `password` is not given (relative: under data_dir). "
        "Default: run/supervisor-password, made (0600) by the first `gozen up`; copy it to every host.",
    )
    user: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$",
        description="Unix user supervisord switches to when started as root (default: it stays who started it).",
    )

    @field_validator("address")
    @classmethod
    def _address_is_a_host(cls, v: str | None) -> str | None:
        why = None if v is None else host_problem(v, ipv6=False)
        if why:
            raise ValueError(why)
        return v

    @field_validator("password")
    @classmethod
    def _password_fits_supervisord_conf(cls, v: str | None) -> str | None:
        if v is not None:
            why = supervisor_password_problem(v)
            if why:
                raise ValueError(why)
        return v


def supervisor_password_problem(text: str) -> str | None:
    """Why `text` cannot be a supervisord password written into supervisord.conf (None: it can)."""
    if any(not (" " <= c <= "~") for c in text):
        return "only printable ASCII characters (no line breaks, tabs or control characters)"
    if text != text.strip():
        return "no spaces at the start or end (supervisord.conf drops them)"
    if re.search(r"\s[;#]", text):
        return "no space before ';' or '#' (supervisord.conf reads the rest as a comment)"
    if text.startswith("{SHA}"):
        return "must not start with {SHA} (supervisord would take it for a hash)"
    return None


class ExtraProgram(Model):
    """A program that is not gozen's but runs under the same supervisord (e.g. metabase)."""

    group: str = Field(..., pattern=r"^[A-Za-z0-9_-]+$", description="supervisord group, e.g. bi.")
    name: str = Field(..., pattern=r"^[A-Za-z0-9_-]+$", description="Program name within the group.")
    command: str = Field(..., min_length=1, description="Command line, run by supervisord.")
    autostart: bool = Field(True, description="Start with supervisord.")
    autorestart: bool = Field(True, description="Restart when it exits.")
    startsecs: int = Field(1, ge=0, description="Seconds it must stay up to count as started.")

    @field_validator("command")
    @classmethod
    def _command_is_one_line_of_words(cls, v: str) -> str:
        if any(c < " " or c == "\x7f" for c in v):
            raise ValueError("one line without control characters (supervisord.conf holds it)")
        try:
            shlex.split(v)
        except ValueError as err:
            raise ValueError(f"not a command line: {err}") from None
        return v


class Host(Model):
    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="Host name as shown on the pages.")
    address: str = Field("127.0.0.1", description="The host's network address (IPv4 or name); see supervisor.address.")
    roles: list[Role] = Field(
        default_factory=lambda: list(DEFAULT_ROLES),
        description="What runs here (default: every role but daq-master; daq:control then runs on the first DAQ host).",
    )
    supervisor: SupervisorEndpoint = Field(
        default_factory=SupervisorEndpoint, description="Its supervisord's XML-RPC endpoint."
    )
    programs: list[ExtraProgram] = Field(default_factory=list, description="Other programs supervised here.")
    rsync_port: int | None = Field(
        None,
        gt=0,
        lt=65536,
        description="gozen runs an rsync daemon (storage:rsyncd) on address:rsync_port serving this host's storage "
        "nodes, its DAQ volumes (read-only, for buffer hosts) and the archive directory if it holds it.",
    )
    chips: list[int | str] | None = Field(
        None,
        description="On a host with role daq: the chips its readouts read, as detector ids (111) or quadrants "
        "(Q1..Q4: the camera.chips in it). Several DAQ hosts share camera.chips between them; a lone one reads all.",
    )

    @field_validator("chips")
    @classmethod
    def _chips_are_ids_or_quadrants(cls, v: list[int | str] | None) -> list[int | str] | None:
        for c in v or []:
            if isinstance(c, str) and c not in QUADRANT_NAMES:
                raise ValueError(f"{c!r}: a detector id (e.g. 111) or a quadrant ({', '.join(QUADRANT_NAMES)})")
        return v

    @field_validator("address")
    @classmethod
    def _address_is_a_host(cls, v: str) -> str:
        why = host_problem(v, ipv6=False)
        if why:
            raise ValueError(why)
        return v

    @property
    def supervisor_bind(self) -> str:
        """Where this host's supervisord listens: supervisor.address, else the host's address."""
        return self.supervisor.address or self.address


QUADRANT_NAMES = ("Q1", "Q2", "Q3", "Q4")


def _expand_chips(chips: list[int | str], camera: list[int]) -> list[int]:
    """Detector ids, with quadrant names (Q1..Q4) replaced by the camera's chips in that quadrant."""
    out: list[int] = []
    for c in chips:
        out.extend([d for d in camera if d // 100 == int(c[1])] if isinstance(c, str) else [c])
    return out


def tomoe_chip_ids(quadrants: tuple[int, ...] = (1, 2, 3, 4)) -> list[int]:
    """Detector ids by the Tomo-e scheme: quadrant*100 + column*10 + row."""
    return [
        q * 100 + col * 10 + row
        for q in quadrants
        for col, rows in enumerate(CHIPS_PER_COLUMN, start=1)
        for row in range(1, rows + 1)
    ]


class FrameFault(Model):
    det_id: int = Field(..., description="Detector the fault hits.")
    frame: int = Field(..., ge=0, description="Frame index within every exposure.")


class CameraFaults(Model):
    """Faults the simulated camera injects, to prove they are counted and flagged."""

    missed: list[FrameFault] = Field(default_factory=list, description="Frames the camera never delivers.")
    corrupted: list[FrameFault] = Field(default_factory=list, description="Frames delivered damaged (link CRC error).")
    unrecognised: list[int] = Field(default_factory=list, description="Chips that do not answer at start.")
    missed_rate: float = Field(0.0, ge=0, le=1, description="Chance that any frame is missed.")
    corrupted_rate: float = Field(0.0, ge=0, le=1, description="Chance that any frame is damaged.")


class AlpacaServer(Model):
    address: str = Field(
        "127.0.0.1:11111", description="host:port of the ASCOM Alpaca server (the simulator's by default)."
    )

    @field_validator("address")
    @classmethod
    def _address_is_host_port(cls, v: str) -> str:
        why = host_port_problem(v)
        if why:
            raise ValueError(why)
        return v


class CameraAlpaca(AlpacaServer):
    """An ASCOM Alpaca camera server: one Alpaca Camera device per chip."""

    devices: dict[int, int] | None = Field(
        None,
        description="Detector id -> Alpaca camera device number (default: camera.chips in order, devices 0, 1, ...).",
    )
    timeout_s: float = Field(10.0, gt=0, description="HTTP timeout of one Alpaca request.")


class Camera(Model):
    driver: Literal["simulator", "alpaca"] = Field(
        "simulator",
        description="Camera driver: simulator (the built-in Tomo-e Gozen camera), or alpaca (ASCOM Alpaca cameras, "
        "one device per chip, at camera.alpaca).",
    )
    readout: Literal["light", "full"] = Field(
        "light",
        description="light: the width_px x height_px light-sensitive pixels; full: the whole 2160 x 1200 readout "
        "with the reference (optical black) and overscan regions (DATASEC/BIASSEC in each header).",
    )
    alpaca: CameraAlpaca = Field(default_factory=CameraAlpaca, description="Where the Alpaca cameras are.")
    chips: list[int] = Field(
        default_factory=lambda: [111, 112, 113, 114],
        min_length=1,
        description="Detector ids (quadrant*100 + column*10 + row).",
    )
    width_px: int = Field(2000, gt=0, description="Light-sensitive pixels per row.")
    height_px: int = Field(1128, gt=0, description="Light-sensitive rows.")
    fps: float = Field(2.0, gt=0, le=100, description="Frames per second.")
    frames_per_exposure: int = Field(12, gt=0, description="Frames in one exposure (NAXIS3).")
    faults: CameraFaults = Field(default_factory=CameraFaults, description="Simulated faults (simulator only).")

    @field_validator("chips")
    @classmethod
    def _chip_ids_follow_tomoe_scheme(cls, chips: list[int]) -> list[int]:
        valid = set(tomoe_chip_ids())
        bad = [c for c in chips if c not in valid]
        if bad:
            raise ValueError(f"not Tomo-e detector ids (quadrant*100+column*10+row): {bad}")
        if len(set(chips)) != len(chips):
            raise ValueError("chip ids repeat")
        return chips

    @model_validator(mode="after")
    def _full_readout_is_tomoe_geometry(self) -> Camera:
        if self.readout == "full" and (self.width_px, self.height_px) != (2000, 1128):
            raise ValueError(
                "readout: full is Tomo-e Gozen's 2160 x 1200 readout around 2000 x 1128 light-sensitive pixels; "
                f"width_px x height_px is {self.width_px} x {self.height_px} (use readout: light)"
            )
        return self


class QuickLook(Model):
    """daq:quicklook: a binned picture and sky statistics of each chip's first frame, off the writers' path."""

    enabled: bool = Field(True, description="Run daq:quicklook on every DAQ host.")
    binning: int = Field(8, ge=1, le=64, description="Pixels binned (mean) into one, on each axis.")
    stars: bool = Field(True, description="Count stars and measure their FWHM (sep) on each chip's first frame.")
    max_behind: int = Field(
        3,
        ge=1,
        description="More exposures than this waiting: the older ones are skipped (a quick look is of now).",
    )
    every_s: float = Field(
        60.0,
        ge=0,
        description="Look at most one exposure this often (0: every one); the rest are skipped. A look is "
        "~30 kB per chip (zscaled sky noise does not compress): ~2.8 MB per 84-chip exposure in the database.",
    )
    keep_days: float = Field(2.0, gt=0, description="Quick-look pictures older than this are dropped.")


class Daq(Model):
    readouts: int = Field(1, ge=1, le=64, description="daq:readout-NN programs; chips are split evenly.")
    writers: int = Field(2, ge=1, le=64, description="daq:writer-NN programs; chips are dealt round-robin.")
    readout_cpus: list[int] | None = Field(None, description="CPUs for readouts (default: CPU 0).")
    writer_cpus: list[int] | None = Field(None, description="CPUs for writers (default: the other CPUs).")
    ring_seconds: float = Field(2.0, gt=0, le=60, description="Frames each ring holds, in seconds of readout.")
    fsync: Literal["none", "file"] = Field("file", description="fsync each file before it gets its final name.")
    reserve_bytes: int = Field(256 * 2**20, ge=0, description="Free space a volume keeps; below it, skipped.")
    start_delay_s: float = Field(0.5, ge=0, description="Arming lead time before an exposure's first frame.")
    frame_timeout_s: float = Field(5.0, gt=0, description="Wait past an exposure's end before closing it incomplete.")
    gps_jitter_s: float = Field(0.0002, ge=0, description="Simulated GPS time-stamp scatter (about 0.2 ms).")
    quicklook: QuickLook = Field(default_factory=QuickLook, description="Quick-look pictures and sky statistics.")

    @field_validator("readout_cpus", "writer_cpus")
    @classmethod
    def _cpus_are_not_negative(cls, cpus: list[int] | None) -> list[int] | None:
        bad = [c for c in cpus or [] if c < 0]
        if bad:
            raise ValueError(f"CPU numbers count from 0, got {bad}")
        return cpus


class Transfer(Model):
    replication: int = Field(1, ge=1, le=5, description="Verified storage copies each file needs besides the DAQ's.")
    pop_workers: int = Field(2, ge=1, le=32, description="transfer:pop-NN programs copying files.")
    node_reserve_bytes: int = Field(
        256 * 2**20, ge=0, description="Free space a storage node keeps; below it, skipped."
    )
    daq_high_water_pct: float = Field(80.0, gt=0, le=100, description="The janitor frees a DAQ volume above this use.")
    daq_low_water_pct: float = Field(70.0, gt=0, le=100, description="...down to this use.")
    lease_s: float = Field(
        600.0, gt=0, description="A copy claimed longer ago than this is taken over (its agent died)."
    )
    max_attempts: int = Field(
        5,
        ge=1,
        description="Tries with no usable source (gone, or not matching its checksum) before a copy is marked "
        "failed; a node that is down, read-only or full is waited for without limit.",
    )
    retry_base_s: float = Field(2.0, gt=0, description="First retry delay; doubles with each attempt.")
    retry_max_s: float = Field(
        60.0, gt=0, description="Longest retry delay: a copy waits for its node this long between tries, for ever."
    )
    poll_s: float = Field(1.0, gt=0, description="How often idle agents look for work.")
    scan_every_s: float = Field(60.0, gt=0, description="How often push scans DAQ volumes for unregistered files.")
    janitor_requires_archive: bool = Field(
        False, description="The janitor also waits for the archive's acknowledgement before deleting a DAQ copy."
    )
    janitor_every_s: float = Field(30.0, gt=0, description="How often transfer:janitor looks at the DAQ volumes.")
    retention_every_s: float = Field(60.0, gt=0, description="How often transfer:retention applies node limits.")
    rsync_timeout_s: float = Field(120.0, gt=0, description="rsync gives up on a silent peer after this long.")
    rsync_password: str | None = Field(
        None,
        min_length=1,
        description="Password of user gozen on gozen's rsync daemons (storage:rsyncd). Default: the install's "
        "generated one in data_dir/run/rsync-password, made (0600) by the first `gozen up`; copy it to every host.",
        json_schema_extra=SECRET,
    )
    proof_max_age_s: float = Field(
        7 * 86400.0,
        gt=0,
        description="The janitor counts a verified replica only when its last proof (a checksum read on the node's "
        "own host, or an rsync checksum pass) is younger than this; `gozen audit` refreshes proofs.",
    )

    @field_validator("rsync_password")
    @classmethod
    def _password_fits_a_secrets_file(cls, v: str | None) -> str | None:
        if v is not None and (any(c < " " or c == "\x7f" for c in v) or v != v.strip()):
            raise ValueError("no control characters, line breaks or spaces at the ends (rsyncd's secrets file)")
        return v

    @model_validator(mode="after")
    def _low_water_is_below_high_water(self) -> Transfer:
        if self.daq_low_water_pct > self.daq_high_water_pct:
            raise ValueError(
                f"daq_low_water_pct: must not be above daq_high_water_pct ({self.daq_high_water_pct:g}), "
                f"got {self.daq_low_water_pct:g}"
            )
        return self


class AlpacaDevice(AlpacaServer):
    device_number: int = Field(0, ge=0, description="Alpaca device number.")


class Gpsd(Model):
    host: str = Field("127.0.0.1", description="Where gpsd answers.")
    port: int = Field(12947, gt=0, lt=65536, description="gpsd's TCP port (gpsd's own default is 2947).")

    @field_validator("host")
    @classmethod
    def _host_is_a_host(cls, v: str) -> str:
        why = host_problem(v)
        if why:
            raise ValueError(why)
        return v


class SafetyLimits(Model):
    max_humidity_pct: float = Field(85.0, gt=0, le=100, description="Above this relative humidity: unsafe.")
    max_wind_ms: float = Field(15.0, gt=0, description="Above this wind speed: unsafe.")
    max_rain_rate_mmh: float = Field(0.0, ge=0, description="Above this rain rate: unsafe.")
    max_sun_alt_deg: float = Field(
        -12.0, ge=-90, le=90, description="Sun above this altitude: unsafe (-12: nautical twilight)."
    )
    unsafe_on_battery: bool = Field(True, description="The UPS on battery: unsafe.")
    honour_safety_monitor: bool = Field(True, description="An Alpaca SafetyMonitor saying unsafe: unsafe.")


class DeviceSimulator(Model):
    enabled: bool = Field(
        True, description="Run the device simulators (sim:alpaca, sim:gpsd; simulated UPS and thermometers)."
    )
    bad_weather_every_s: float = Field(
        0.0, ge=0, description="Scripted bad weather: a humid spell this often (0: never)."
    )
    bad_weather_for_s: float = Field(300.0, gt=0, description="How long each scripted humid spell lasts.")
    dropout_every_s: float = Field(0.0, ge=0, description="Devices stop answering this often (0: never).")
    dropout_for_s: float = Field(30.0, gt=0, description="How long each dropout lasts.")
    dome_shutter_s: float = Field(
        15.0, ge=0, description="How long the simulated dome's shutter takes to open or close, seconds."
    )
    dark_sky: bool = Field(
        True,
        description="The simulated sky is dark at any hour: safety ignores the Sun, so the simulated "
        "observatory observes in the daytime too.",
    )


class Monitors(Model):
    df_every_s: float = Field(30.0, gt=0, description="How often storage:dfmonitor measures each volume and node.")
    df_warn_pct: float = Field(80.0, gt=0, le=100, description="Use above this: a warning event.")
    df_alarm_pct: float = Field(90.0, gt=0, le=100, description="Use above this: an error event.")
    df_hysteresis_pct: float = Field(
        2.0, ge=0, le=50, description="A disk over a line is back below it only once use is this much lower."
    )
    every_s: float = Field(5.0, gt=0, description="How often monitor:* programs read their devices.")
    start_grace_s: float = Field(
        60.0,
        ge=0,
        description="After a monitor starts, a device that has not answered yet is waited for this long "
        "before it is device_unreachable (and stale weather before it is unsafe).",
    )
    telescope: AlpacaDevice = Field(default_factory=AlpacaDevice, description="Alpaca Telescope.")
    weather: AlpacaDevice = Field(default_factory=AlpacaDevice, description="Alpaca ObservingConditions.")
    safety_monitor: AlpacaDevice | None = Field(
        default_factory=AlpacaDevice, description="Alpaca SafetyMonitor, if there is one (null: none)."
    )
    dome: AlpacaDevice | None = Field(
        None,
        description="Alpaca Dome, if there is one (null: none; the simulated observatory has a simulated dome).",
    )
    gpsd: Gpsd = Field(default_factory=Gpsd, description="gpsd serving the GPS receiver (TPV and PPS reports).")
    ups_command: list[str] | None = Field(
        None,
        description="NUT client command, e.g. [upsc, ups@localhost]; null: the simulated UPS when "
        "monitors.simulator.enabled, else none.",
    )
    sensors_command: list[str] | None = Field(
        None,
        description="Thermometers: a command printing lm-sensors JSON (`sensors -j`); null: simulated thermometers "
        "when monitors.simulator.enabled, else none.",
    )
    sensors_map: dict[str, str] = Field(
        default_factory=dict,
        description="Board key -> lm-sensors path chip/feature/subfeature, e.g. "
        "{temperature.electronics_c: coretemp-isa-0000/Package id 0/temp1_input}.",
    )
    safety: SafetyLimits = Field(default_factory=SafetyLimits, description="When it is safe to observe.")
    history_days: float = Field(
        30.0, gt=0, description="Status history older than this is dropped (by monitor:safety, hourly)."
    )
    simulator: DeviceSimulator = Field(default_factory=DeviceSimulator, description="The simulated devices.")

    @model_validator(mode="after")
    def _warning_comes_before_alarm(self) -> Monitors:
        if self.df_warn_pct > self.df_alarm_pct:
            raise ValueError(
                f"df_warn_pct: must not be above df_alarm_pct ({self.df_alarm_pct:g}), got {self.df_warn_pct:g}"
            )
        return self


class NamedField(Model):
    name: str = Field(..., min_length=1, description="Field name used by recipes' slew steps.")
    ra_deg: float = Field(..., ge=0, lt=360, description="Right ascension (ICRS, degrees).")
    dec_deg: float = Field(..., ge=-90, le=90, description="Declination (ICRS, degrees).")


class Overheads(Model):
    """What the night plan adds to a recipe's exposures: the mount moving and settling, the camera reading out."""

    slew_rate_deg_s: float = Field(
        2.0, gt=0, description="Mount slew rate, degrees per second on each axis (both axes move at once)."
    )
    slew_accel_s: float = Field(
        4.0, ge=0, description="Seconds lost speeding up and slowing down on every slew (0: none)."
    )
    settle_s: float = Field(8.0, ge=0, description="After a slew: settling and the dome catching up, seconds.")
    readout_s: float = Field(1.0, ge=0, description="Per exposure: reading out and arming the next one, seconds.")


class Queue(Model):
    poll_s: float = Field(2.0, gt=0, description="How often queue:server looks for work when idle.")
    requeue_interrupted: bool = Field(
        True, description="A recipe cut short by a crash of the server is queued again (with its progress)."
    )
    demo_survey: bool = Field(
        True, description="When nothing is queued, queue the demo survey's next field (the simulated observatory)."
    )
    fields: list[NamedField] = Field(default_factory=list, description="Named fields for recipes' slew steps.")
    exposure_timeout_s: float = Field(120.0, gt=0, description="An exposure not accounted for by then has failed.")
    slew_timeout_s: float = Field(300.0, gt=0, description="A slew not finished by then has failed.")
    max_steps: int = Field(
        1000, gt=0, description="Recipes with more steps are refused (HTTP 422, `queue submit` exit 2)."
    )
    overheads: Overheads = Field(default_factory=Overheads, description="Slew, settle and readout time in the plan.")
    close_when_unsafe: bool = Field(
        True,
        description="When safety.safe goes false: stop exposing at the next frame boundary, park the telescope "
        "and close the dome (queue:server).",
    )
    close_deadline_s: float = Field(
        90.0, gt=0, description="The dome not closed this long after CloseShutter: an alarm (dome_not_closed)."
    )
    auto_open: bool = Field(
        False, description="Open the dome again by itself once it has been safe for reopen_after_safe_s."
    )
    reopen_after_safe_s: float = Field(
        900.0, ge=0, description="How long it must stay safe before the dome opens again and the queue resumes."
    )

    def positions(self) -> dict[str, tuple[float, float]]:
        """Named fields as name -> (RA, Dec) in degrees, as recipes' slew steps look them up."""
        return {f.name: (f.ra_deg, f.dec_deg) for f in self.fields}


class Volume(Model):
    name: str = Field(..., description="Volume name, e.g. daq1-vol1.")
    path: Path = Field(..., description="Directory; relative paths are under data_dir.")
    host: str | None = Field(None, description="Host holding it (default: the first host).")
    max_bytes: int | None = Field(
        None,
        gt=0,
        description="A quota: catalogued files here count against it as if it were the disk's size "
        "(the janitor and retention keep below it). For volumes that share a disk, e.g. simulated ones.",
    )


class StorageNode(Volume):
    transport: Literal["local", "rsync"] = Field(
        "local", description="How files reach it: local (a mounted path) or rsync (to its rsync_url)."
    )
    rsync_url: str | None = Field(
        None,
        description="With transport rsync: rsync://host:port/module (an rsync daemon serving `path`) "
        "or host:/path (over ssh). Default: gozen's own daemon on the node's host "
        "(rsync://gozen@ADDRESS:RSYNC_PORT/NAME) when that host has rsync_port.",
    )
    max_age_days: float | None = Field(
        None, gt=0, description="Retention: replicas older than this are removed, when safe (see retention)."
    )


class Archive(Model):
    dest: str = Field(
        ...,
        description="Where packages go, for rsync: a directory on `host` (relative: under its data_dir; other "
        "hosts reach it through that host's rsync daemon), rsync://host:port/module or host:/path.",
    )
    host: str | None = Field(
        None,
        description="The host holding a directory `dest` (default: the host with role archive, else the first host).",
    )
    data_types: list[str] = Field(
        default_factory=lambda: ["OBJECT"], description="DATA-TYP values exported; other files are not."
    )
    projects: list[str] | None = Field(None, description="PROJECT values exported (default: every project).")
    min_age_s: float = Field(
        120.0, ge=0, description="A file is packaged once catalogued this long ago; each pass packages per night."
    )
    every_s: float = Field(60.0, gt=0, description="How often transfer:export packages, sends and reads receipts.")
    simulator_keep_bytes: int = Field(
        2 * 2**30,
        gt=0,
        description="The simulated archive (archive:simulator, role archive) drops its oldest packages' files "
        "beyond this.",
    )


class Database(Model):
    url: str | None = Field(
        None,
        description="SQLAlchemy URL; default: SQLite file data_dir/gozen.db. Holds a password: give it as "
        "`${ENV_VAR}` or `url_file: PATH`.",
        json_schema_extra=SECRET_URL,
    )

    @field_validator("url")
    @classmethod
    def _url_is_sqlite_or_postgresql(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            backend = make_url(v).get_backend_name()
        except (ArgumentError, ValueError):
            raise ValueError(
                "not a database URL: expected e.g. postgresql://user@host/gozen or sqlite:////path/gozen.db"
            ) from None
        if backend not in ("sqlite", "postgresql", "postgres"):
            raise ValueError(f"gozen stores its data in SQLite or PostgreSQL, not {backend!r}")
        return v


_SCRYPT_HASH = re.compile(r"^scrypt\$[0-9]+\$[0-9]+\$[0-9]+\$[0-9a-f]{2,}\$[0-9a-f]{2,}$")


class User(Model):
    name: str = Field(..., min_length=1, description="Login name.")
    password_hash: str = Field(..., description="From `gozen web hash-password`.")
    role: Literal["viewer", "operator"] = Field("operator", description="Operators may act.")

    @field_validator("password_hash")
    @classmethod
    def _is_a_scrypt_hash(cls, v: str) -> str:
        # Never quote the value: a password typed here by mistake must not reach logs or terminals.
        if not _SCRYPT_HASH.match(v):
            raise ValueError("not a scrypt hash (scrypt$N$r$p$salt$digest): make one with `gozen web hash-password`")
        return v


class ApiToken(Model):
    name: str = Field(..., min_length=1, description="Who holds the token, for the event log.")
    token_sha256: str = Field(
        ..., pattern=r"^[0-9a-f]{64}$", description="SHA-256 hex of the token (`gozen web new-token`)."
    )
    role: Literal["viewer", "operator"] = Field("operator", description="Operators may act.")


class Web(Model):
    bind: str = Field("127.0.0.1", description="Address the web app listens on.")
    port: int = Field(8470, gt=0, lt=65536, description="TCP port of the web app.")
    refresh_s: float = Field(5.0, gt=0, description="How often pages refresh themselves.")
    users: list[User] = Field(
        default_factory=list, description="People who may log in; none: an `admin` with a generated password."
    )
    api_tokens: list[ApiToken] = Field(default_factory=list, description="Tokens for scripts (Authorization: Bearer).")
    session_secret: str | None = Field(
        None, description="Cookie signing key; default: a file in data_dir.", json_schema_extra=SECRET
    )
    cookie_secure: bool = Field(
        False, description="Send the session cookie only over HTTPS (set when a TLS proxy fronts the app)."
    )
    session_max_age_s: float = Field(
        12 * 3600.0, gt=0, description="A login lasts this long; logging out revokes it at once."
    )
    max_body_bytes: int = Field(
        1_000_000, gt=0, description="Requests with a larger body are refused (413) before they are read."
    )
    public_origins: list[str] = Field(
        default_factory=list,
        description="Origins (scheme://host:port) that may send state-changing requests besides the app's own "
        "address, e.g. the URL of a TLS proxy in front of it.",
    )
    metrics_public: bool = Field(
        True,
        description="/metrics (Prometheus) answers without a login; false: it needs a viewer's API token.",
    )

    @field_validator("bind")
    @classmethod
    def _bind_is_an_address(cls, v: str) -> str:
        why = host_problem(v)
        if why:
            raise ValueError(why)
        return v


class Feed(Model):
    url: str | None = Field(None, description="Where the feed is read (null: this courier does not run).")
    every_s: float = Field(3600.0, gt=0, description="How often it is read.")
    timeout_s: float = Field(30.0, gt=0, description="HTTP timeout.")


class FollowUp(Model):
    feed: Literal["gaia", "maxi"] = Field(..., description="Which feed's alerts this rule looks at.")
    min_dec_deg: float = Field(-30.0, ge=-90, le=90, description="Only alerts north of this declination.")
    classes: list[str] | None = Field(None, description="Only these classes (default: any).")
    priority: Literal["low", "normal", "high", "interrupt"] = Field("interrupt", description="Recipe priority.")
    frames: int = Field(12, ge=1, description="Frames per exposure.")
    count: int = Field(3, ge=1, description="Exposures.")
    window_hours: float = Field(12.0, gt=0, description="The recipe may start within this many hours.")


class GcnKafka(Model):
    client_id: str = Field(..., description="NASA GCN Kafka client id (from gcn.nasa.gov).")
    client_secret: str = Field(..., description="Its client secret.", json_schema_extra=SECRET)
    domain: str = Field("gcn.nasa.gov", description="GCN domain (its brokers are kafka.<domain>).")
    topics: list[str] = Field(
        default_factory=lambda: ["gcn.classic.text.MAXI_UNKNOWN", "gcn.classic.text.MAXI_KNOWN"],
        description="Topics carrying MAXI notices as classic text.",
    )


class GwFollowUp(Model):
    """Gravitational-wave alerts (IGWN/LVK notices, JSON with a HEALPix sky map) made into follow-up recipes."""

    enabled: bool = Field(True, description="Follow GW alerts up (they arrive over couriers.gcn Kafka).")
    topics: list[str] = Field(default_factory=lambda: ["igwn.gwalert"], description="GCN Kafka topics of the alerts.")
    credible_level: float = Field(
        0.9, gt=0, le=1, description="Tile the smallest area holding this much of the sky map's probability."
    )
    max_tiles: int = Field(50, ge=1, description="At most this many camera pointings, most probable first.")
    frames: int = Field(12, ge=1, description="Frames per exposure at each tile.")
    count: int = Field(1, ge=1, description="Exposures at each tile.")
    priority: Literal["low", "normal", "high", "interrupt"] = Field("interrupt", description="Recipe priority.")
    window_hours: float = Field(24.0, gt=0, description="The follow-up may start within this many hours.")
    max_far_hz: float = Field(
        1e-7, gt=0, description="Only alerts with a false-alarm rate below this (1e-7 Hz: about 3 a year)."
    )
    mock: bool = Field(False, description="Follow mock alerts (superevent ids starting with M) up too.")


class FeedSimulator(Model):
    """sim:feeds: the CNEOS, Gaia, MAXI and MPEC feeds played locally, and a Slack stand-in."""

    enabled: bool = Field(
        True,
        description="Run sim:feeds on the couriers host. Feeds without a url are then read from it, a MAXI "
        "follow-up rule applies when couriers.followups is empty, and with no notifiers the messages go to its "
        "Slack stand-in (shown at /sim/slack on it).",
    )
    port: int = Field(8472, gt=0, lt=65536, description="Its TCP port (on the couriers host's address).")
    new_item_every_s: float = Field(120.0, gt=0, description="A new item appears in one of the feeds this often.")
    first_maxi_after_s: float = Field(
        60.0, ge=0, description="The first new MAXI notice appears this long after start."
    )
    every_s: float = Field(30.0, gt=0, description="How often the couriers read the simulated feeds.")


class Couriers(Model):
    cneos: Feed = Field(default_factory=Feed, description="JPL SSD close-approach API (JSON).")
    gaia: Feed = Field(default_factory=Feed, description="Gaia Science Alerts CSV.")
    mpec: Feed = Field(default_factory=Feed, description="Minor Planet Center MPEC RSS/Atom feed.")
    maxi: Feed = Field(default_factory=Feed, description="MAXI GCN notices (classic text) from a page or feed.")
    gcn: GcnKafka | None = Field(
        None, description="MAXI notices from NASA GCN Kafka instead of maxi.url (needs `pip install gozen[gcn]`)."
    )
    send_every_s: float = Field(2.0, gt=0, description="How often courier:sender looks at the outbox.")
    failure_kinds: list[str] = Field(
        default_factory=lambda: [
            "process_exited",
            "disk_warn",
            "disk_alarm",
            "disk_offline",
            "pool_degraded",
            "pool_errors",
            "frames_lost",
            "daq_host_silent",
            "dome_not_closed",
            "recipe_failed",
            "safety_changed",
            "device_unreachable",
            "archive_export_failing",
            "retention_blocked",
            "replica_corrupted",
            "replica_missing",
            "host_unreachable",
            "rsyncd_unreachable",
            "database_unreachable",
        ],
        description="Events (warnings and errors) told at once, as messages of kind `failure`.",
    )
    recovery_kinds: list[str] = Field(
        default_factory=lambda: [
            "host_back",
            "dome_closed",
            "rsyncd_back",
            "database_back",
            "device_back",
            "node_ok",
            "archive_export_ok",
            "retention_ok",
            "disk_ok",
            "process_running",
        ],
        description="Recoveries told once each, as `failure` messages, when the failure they end was told "
        "(host_back ends host_unreachable ...; process_running: a program RUNNING again after process_exited).",
    )
    drops_threshold: int = Field(1, ge=1, description="Frames dropped in one exposure (frames_lost) before it is told.")
    group_window_s: float = Field(
        600.0, gt=0, description="Repeats of one event (kind and subject) within this are told as one count."
    )
    followups: list[FollowUp] = Field(default_factory=list, description="Rules turning alerts into queue recipes.")
    gw: GwFollowUp = Field(default_factory=GwFollowUp, description="Gravitational-wave alerts and their follow-up.")
    snippet_at: str = Field(
        "01:00",
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        description="When the daily ZFS snippets are posted (HH:MM).",
    )
    timezone: str = Field("Asia/Tokyo", description="Time zone of snippet_at (IANA name).")
    retry_base_s: float = Field(5.0, gt=0, description="First retry of a failed post; doubles, up to an hour.")
    simulator: FeedSimulator = Field(default_factory=FeedSimulator, description="Simulated feeds and Slack.")

    def feed(self, name: FeedName) -> Feed:
        """The settings of one of FEEDS."""
        feed: Feed = getattr(self, name)
        return feed

    _timezone_is_known = field_validator("timezone")(_known_timezone)


class Notifier(Model):
    name: str = Field(..., description="Name used in routing and the event log.")
    kind: Literal["slack", "apprise"] = Field("slack", description="Which sender posts the messages.")
    url: str = Field(
        ..., description="Slack incoming-webhook URL or an apprise URL (both are secrets).", json_schema_extra=SECRET
    )
    kinds: list[str] = Field(default_factory=lambda: ["*"], description="Message kinds routed here.")
    bot_token: str | None = Field(
        None,
        description="Slack bot token (xoxb-...): plain-text snippets are then uploaded as files to `channel`.",
        json_schema_extra=SECRET,
    )
    channel: str | None = Field(None, description="Slack channel id for file uploads, e.g. C0123456789.")
    api_url: str = Field("https://slack.com/api/", description="Slack Web API base URL (a stand-in in tests).")


class Reports(Model):
    """www:report: the nightly report (HTML and PNG plots) after the morning twilight, posted to Slack."""

    enabled: bool = Field(True, description="Make a report of each night (on the web host).")
    dir: Path = Field(Path("reports"), description="Reports are kept in DIR/NIGHT/ (relative: under data_dir).")
    twilight_deg: float = Field(
        -12.0, ge=-18, le=0, description="The night is over once the Sun rises above this altitude."
    )
    every_s: float = Field(300.0, gt=0, description="How often www:report looks for a night to report.")
    public_url: str | None = Field(
        None,
        description="The web app's address as people reach it, for the link posted to Slack (default: "
        "http://web.bind:web.port).",
    )


class Bi(Model):
    """BI tools on the database: a read-only role for Metabase or Grafana, and Datasette (`gozen bi`)."""

    role: str = Field(
        "gozen_bi", pattern=r"^[a-z_][a-z0-9_]*$", description="PostgreSQL role `gozen db bi-role` makes (read-only)."
    )
    bind: str = Field("127.0.0.1", description="Address `gozen bi` (Datasette) listens on.")
    port: int = Field(8473, gt=0, lt=65536, description="Port `gozen bi` (Datasette) listens on.")


class Config(Model):
    data_dir: Path = Field(Path("var"), description="Where the simulated observatory keeps its state.")
    site: Site = Field(default_factory=Site, description="Where the telescope is.")
    hosts: list[Host] = Field(
        default_factory=lambda: [Host(name="localhost")],
        min_length=1,
        description="Machines running a gozen supervisord.",
    )
    camera: Camera = Field(default_factory=Camera, description="The multi-chip camera.")
    daq_volumes: list[Volume] = Field(
        default_factory=lambda: [Volume(name=f"daq-vol{i}", path=Path(f"daq/vol{i}"), max_bytes=2**30) for i in (1, 2)],
        min_length=1,
        description="Volumes the DAQ writes FITS files to, striped by free space.",
    )
    storage_nodes: list[StorageNode] = Field(
        default_factory=lambda: [
            StorageNode(name=f"node{i}", path=Path(f"storage/node{i}"), max_bytes=2**30) for i in (0, 1, 2)
        ],
        description="Buffer-storage nodes that keep verified replicas of every file.",
    )
    archive: Archive | None = Field(
        default_factory=lambda: Archive(dest="archive"),
        description="The public archive raw data are exported to (null: none).",
    )
    daq: Daq = Field(default_factory=Daq, description="Readout and FITS-writer processes.")
    transfer: Transfer = Field(default_factory=Transfer, description="Copies to storage nodes and the DAQ janitor.")
    monitors: Monitors = Field(
        # The simulated observatory keeps two days of status history (~85 MB a day), not 30: within its disk budget.
        default_factory=lambda: Monitors(history_days=2.0),
        description="Disk and sensor monitors (without this block: the simulated observatory's, 2 days of history).",
    )
    database: Database = Field(default_factory=Database, description="The one SQL database.")
    queue: Queue = Field(default_factory=Queue, description="The queue server (queue:server).")
    web: Web = Field(default_factory=Web, description="The web app (www:dashboard).")
    notifiers: list[Notifier] = Field(default_factory=list, description="Slack and other services to tell.")
    couriers: Couriers = Field(default_factory=Couriers, description="Alert feeds read by courier:* programs.")
    reports: Reports = Field(default_factory=Reports, description="The nightly report.")
    bi: Bi = Field(default_factory=Bi, description="BI tools reading the database.")
    # The `KEY_file` files the secrets were read from (load_config/parse_config), for `gozen config check`.
    _secret_files: SecretFiles = PrivateAttr(default_factory=SecretFiles)

    @model_validator(mode="after")
    def _names_are_unique_and_known(self) -> Config:
        for what, items in (
            ("hosts", self.hosts),
            ("daq_volumes", self.daq_volumes),
            ("storage_nodes", self.storage_nodes),
        ):
            names = [i.name for i in items]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{what}: names repeat: {', '.join(dup)}")
        known = {h.name for h in self.hosts}
        for what, items in (("daq_volumes", self.daq_volumes), ("storage_nodes", self.storage_nodes)):
            for i, v in enumerate(items):
                if v.host is not None and v.host not in known:
                    raise ValueError(f"{what}[{i}].host: unknown host {v.host!r}")
        for i, n in enumerate(self.storage_nodes):
            if n.transport == "rsync" and not n.rsync_url and self.host_of(n).rsync_port is None:
                raise ValueError(
                    f"storage_nodes[{i}].rsync_url: needed with transport rsync, unless its host "
                    f"({self.host_of(n).name}) has rsync_port (then gozen's own rsync daemon serves it)"
                )
        self._check_archive_host(known)
        self._check_chip_split()
        endpoints = [(h.address, h.supervisor.port) for h in self.hosts]
        if len(set(endpoints)) != len(endpoints):
            raise ValueError("hosts: two hosts share one supervisord address:port")
        if self.transfer.replication > len(self.storage_nodes):
            raise ValueError(
                f"transfer.replication: {self.transfer.replication} verified copies of each file need as many "
                f"storage_nodes, {len(self.storage_nodes)} configured (the janitor could never free the DAQ volumes)"
            )
        return self

    def _check_chip_split(self) -> None:
        """Every chip of the camera is read on exactly one DAQ host."""
        daq = [(i, h) for i, h in enumerate(self.hosts) if "daq" in h.roles]
        masters = [h.name for h in self.hosts if "daq-master" in h.roles]
        if len(masters) > 1:
            raise ValueError(f"hosts[].roles: one host runs daq:control, daq-master is on {', '.join(masters)}")
        given = [(i, h) for i, h in daq if h.chips is not None]
        for i, h in enumerate(self.hosts):
            if h.chips is not None and "daq" not in h.roles:
                raise ValueError(f"hosts[{i}].chips: {h.name} has no role daq, so no readout reads chips there")
        if len(daq) > 1 and len(given) != len(daq):
            bare = ", ".join(f"hosts[{i}] ({h.name})" for i, h in daq if h.chips is None)
            raise ValueError(f"hosts[].chips: several DAQ hosts share the camera; give each its chips: {bare}")
        camera = set(self.camera.chips)
        seen: dict[int, str] = {}
        for i, h in given:
            chips = _expand_chips(h.chips or [], self.camera.chips)
            foreign = [c for c in chips if c not in camera]
            if foreign:
                raise ValueError(f"hosts[{i}].chips: {foreign} are not in camera.chips")
            for c in chips:
                if c in seen:
                    raise ValueError(f"hosts[{i}].chips: chip {c} is read on {seen[c]} already")
                seen[c] = h.name
        unread = [c for c in self.camera.chips if c not in seen]
        if given and unread:
            raise ValueError(f"hosts[].chips: no DAQ host reads chips {unread} of camera.chips")

    def _check_archive_host(self, known: set[str]) -> None:
        if self.archive is not None and self.archive.host is not None and self.archive.host not in known:
            raise ValueError(f"archive.host: unknown host {self.archive.host!r}")

    def archive_unreachable(self) -> str | None:
        """Why hosts that export cannot reach a directory archive (None: they can).

        Other hosts send to a directory on archive.host through its rsync daemon; without one they
        would each write to a directory of their own. `gozen config check` refuses it.
        """
        holder = self.archive_host()
        if self.archive_local_dir() is None or holder is None or holder.rsync_port is not None:
            return None
        exporters = [h.name for h in self.hosts if h.name != holder.name and "storage" in h.roles]
        if not exporters:
            return None
        assert self.archive is not None
        return (
            f"archive.dest: {self.archive.dest!r} is a directory on {holder.name}, but {', '.join(exporters)} "
            f"export to it (transfer:export) and {holder.name} runs no rsync daemon: set "
            f"hosts[{self.hosts.index(holder)}].rsync_port (or archive.host, or give archive.dest as rsync://... "
            "or host:/path)"
        )

    # -- derived values -------------------------------------------------
    def chips_of(self, host: str) -> list[int]:
        """The chips this host's readouts read, in camera.chips order (none on a host without role daq).

        A host the config does not name (a test's, a bench's) reads the whole camera when at most one
        DAQ host is configured."""
        if host not in {h.name for h in self.hosts} and len(self.daq_hosts()) <= 1:
            return list(self.camera.chips)
        h = self.host(host)
        if "daq" not in h.roles:
            return []
        mine = set(_expand_chips(h.chips, self.camera.chips)) if h.chips is not None else set(self.camera.chips)
        return [c for c in self.camera.chips if c in mine]

    def daq_host_of_chip(self, det_id: int) -> str | None:
        """The DAQ host whose readouts read this chip (None: not a chip of the camera)."""
        for h in self.daq_hosts():
            if det_id in self.chips_of(h.name):
                return h.name
        return None

    def daq_hosts(self) -> list[Host]:
        return [h for h in self.hosts if "daq" in h.roles]

    def daq_control_host(self) -> str | None:
        """Where daq:control runs: the host with role daq-master, else the first DAQ host."""
        for h in self.hosts:
            if "daq-master" in h.roles:
                return h.name
        daq = self.daq_hosts()
        return daq[0].name if daq else None

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise ConfigError(f"hosts: no host named {name!r} (known: {', '.join(h.name for h in self.hosts)})")

    def host_of(self, place: Volume) -> Host:
        """The host holding a DAQ volume or storage node (`host`, default the first host)."""
        if place.host is not None:
            for h in self.hosts:
                if h.name == place.host:
                    return h
        return self.hosts[0]

    def daq_volume_dirs(self, host: str) -> list[tuple[Volume, Path]]:
        """This host's DAQ volumes that are there (a missing one is the caller's to report)."""
        out = []
        for v in self.daq_volumes:
            path = self.under_data_dir(v.path)
            if v.host in (None, host) and path.is_dir():
                out.append((v, path))
        return out

    def under_data_dir(self, path: Path) -> Path:
        return path if path.is_absolute() else self.data_dir / path

    def local_nodes(self, host: str) -> list[StorageNode]:
        """Storage nodes whose disks are on this host."""
        return [n for n in self.storage_nodes if n.host in (None, host)]

    # -- rsync: gozen's own daemons (storage:rsyncd) ---------------------
    def rsync_password(self) -> str | None:
        """The password of user gozen on gozen's rsync daemons: transfer.rsync_password, else the
        install's generated one (data_dir/run/rsync-password); None when neither is here."""
        if self.transfer.rsync_password is not None:
            return self.transfer.rsync_password
        try:
            text = self.rsync_password_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
        return text or None

    @property
    def rsync_password_file(self) -> Path:
        """Where `gozen up` keeps the generated rsync password (when transfer.rsync_password is not given)."""
        return self.data_dir / RSYNC_PASSWORD_FILE

    def rsync_module_url(self, host: Host, module: str) -> str | None:
        """rsync://gozen@ADDRESS:PORT/MODULE on `host`'s daemon; None when it runs none."""
        if host.rsync_port is None:
            return None
        return f"rsync://{RSYNC_USER}@{host.address}:{host.rsync_port}/{module}"

    def node_rsync_url(self, node: StorageNode) -> str | None:
        """Where rsync reaches `node`: its rsync_url, else gozen's daemon on its host (None: neither)."""
        return node.rsync_url or self.rsync_module_url(self.host_of(node), node.name)

    def daq_rsync_url(self, volume: Volume) -> str | None:
        """The read-only module `daq-<volume>` serving a DAQ volume on its host's daemon (None: no daemon)."""
        return self.rsync_module_url(self.host_of(volume), f"daq-{volume.name}")

    # -- the archive -------------------------------------------------------
    def archive_is_remote(self) -> bool:
        """archive.dest names a place elsewhere (rsync://... or host:/path), not a directory on archive.host."""
        if self.archive is None:
            return False
        d = self.archive.dest
        return d.startswith("rsync://") or ":" in d.split("/", 1)[0]

    def archive_host(self) -> Host | None:
        """The host holding a directory archive: archive.host, else the one with role archive, else the first."""
        if self.archive is None:
            return None
        if self.archive.host is not None:
            return self.host(self.archive.host)
        return next((h for h in self.hosts if "archive" in h.roles), self.hosts[0])

    def archive_dest_for(self, host: str) -> str | None:
        """Where `host` sends packages: the directory itself on the host holding it, its rsync module
        (rsync://gozen@ADDRESS:PORT/archive) on any other, or archive.dest as given when it is remote."""
        if self.archive is None:
            return None
        local = self.archive_local_dir()
        if local is None:
            return self.archive.dest
        holder = self.archive_host()
        url = self.rsync_module_url(holder, ARCHIVE_MODULE) if holder is not None and holder.name != host else None
        return url or str(local)

    def archive_dest(self) -> str | None:
        """The archive's destination as seen from the host holding it (see archive_dest_for)."""
        holder = self.archive_host()
        return self.archive_dest_for(holder.name) if holder is not None else None

    def archive_local_dir(self) -> Path | None:
        """The archive's directory (on archive.host) when it is a path, not rsync://... or host:path."""
        if self.archive is None or self.archive_is_remote():
            return None
        return self.under_data_dir(Path(self.archive.dest))

    def holds_archive(self, host: str) -> bool:
        """True when the archive is a directory on `host`."""
        holder = self.archive_host()
        return self.archive_local_dir() is not None and holder is not None and holder.name == host

    @property
    def secret_files(self) -> dict[str, Path]:
        """The files secrets were read from (`KEY_file`), by key path."""
        return dict(self._secret_files.paths)

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_dir / 'gozen.db'}"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "log"

    @property
    def reports_dir(self) -> Path:
        return self.under_data_dir(self.reports.dir)

    @property
    def local_tz(self) -> ZoneInfo:
        """The site's time zone (site.timezone)."""
        return ZoneInfo(self.site.timezone)

    # -- the simulated feeds and Slack (couriers.simulator) ---------------
    def sim_feeds_host(self) -> Host | None:
        """The host running sim:feeds: the first with role couriers, when couriers.simulator.enabled."""
        if not self.couriers.simulator.enabled:
            return None
        return next((h for h in self.hosts if "couriers" in h.roles), None)

    def sim_feeds_url(self) -> str | None:
        """sim:feeds' base URL, no trailing slash (None: it does not run)."""
        h = self.sim_feeds_host()
        return None if h is None else f"http://{h.address}:{self.couriers.simulator.port}"

    def feed_in_use(self, name: FeedName) -> Feed:
        """A feed's settings; a feed without a url is read from sim:feeds (at /feeds/NAME) when it runs."""
        feed = self.couriers.feed(name)
        base = self.sim_feeds_url()
        if feed.url is not None or base is None:
            return feed
        return feed.model_copy(update={"url": f"{base}/feeds/{name}", "every_s": self.couriers.simulator.every_s})

    def followups_in_use(self) -> list[FollowUp]:
        """couriers.followups; when empty and sim:feeds runs, one rule: a MAXI alert -> an interrupt recipe."""
        if self.couriers.followups or self.sim_feeds_url() is None:
            return list(self.couriers.followups)
        return [FollowUp(feed="maxi", priority="interrupt", frames=12, count=3)]

    def notifiers_in_use(self) -> list[Notifier]:
        """notifiers; when none is configured and sim:feeds runs, its Slack stand-in (webhook and Web API)."""
        base = self.sim_feeds_url()
        if self.notifiers or base is None:
            return list(self.notifiers)
        return [
            Notifier(
                name="sim-slack",
                kind="slack",
                url=f"{base}/slack/webhook",
                bot_token="xoxb-simulated",
                channel="CSIMULATED",
                api_url=f"{base}/slack/api/",
            )
        ]


RSYNC_PASSWORD_FILE = Path("run/rsync-password")
ARCHIVE_MODULE = "archive"

_KEY_PREFIX = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\[[0-9]+\]|\.[A-Za-z_][A-Za-z0-9_]*)*): ")


def format_validation_error(err: ValidationError) -> str:
    """One line per problem: `camera.fps: must be > 0, got -1`."""
    lines = []
    for e in err.errors():
        loc = ""
        for part in e["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        ctx = e.get("ctx") or {}
        kind = e["type"]
        got = _clipped(e.get("input"))
        if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
            bound = next(iter(ctx.values()))
            if isinstance(bound, float) and bound.is_integer():
                bound = int(bound)
            why = f"must be {op} {bound}, got {got!r}"
        elif kind == "extra_forbidden":
            why = "unknown key"
        elif kind == "missing":
            why = "required key is missing"
        elif kind == "value_error":
            why = str(ctx.get("error", e["msg"]))
            # A model's own check names the key it is about: `daq_low_water_pct: must not be ...`.
            sub = _KEY_PREFIX.match(why)
            if sub:
                loc = f"{loc}.{sub.group(1)}" if loc else sub.group(1)
                why = why[sub.end() :]
        else:
            why = f"{e['msg'][0].lower()}{e['msg'][1:]}, got {got!r}"
        lines.append(f"{loc or '(top level)'}: {why}")
    return "\n".join(lines)


class _Clipped(str):
    """A long input shown in an error by its start and size: the message must not echo megabytes back."""

    def __repr__(self) -> str:
        return str(self)


def _clipped(value: Any, limit: int = 80) -> Any:
    text = repr(value)
    if len(text) <= limit:
        return value
    return _Clipped(f"{text[:limit]}… ({len(text):,} characters)")


def parse_config(data: Any, base_dir: Path | None = None, source: str = "config") -> Config:
    """Validate a mapping (from YAML) into a Config; relative data_dir is under base_dir."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(data).__name__}")
    files = SecretFiles()
    try:
        data = read_secret_files(expand_env(data), Config, base_dir or Path.cwd(), files)
    except SecretError as err:
        raise ConfigError(f"{source}:\n{err}") from None
    try:
        cfg = Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source}:\n{format_validation_error(err)}") from None
    cfg = _resolved(cfg, base_dir or Path.cwd())
    cfg._secret_files = files
    overlaps = overlapping_paths(cfg)
    if overlaps:
        raise ConfigError(f"{source}:\n" + "\n".join(overlaps))
    return cfg


def _resolved(cfg: Config, base_dir: Path) -> Config:
    data_dir = os.environ.get(DATA_DIR_ENV) or cfg.data_dir
    data_dir = Path(data_dir)
    if not data_dir.is_absolute():
        data_dir = (base_dir / data_dir).resolve()
    hosts = [_with_password_file(h, data_dir) for h in cfg.hosts]
    return cfg.model_copy(update={"data_dir": data_dir, "hosts": hosts})


SUPERVISOR_PASSWORD_FILE = Path("run/supervisor-password")


def _with_password_file(host: Host, data_dir: Path) -> Host:
    """Where a host's supervisord password is kept, made absolute (none when it is given in the config)."""
    sup = host.supervisor
    if sup.password is not None:
        return host
    path = sup.password_file or SUPERVISOR_PASSWORD_FILE
    path = path if path.is_absolute() else data_dir / path
    return host.model_copy(update={"supervisor": sup.model_copy(update={"password_file": path})})


def overlapping_paths(cfg: Config) -> list[str]:
    """DAQ volumes, storage nodes and the archive directory that share a directory on one host.

    A storage node inside a DAQ volume would let the janitor delete the only copy of a file.
    """
    places: list[tuple[str, str | None, Path]] = [
        (f"daq_volumes[{i}].path", v.host, cfg.under_data_dir(v.path)) for i, v in enumerate(cfg.daq_volumes)
    ]
    places += [
        (f"storage_nodes[{i}].path", n.host, cfg.under_data_dir(n.path)) for i, n in enumerate(cfg.storage_nodes)
    ]
    archive, holder = cfg.archive_local_dir(), cfg.archive_host()
    if archive is not None and holder is not None:
        places.append(("archive.dest", holder.name if len(cfg.hosts) > 1 else None, archive))
    resolved = [(key, host, path.resolve()) for key, host, path in places]
    problems = []
    for i, (key_a, host_a, a) in enumerate(resolved):
        for key_b, host_b, b in resolved[i + 1 :]:
            if host_a is not None and host_b is not None and host_a != host_b:
                continue  # different machines
            how = "is the same directory as" if a == b else "is inside" if b in a.parents else None
            how = how or ("contains" if a in b.parents else None)
            if how:
                problems.append(f"{key_a}: {a} {how} {key_b} ({b}): each must have a directory of its own")
    return problems


def load_config(path: str | Path | None = None) -> Config:
    """The effective config: FILE, else $GOZEN_CONFIG, else the built-in simulated observatory."""
    path = path or os.environ.get(CONFIG_ENV)
    if not path:
        return _resolved(Config(), Path.cwd())
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise ConfigError(f"{p}: cannot read: {err.strerror}") from None
    try:
        data = load_yaml_text(raw, max_bytes=CONFIG_MAX_BYTES)
    except YamlTextError as err:
        raise ConfigError(f"{p}: {err}") from None
    return parse_config(data, base_dir=p.resolve().parent, source=str(p))


def dump_config(cfg: Config, secrets: bool = False) -> str:
    """The config as YAML; secrets shown as *** unless `secrets`."""
    dumped = cfg.model_dump(mode="json")
    return yaml.safe_dump(dumped if secrets else masked(cfg, dumped), sort_keys=False)
