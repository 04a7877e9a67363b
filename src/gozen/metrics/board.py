"""Metrics from the status board: weather, safety, power, GPS, telescope, temperatures, disks, DAQ
rates and ring fill, programs' heartbeats; and each host's programs as fleet:watch last listed them.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import Engine

from gozen.config import Config
from gozen.daq.snapshot import StatusSnapshot, StatusValue
from gozen.metrics.family import gauge
from gozen.supervise.fleet import last_seen

# weather.<field> on the board -> (metric, help, factor to its base unit)
WEATHER = {
    "temperature_c": ("gozen_weather_temperature_celsius", "Air temperature.", 1.0),
    "humidity_pct": ("gozen_weather_humidity_ratio", "Relative humidity (0-1).", 0.01),
    "dewpoint_c": ("gozen_weather_dewpoint_celsius", "Dew point.", 1.0),
    "pressure_hpa": ("gozen_weather_pressure_pascals", "Air pressure.", 100.0),
    "wind_ms": ("gozen_weather_wind_speed_meters_per_second", "Wind speed.", 1.0),
    "wind_gust_ms": ("gozen_weather_wind_gust_meters_per_second", "Wind gust speed.", 1.0),
    "wind_dir_deg": ("gozen_weather_wind_direction_degrees", "Wind direction (from, east of north).", 1.0),
    "rain_mmh": ("gozen_weather_rain_millimeters_per_hour", "Rain rate.", 1.0),
    "sky_temp_c": ("gozen_weather_sky_temperature_celsius", "Sky temperature (cloud sensor).", 1.0),
    "cloud_pct": ("gozen_weather_cloud_cover_ratio", "Cloud cover (0-1).", 0.01),
}


# other single board keys -> (metric, help, factor)
SINGLE = {
    "safety.safe": ("gozen_safe", "1 when the site is safe to observe (safety:monitor's verdict).", 1.0),
    "weather.safe": ("gozen_weather_safe", "1 when the weather station's safety monitor says safe.", 1.0),
    "safety.sun_alt_deg": ("gozen_sun_altitude_degrees", "Altitude of the Sun.", 1.0),
    "power.on_battery": ("gozen_ups_on_battery", "1 while the UPS runs on its battery.", 1.0),
    "power.low_battery": ("gozen_ups_low_battery", "1 when the UPS says its battery is low.", 1.0),
    "power.ups_charge_pct": ("gozen_ups_charge_ratio", "UPS battery charge (0-1).", 0.01),
    "power.ups_runtime_s": ("gozen_ups_runtime_seconds", "UPS runtime left on battery.", 1.0),
    "power.ups_load_pct": ("gozen_ups_load_ratio", "UPS load (0-1).", 0.01),
    "gps.fix": ("gozen_gps_fix", "1 while the GPS receiver has a fix.", 1.0),
    "gps.pps": ("gozen_gps_pps", "1 while the GPS pulse-per-second arrives.", 1.0),
    "gps.offset_ms": ("gozen_gps_offset_seconds", "System clock minus GPS time.", 0.001),
    "gps.satellites": ("gozen_gps_satellites", "Satellites the GPS receiver uses.", 1.0),
    "telescope.alt_deg": ("gozen_telescope_altitude_degrees", "Altitude the telescope points at.", 1.0),
    "telescope.tracking": ("gozen_telescope_tracking", "1 while the telescope tracks.", 1.0),
    "telescope.slewing": ("gozen_telescope_slewing", "1 while the telescope slews.", 1.0),
    "telescope.parked": ("gozen_telescope_parked", "1 while the telescope is parked.", 1.0),
}


# df.<volume>.<field> -> (metric, help, factor)
DISK = {
    "online": ("gozen_disk_online", "1 while the directory is there (mounted).", 1.0),
    "used_pct": ("gozen_disk_used_ratio", "Used share of the filesystem (0-1).", 0.01),
    "free_bytes": ("gozen_disk_free_bytes", "Bytes free to gozen on the filesystem.", 1.0),
    "inodes_used_pct": ("gozen_disk_inodes_used_ratio", "Used share of the inodes (0-1).", 0.01),
    "fill_rate_bps": ("gozen_disk_fill_rate_bytes_per_second", "How fast use grows (negative: shrinks).", 1.0),
    "time_to_full_s": ("gozen_disk_time_to_full_seconds", "When full at the present fill rate.", 1.0),
}


def number(v: StatusValue | None) -> float | None:
    """A fresh board value as a float (booleans as 1/0); None when absent, stale or not a number."""
    if v is None or v.stale or v.value is None or isinstance(v.value, str):
        return None
    return float(v.value)


def board_metrics(cfg: Config, board: StatusSnapshot) -> list[Metric]:
    """Weather, safety, power, temperatures, disks, DAQ rates and ring fill, programs' heartbeats."""
    out: dict[str, GaugeMetricFamily] = {}

    def put(name: str, doc: str, value: float | None, **labels: str) -> None:
        if value is None:
            return
        fam = out.get(name) or out.setdefault(name, gauge(name, doc, labels))
        fam.add_metric(list(labels.values()), value)

    now = datetime.fromisoformat(board.time)
    kinds = {v.name: "daq" for v in cfg.daq_volumes} | {n.name: "node" for n in cfg.storage_nodes}
    for key, v in sorted(board.values.items()):
        x = number(v)
        if key.startswith("weather.") and (w := WEATHER.get(key.removeprefix("weather."))):
            put(w[0], w[1], None if x is None else x * w[2])
        elif s := SINGLE.get(key):
            put(s[0], s[1], None if x is None else x * s[2])
        elif v.unit == "degC":
            put("gozen_temperature_celsius", "Temperatures on the board (camera, chips, racks...).", x, sensor=key)
        elif key.startswith("df."):
            volume, _, name = key.removeprefix("df.").rpartition(".")
            if d := DISK.get(name):
                put(d[0], d[1], None if x is None else x * d[2], volume=volume, kind=kinds.get(volume, ""))
        elif key.startswith("daq.") and key.endswith(".frames_per_s"):
            host, _, readout = key.removeprefix("daq.").removesuffix(".frames_per_s").rpartition(".")
            put("gozen_daq_frames_per_second", "Frames read per second (last ~5 s).", x, host=host, readout=readout)
        elif key.startswith("daq.") and key.endswith(".fill_pct"):
            host, _, ring = key.removeprefix("daq.").removesuffix(".fill_pct").rpartition(".ring.")
            x = None if x is None else x / 100
            put("gozen_daq_ring_fill_ratio", "Fullest a readout-to-writer ring got (0-1).", x, host=host, ring=ring)
        elif key.startswith("service.") and key.endswith(".alive_at") and isinstance(v.value, str):
            host, _, program = key.removeprefix("service.").removesuffix(".alive_at").rpartition(".")
            age = (now - datetime.fromisoformat(v.value)).total_seconds()
            doc = "Since a program last said it is alive."
            put("gozen_program_heartbeat_age_seconds", doc, age, host=host, program=program)
    _disk_sizes(out)
    return list(out.values())


def _disk_sizes(out: dict[str, GaugeMetricFamily]) -> None:
    """Size and used bytes of each filesystem, from its used share and free bytes."""
    used, free = out.get("gozen_disk_used_ratio"), out.get("gozen_disk_free_bytes")
    if used is None or free is None:
        return
    ratio = {tuple(s.labels.items()): s.value for s in used.samples}
    size = out["gozen_disk_size_bytes"] = gauge("gozen_disk_size_bytes", "Size of the filesystem.", ["volume", "kind"])
    taken = out["gozen_disk_used_bytes"] = gauge("gozen_disk_used_bytes", "Bytes used on it.", ["volume", "kind"])
    for s in free.samples:
        r = ratio.get(tuple(s.labels.items()))
        if r is None or r >= 1:
            continue
        total = s.value / (1 - r)
        size.add_metric(list(s.labels.values()), round(total))
        taken.add_metric(list(s.labels.values()), round(total - s.value))


def fleet_metrics(engine: Engine) -> list[Metric]:
    """Hosts reachable, and each program's state as supervisord last listed it (fleet:watch)."""
    reachable = gauge("gozen_host_reachable", "1 when the host's supervisord answered fleet:watch.", ["host"])
    up = gauge("gozen_program_up", "1 while the program is RUNNING.", ["host", "program"])
    state = gauge("gozen_program_state", "1 for the program's supervisord state.", ["host", "program", "state"])
    uptime = gauge("gozen_program_uptime_seconds", "How long the program has been running.", ["host", "program"])
    for host, seen in sorted(last_seen(engine).items()):
        if seen.stale:
            continue  # fleet:watch has not looked for a while: nothing is known
        reachable.add_metric([host], float(seen.reachable))
        if not seen.reachable:
            continue  # its programs' last states are history, not the present
        for p in seen.programs:
            up.add_metric([host, p.name], float(p.state == "RUNNING"))
            state.add_metric([host, p.name, p.state], 1.0)
            if p.uptime_s is not None:
                uptime.add_metric([host, p.name], p.uptime_s)
    return [reachable, up, state, uptime]
