"""The BI views (v_nightly_summary, v_exposures, v_file_lineage, v_chip_health, v_weather_hourly): their SQL on
SQLite and PostgreSQL, what each column means, and the site time they name nights by (view v_site_time).

A migration creates the views of its own revision (VIEWS_0015 for 0015): a later change to a view is a new
revision with new constants beside these, so an old migration keeps producing what it produced.

Nights run local noon to local noon and are named by the evening's date (YYYY-MM-DD), as the nightly report
names them. A view cannot read gozen.yaml, so the site's UTC offset is kept in the one-row view v_site_time:
migration 0015 writes the default site's (Asia/Tokyo, +540 min) and `gozen db upgrade` writes the configured
`site.timezone`'s offset at the time it runs. A fixed offset: at a site with summer time a night's edge moves
by an hour twice a year, at local noon, when nothing is observed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, Engine, text

from gozen.db.types import utcnow

SITE_TIME = "v_site_time"
DEFAULT_TIMEZONE = "Asia/Tokyo"  # the built-in (simulated) site's, until `gozen db upgrade` writes the config's
_ZONE_NAME = re.compile(r"^[A-Za-z0-9_+\-/]+$")


@dataclass(frozen=True)
class View:
    """A view: its name, what it answers, its columns with their meaning, and its SELECT per dialect."""

    name: str
    comment: str
    columns: tuple[tuple[str, str], ...]
    sql: dict[str, str]  # dialect name (sqlite, postgresql) -> SELECT


@dataclass(frozen=True)
class _Dialect:
    """The few expressions SQLite and PostgreSQL spell differently."""

    night: Callable[[str], str]  # a UTC time -> its night 'YYYY-MM-DD' (text)
    hour: Callable[[str], str]  # a UTC time -> the start of its hour (SQLite: text; PostgreSQL: timestamptz)
    json_type: str  # the function naming a JSON value's type
    array: str  # what it calls an array
    number: Callable[[str], str]  # a JSON value -> a number (true 1, false 0), NULL for text and null
    join_sorted: Callable[[str], str]  # aggregate: the values, sorted, space-separated
    weather_keys: str  # WHERE term: status_history.key is a weather.* key
    # (value, "FROM ... WHERE ...") -> a scalar subquery: the median of the non-NULL values (NULL: none). A
    # subquery per row, correlated, rather than ranking whole tables: a page of a view costs a page of work.
    median: Callable[[str, str], str]


# -- revision 0015: never edit what follows (a change is a new revision with its own copies) -------------------

_OFFSET_0015 = f"(SELECT utc_offset_min FROM {SITE_TIME})"

_SQLITE_0015 = _Dialect(
    night=lambda t: f"date({t}, ({_OFFSET_0015} - 720) || ' minutes')",
    # SQLAlchemy stores times as 'YYYY-MM-DD HH:MM:SS.ffffff' on SQLite: the hour is its first 13 characters
    # (a third of the cost of strftime over a million readings)
    hour=lambda t: f"substr({t}, 1, 13) || ':00:00'",
    json_type="json_type",
    array="array",
    number=lambda v: (
        f"CASE json_type({v}) WHEN 'integer' THEN CAST({v} AS REAL) "
        f"WHEN 'real' THEN CAST({v} AS REAL) WHEN 'true' THEN 1.0 WHEN 'false' THEN 0.0 END"
    ),
    # group_concat keeps the order of its (sorted) input; SQLite before 3.44 has no ORDER BY in aggregates
    join_sorted=lambda v: f"group_concat({v}, ' ')",
    weather_keys="key >= 'weather.' AND key < 'weather/'",  # a range on the (key, time) index; '/' follows '.'
    # No median in SQLite: the middle value, or the mean of the middle two (as percentile_cont(0.5) gives)
    median=lambda v, src: (
        f"(SELECT AVG(x) FROM (SELECT {v} AS x, ROW_NUMBER() OVER (ORDER BY {v}) AS i, COUNT(*) OVER () AS n "
        f"{src} AND {v} IS NOT NULL) AS ranked WHERE i IN ((n + 1) / 2, (n + 2) / 2))"
    ),
)

_POSTGRESQL_0015 = _Dialect(
    night=lambda t: f"to_char(({t} AT TIME ZONE 'UTC') + ({_OFFSET_0015} - 720) * INTERVAL '1 minute', 'YYYY-MM-DD')",
    hour=lambda t: f"(date_trunc('hour', {t} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')",
    json_type="json_typeof",
    array="array",
    number=lambda v: (
        f"CASE json_typeof({v}) WHEN 'number' THEN CAST(CAST({v} AS TEXT) AS DOUBLE PRECISION) "
        f"WHEN 'boolean' THEN CASE WHEN CAST({v} AS TEXT) = 'true' THEN CAST(1 AS DOUBLE PRECISION) "
        "ELSE CAST(0 AS DOUBLE PRECISION) END END"
    ),
    join_sorted=lambda v: f"string_agg({v}, ' ' ORDER BY {v})",
    weather_keys="key LIKE 'weather.%'",  # not a range: the database's collation may order punctuation apart
    median=lambda v, src: f"(SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY {v}) {src})",
)


_QUICKLOOK_MEDIANS_0015 = (
    ("q.sky_adu", "sky_adu_median"),
    ("q.noise_adu", "noise_adu_median"),
    ("CAST(q.n_stars AS DOUBLE PRECISION)", "n_stars_median"),
    ("q.fwhm_px", "fwhm_px_median"),
)


def _medians_0015(name: str, long_sql: str, keys: str, metrics: Sequence[tuple[str, str]]) -> str:
    """CTEs `name`: per `keys`, the median of each metric of `long_sql` (rows: keys, m, v), as columns.

    By window functions (both databases have them; SQLite has no median): the middle value, or the mean
    of the two middle ones, as PostgreSQL's percentile_cont(0.5) gives."""
    cols = ",\n    ".join(f"AVG(CASE WHEN m = '{m}' THEN v END) AS {col}" for m, col in metrics)
    return f"""{name}_ranked AS (
  SELECT {keys}, m, v,
    ROW_NUMBER() OVER (PARTITION BY {keys}, m ORDER BY v) AS i,
    COUNT(*) OVER (PARTITION BY {keys}, m) AS n
  FROM ({long_sql}) AS {name}_long
  WHERE v IS NOT NULL
),
{name} AS (
  SELECT {keys},
    {cols}
  FROM {name}_ranked
  WHERE i IN ((n + 1) / 2, (n + 2) / 2)
  GROUP BY {keys}
)"""


_QUICKLOOK_METRICS_0015 = (
    ("sky", "sky_adu_median"),
    ("noise", "noise_adu_median"),
    ("stars", "n_stars_median"),
    ("fwhm", "fwhm_px_median"),
)


def _quicklook_long_0015(night: str | None) -> str:
    """Quick-look metrics in long form (exp_id or night, det_id, m, v)."""
    key = "q.exp_id" if night is None else f"{night} AS night, q.det_id"
    src = "quicklook q" if night is None else "quicklook q JOIN exposures e ON e.exp_id = q.exp_id"
    parts = [
        ("sky", "q.sky_adu"),
        ("noise", "q.noise_adu"),
        ("stars", "CAST(q.n_stars AS DOUBLE PRECISION)"),
        ("fwhm", "q.fwhm_px"),
    ]
    return "\n    UNION ALL ".join(f"SELECT {key}, '{m}' AS m, {v} AS v FROM {src}" for m, v in parts)


def _night_summary_0015(d: _Dialect) -> str:
    night = d.night("COALESCE(e.start_at, e.requested_at)")
    return f"""WITH e AS (
  SELECT exp_id, state, start_at, {night} AS night FROM exposures e
),
ex AS (
  SELECT night, COUNT(*) AS exposures,
    SUM(CASE WHEN state = 'done' THEN 1 ELSE 0 END) AS exposures_done,
    SUM(CASE WHEN state = 'incomplete' THEN 1 ELSE 0 END) AS exposures_incomplete,
    SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END) AS exposures_failed,
    SUM(CASE WHEN state IN ('queued', 'armed') THEN 1 ELSE 0 END) AS exposures_pending,
    MIN(start_at) AS first_start_at, MAX(start_at) AS last_start_at
  FROM e GROUP BY night
),
df AS (
  SELECT e.night,
    SUM(d.frames_expected) AS frames_expected, SUM(d.frames_written) AS frames_written,
    SUM(d.frames_missing) AS frames_missing, SUM(d.frames_damaged) AS frames_damaged,
    SUM(CASE WHEN d.state = 'written' THEN 1 ELSE 0 END) AS files_written,
    SUM(CASE WHEN d.state = 'lost' THEN 1 ELSE 0 END) AS files_lost,
    SUM(d.size_bytes) AS bytes
  FROM daq_files d JOIN e ON e.exp_id = d.exp_id GROUP BY e.night
),
rp AS (
  SELECT e.night, COUNT(*) AS replicas_verified
  FROM replicas r JOIN files f ON f.id = r.file_id JOIN e ON e.exp_id = f.exp_id
  WHERE r.state = 'verified' GROUP BY e.night
),
xp AS (
  SELECT e.night, COUNT(*) AS files_exported
  FROM exports x JOIN files f ON f.id = x.file_id JOIN e ON e.exp_id = f.exp_id
  WHERE x.state IN ('exported', 'acknowledged') GROUP BY e.night
)
SELECT ex.night, ex.exposures, ex.exposures_done, ex.exposures_incomplete, ex.exposures_failed,
  ex.exposures_pending,
  CAST(COALESCE(df.frames_expected, 0) AS BIGINT) AS frames_expected,
  CAST(COALESCE(df.frames_written, 0) AS BIGINT) AS frames_written,
  CAST(COALESCE(df.frames_missing, 0) AS BIGINT) AS frames_missing,
  CAST(COALESCE(df.frames_damaged, 0) AS BIGINT) AS frames_damaged,
  CAST(COALESCE(df.files_written, 0) AS BIGINT) AS files_written,
  CAST(COALESCE(df.files_lost, 0) AS BIGINT) AS files_lost,
  CAST(COALESCE(df.bytes, 0) AS BIGINT) AS bytes,
  ex.first_start_at, ex.last_start_at,
  COALESCE(rp.replicas_verified, 0) AS replicas_verified,
  COALESCE(xp.files_exported, 0) AS files_exported
FROM ex
LEFT JOIN df ON df.night = ex.night
LEFT JOIN rp ON rp.night = ex.night
LEFT JOIN xp ON xp.night = ex.night"""


def _exposures_0015(d: _Dialect) -> str:
    src = "FROM quicklook q WHERE q.exp_id = e.exp_id"
    medians = ",\n  ".join(f"{d.median(v, src)} AS {col}" for v, col in _QUICKLOOK_MEDIANS_0015)
    return f"""WITH f AS (
  SELECT exp_id,
    SUM(CASE WHEN state = 'written' THEN 1 ELSE 0 END) AS files_written,
    SUM(CASE WHEN state = 'lost' THEN 1 ELSE 0 END) AS files_lost,
    SUM(size_bytes) AS bytes,
    SUM(frames_expected) AS frames_expected, SUM(frames_written) AS frames_written,
    SUM(frames_missing) AS frames_missing, SUM(frames_damaged) AS frames_damaged
  FROM daq_files GROUP BY exp_id
),
qn AS (SELECT exp_id, COUNT(*) AS quicklook_chips FROM quicklook GROUP BY exp_id)
SELECT e.exp_id, {d.night("COALESCE(e.start_at, e.requested_at)")} AS night, e.state,
  e.recipe_uuid, e.recipe_name, e.object, e.data_type, e.obs_mode, e."filter", e.project, e.observer,
  e.n_frames, e.fps, e.n_frames / e.fps AS exptime_s,
  e.requested_at, e.start_at, e.end_at, e.finished_at, e.stop_reason,
  CASE WHEN {d.json_type}(e.chips) = '{d.array}' THEN json_array_length(e.chips) END AS chips,
  CAST(COALESCE(f.files_written, 0) AS BIGINT) AS files_written,
  CAST(COALESCE(f.files_lost, 0) AS BIGINT) AS files_lost,
  CAST(COALESCE(f.bytes, 0) AS BIGINT) AS bytes,
  CAST(COALESCE(f.frames_expected, 0) AS BIGINT) AS frames_expected,
  CAST(COALESCE(f.frames_written, 0) AS BIGINT) AS frames_written,
  CAST(COALESCE(f.frames_missing, 0) AS BIGINT) AS frames_missing,
  CAST(COALESCE(f.frames_damaged, 0) AS BIGINT) AS frames_damaged,
  COALESCE(qn.quicklook_chips, 0) AS quicklook_chips,
  {medians}
FROM exposures e
LEFT JOIN f ON f.exp_id = e.exp_id
LEFT JOIN qn ON qn.exp_id = e.exp_id"""


def _file_lineage_0015(d: _Dialect) -> str:
    places = (
        "TRIM(CASE WHEN d.state = 'written' AND COALESCE(f.daq_state, 'present') = 'present' THEN 'daq' ELSE '' END"
        " || ' ' || COALESCE(rv.verified_nodes, '')"
        " || ' ' || CASE WHEN x.state IN ('exported', 'acknowledged') THEN 'archive' ELSE '' END)"
    )
    return f"""WITH rv AS (
  SELECT file_id, COUNT(*) AS replicas_verified, MAX(verified_at) AS last_verified_at,
    {d.join_sorted("node")} AS verified_nodes
  FROM (SELECT file_id, node, verified_at FROM replicas WHERE state = 'verified' ORDER BY file_id, node) AS r
  GROUP BY file_id
),
ro AS (
  SELECT file_id,
    SUM(CASE WHEN state IN ('queued', 'copying', 'copied') THEN 1 ELSE 0 END) AS replicas_pending,
    SUM(CASE WHEN state IN ('failed', 'lost') THEN 1 ELSE 0 END) AS replicas_failed
  FROM replicas GROUP BY file_id
)
SELECT d.id AS daq_file_id, {d.night("COALESCE(e.start_at, e.requested_at)")} AS night,
  d.exp_id, d.det_id, d.filename, d.state AS daq_file_state, d.daq_host, d.daq_volume, d.path AS daq_path,
  d.size_bytes, d.checksum_xxh3, d.created_at AS written_at,
  f.id AS file_id, f.checksum_xxh3 AS catalog_checksum_xxh3,
  CASE WHEN f.id IS NULL THEN NULL WHEN f.checksum_xxh3 = d.checksum_xxh3 THEN 1 ELSE 0 END AS checksums_agree,
  f.registered_at, f.daq_state AS daq_copy, f.daq_deleted_at,
  COALESCE(rv.replicas_verified, 0) AS replicas_verified, rv.verified_nodes, rv.last_verified_at,
  CAST(COALESCE(ro.replicas_pending, 0) AS BIGINT) AS replicas_pending,
  CAST(COALESCE(ro.replicas_failed, 0) AS BIGINT) AS replicas_failed,
  x.state AS export_state, x.package AS export_package, x.exported_at, x.acknowledged_at,
  COALESCE(NULLIF(REPLACE({places}, '  ', ' '), ''), 'nowhere') AS where_now
FROM daq_files d
JOIN exposures e ON e.exp_id = d.exp_id
LEFT JOIN files f ON f.filename = d.filename
LEFT JOIN rv ON rv.file_id = f.id
LEFT JOIN ro ON ro.file_id = f.id
LEFT JOIN exports x ON x.file_id = f.id"""


def _chip_health_0015(d: _Dialect) -> str:
    night = d.night("COALESCE(e.start_at, e.requested_at)")
    long_sql = "\n    UNION ALL ".join(
        [
            "SELECT night, det_id, 'osm' AS m, overscan_median AS v FROM df",
            "SELECT night, det_id, 'osn' AS m, overscan_noise AS v FROM df",
            _quicklook_long_0015(night),
        ]
    )
    metrics = (("osm", "overscan_median"), ("osn", "overscan_noise"), *_QUICKLOOK_METRICS_0015)
    # ranked once over all the nights: a median per (night, chip) by correlated subqueries costs more here
    medians = _medians_0015("cm", long_sql, "night, det_id", metrics)
    return f"""WITH df AS (
  SELECT {night} AS night, d.* FROM daq_files d JOIN exposures e ON e.exp_id = d.exp_id
),
agg AS (
  SELECT night, det_id, COUNT(*) AS exposures,
    SUM(CASE WHEN state = 'written' THEN 1 ELSE 0 END) AS files_written,
    SUM(CASE WHEN state = 'lost' THEN 1 ELSE 0 END) AS files_lost,
    SUM(frames_expected) AS frames_expected, SUM(frames_written) AS frames_written,
    SUM(frames_missing) AS frames_missing, SUM(frames_damaged) AS frames_damaged
  FROM df GROUP BY night, det_id
),
{medians}
SELECT agg.night, agg.det_id, agg.exposures,
  CAST(agg.files_written AS BIGINT) AS files_written, CAST(agg.files_lost AS BIGINT) AS files_lost,
  CAST(agg.frames_expected AS BIGINT) AS frames_expected, CAST(agg.frames_written AS BIGINT) AS frames_written,
  CAST(agg.frames_missing AS BIGINT) AS frames_missing, CAST(agg.frames_damaged AS BIGINT) AS frames_damaged,
  CASE WHEN agg.frames_expected > 0
    THEN CAST(agg.frames_missing AS DOUBLE PRECISION) / agg.frames_expected END AS loss_ratio,
  cm.overscan_median, cm.overscan_noise,
  cm.sky_adu_median, cm.noise_adu_median, cm.n_stars_median, cm.fwhm_px_median
FROM agg LEFT JOIN cm ON cm.night = agg.night AND cm.det_id = agg.det_id"""


def _weather_hourly_0015(d: _Dialect) -> str:
    return f"""WITH a AS (
  SELECT hour_utc, key, COUNT(*) AS samples, AVG(v) AS avg_value, MIN(v) AS min_value, MAX(v) AS max_value
  FROM (
    SELECT key, {d.hour("time")} AS hour_utc, {d.number("value")} AS v
    FROM status_history WHERE {d.weather_keys}
  ) AS w
  WHERE v IS NOT NULL
  GROUP BY hour_utc, key
)
SELECT a.hour_utc, {d.night("a.hour_utc")} AS night, a.key, s.unit,
  a.samples, a.avg_value, a.min_value, a.max_value
FROM a LEFT JOIN status s ON s.key = a.key"""


_COUNTS = (
    ("frames_expected", "Frames asked for (all chips)."),
    ("frames_written", "Frames with pixels from the camera (damaged included)."),
    ("frames_missing", "Frames never received (camera miss, ring full, writer lost)."),
    ("frames_damaged", "Frames received with a link error."),
)
_QUICKLOOK_COLS = (
    ("sky_adu_median", "Median of the quick look's sky level, ADU (NULL: no quick look)."),
    ("noise_adu_median", "Median of the quick look's sky noise, ADU."),
    ("n_stars_median", "Median of the sources detected on the quick look."),
    ("fwhm_px_median", "Median of the quick look's median FWHM, unbinned pixels."),
)


def _views_0015() -> tuple[View, ...]:
    def sql(build: Callable[[_Dialect], str]) -> dict[str, str]:
        return {"sqlite": build(_SQLITE_0015), "postgresql": build(_POSTGRESQL_0015)}

    night = ("night", "The night (local noon to noon at the site, v_site_time), named by its evening: YYYY-MM-DD.")
    return (
        View(
            "v_nightly_summary",
            "One row per night: exposures by state, frames and files, bytes, replicas verified, files exported.",
            (
                night,
                ("exposures", "Exposures of the night (by start, or by request when never started)."),
                ("exposures_done", "Exposures done: every chip's file written."),
                ("exposures_incomplete", "Exposures closed with some chip's file lost or not answering."),
                ("exposures_failed", "Exposures that failed (e.g. stopped before they started)."),
                ("exposures_pending", "Exposures still queued or armed."),
                *_COUNTS,
                ("files_written", "FITS files written (daq_files state written)."),
                ("files_lost", "Chips' files that could not be made (state lost)."),
                ("bytes", "Bytes of FITS files written."),
                ("first_start_at", "Start of the night's first exposure (UTC)."),
                ("last_start_at", "Start of its last exposure (UTC)."),
                ("replicas_verified", "Verified copies on storage nodes of the night's files."),
                ("files_exported", "The night's files sent to the archive (exported or acknowledged)."),
            ),
            sql(_night_summary_0015),
        ),
        View(
            "v_exposures",
            "Each exposure with its recipe, target, times, chips, files, bytes, frames and quick-look medians.",
            (
                ("exp_id", "Exposure id (EXP_ID)."),
                night,
                ("state", "queued, armed, done, incomplete or failed."),
                ("recipe_uuid", "Queue recipe that asked for it."),
                ("recipe_name", "Name of that recipe."),
                ("object", "OBJECT: target or field name."),
                ("data_type", "DATA-TYP: OBJECT, FLAT or DARK."),
                ("obs_mode", "OBS-MOD."),
                ("filter", "FILTER."),
                ("project", "PROJECT."),
                ("observer", "OBSERVER."),
                ("n_frames", "Frames per chip asked for."),
                ("fps", "Frames per second."),
                ("exptime_s", "Length asked for: n_frames / fps, seconds."),
                ("requested_at", "When it was asked for (UTC)."),
                ("start_at", "First frame (UTC)."),
                ("end_at", "End of the last frame (UTC)."),
                ("finished_at", "When every chip's file was accounted for (UTC)."),
                ("stop_reason", "Why it was stopped early, if it was."),
                ("chips", "Chips expected (NULL until armed)."),
                ("files_written", "Chips' files written."),
                ("files_lost", "Chips' files that could not be made."),
                ("bytes", "Bytes of its FITS files."),
                *_COUNTS,
                ("quicklook_chips", "Chips with a quick look."),
                *_QUICKLOOK_COLS,
            ),
            sql(_exposures_0015),
        ),
        View(
            "v_file_lineage",
            "Each DAQ file, its catalogue entry, its copies on storage nodes and its archive export: "
            "checksums, states, times, and where it is now.",
            (
                ("daq_file_id", "daq_files.id"),
                night,
                ("exp_id", "Exposure (EXP_ID)."),
                ("det_id", "Detector id."),
                ("filename", "File name."),
                ("daq_file_state", "written, or lost (no file could be made)."),
                ("daq_host", "Host that wrote it."),
                ("daq_volume", "DAQ volume."),
                ("daq_path", "Path on the DAQ host."),
                ("size_bytes", "File size."),
                ("checksum_xxh3", "xxh3-64 computed while writing (hex)."),
                ("written_at", "When it got its final name (UTC)."),
                ("file_id", "Catalogue entry (files.id); NULL: not catalogued yet."),
                ("catalog_checksum_xxh3", "The catalogue's checksum, which every copy must match."),
                ("checksums_agree", "1: the catalogue's checksum is the writer's; 0: not; NULL: not catalogued."),
                ("registered_at", "When transfer:push catalogued it (UTC)."),
                ("daq_copy", "The DAQ original: present, deleted (by the janitor) or missing."),
                ("daq_deleted_at", "When the janitor removed the DAQ original (UTC)."),
                ("replicas_verified", "Verified copies on storage nodes."),
                ("verified_nodes", "Nodes holding a verified copy, space-separated, sorted."),
                ("last_verified_at", "When the newest verified copy was verified (UTC)."),
                ("replicas_pending", "Copies queued, being copied, or waiting for their proof."),
                ("replicas_failed", "Copies failed or lost."),
                ("export_state", "not_selected, packaged, exported, acknowledged or rejected (NULL: not yet)."),
                ("export_package", "Archive package: <night>-<host>-<nnn>."),
                ("exported_at", "When the archive copy was verified (UTC)."),
                ("acknowledged_at", "When the archive's receipt named it (UTC)."),
                ("where_now", "Where good copies are: daq, the verified nodes, archive; or nowhere."),
            ),
            sql(_file_lineage_0015),
        ),
        View(
            "v_chip_health",
            "Per chip per night: frames expected, written, missing and damaged, the loss ratio, overscan, "
            "and quick-look sky, noise, stars and FWHM.",
            (
                night,
                ("det_id", "Detector id (DET-ID)."),
                ("exposures", "Exposures with a file row for this chip."),
                ("files_written", "Its files written."),
                ("files_lost", "Its files that could not be made."),
                *_COUNTS,
                ("loss_ratio", "frames_missing / frames_expected (0 to 1)."),
                ("overscan_median", "Median over its files of the overscan median, ADU (NULL: no overscan)."),
                ("overscan_noise", "Median over its files of the overscan noise, ADU."),
                *_QUICKLOOK_COLS,
            ),
            sql(_chip_health_0015),
        ),
        View(
            "v_weather_hourly",
            "Weather readings (status_history, keys weather.*) per hour: samples, mean, min and max of each key; "
            "true/false readings count as 1/0 (the mean is the fraction of the hour true).",
            (
                ("hour_utc", "Start of the hour (UTC)."),
                night,
                ("key", "What was measured, e.g. weather.humidity_pct."),
                ("unit", "Its unit (from the status board)."),
                ("samples", "Readings in the hour."),
                ("avg_value", "Mean."),
                ("min_value", "Lowest."),
                ("max_value", "Highest."),
            ),
            sql(_weather_hourly_0015),
        ),
    )


VIEWS_0015 = _views_0015()
SITE_TIME_COLUMNS_0015 = (
    ("timezone", "The site's time zone (site.timezone) when `gozen db upgrade` last ran."),
    ("utc_offset_min", "Its UTC offset then, minutes: the views' nights run local noon to local noon."),
)
SITE_TIME_COMMENT_0015 = "The site time the BI views name nights by (one row; written by `gozen db upgrade`)."

# -- end of revision 0015 -------------------------------------------------------------------------------------

VIEWS = VIEWS_0015  # the views as the newest revision leaves them (for docs and BI tool metadata)
SITE_TIME_COLUMNS = SITE_TIME_COLUMNS_0015
SITE_TIME_COMMENT = SITE_TIME_COMMENT_0015


class BadTimezone(ValueError):
    """A time zone name the views cannot be given."""


def utc_offset_min(tz_name: str, when: datetime | None = None) -> int:
    """The UTC offset of a time zone (at `when`, default now), in minutes."""
    if not _ZONE_NAME.match(tz_name):
        raise BadTimezone(f"time zone {tz_name!r}: not a time zone name")
    try:
        offset = (when or utcnow()).astimezone(ZoneInfo(tz_name)).utcoffset()
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise BadTimezone(f"time zone {tz_name!r}: {err}") from None
    assert offset is not None
    return int(offset.total_seconds() // 60)


def _site_time_select(tz_name: str, offset_min: int) -> str:
    utc_offset_min(tz_name)  # validates the name: it goes into the SQL text
    return f"SELECT CAST('{tz_name}' AS VARCHAR(64)) AS timezone, CAST({int(offset_min)} AS INTEGER) AS utc_offset_min"


def _run(conn: Connection, sql: str) -> None:
    """DDL as written: psycopg reads `%` as a placeholder (SQLAlchemy hands it parameters, if none)."""
    conn.exec_driver_sql(sql.replace("%", "%%") if conn.dialect.name == "postgresql" else sql)


def _comment(conn: Connection, what: str, comment: str) -> None:
    _run(conn, f"COMMENT ON {what} IS '{comment.replace(chr(39), chr(39) * 2)}'")


def write_site_time(conn: Connection, tz_name: str, offset_min: int) -> None:
    """(Re)write the one-row view v_site_time; the other views read it when queried."""
    select = _site_time_select(tz_name, offset_min)
    if conn.dialect.name == "postgresql":
        _run(conn, f"CREATE OR REPLACE VIEW {SITE_TIME} AS {select}")
        _comment(conn, f"VIEW {SITE_TIME}", SITE_TIME_COMMENT)
        for col, meaning in SITE_TIME_COLUMNS:
            _comment(conn, f"COLUMN {SITE_TIME}.{col}", meaning)
    else:
        _run(conn, f"DROP VIEW IF EXISTS {SITE_TIME}")
        _run(conn, f"CREATE VIEW {SITE_TIME} AS {select}")


def create_views(conn: Connection, views: Sequence[View], tz_name: str) -> None:
    """v_site_time (for `tz_name`), then `views`, with their comments on PostgreSQL (for Metabase, Grafana)."""
    write_site_time(conn, tz_name, utc_offset_min(tz_name))
    for v in views:
        _run(conn, f"CREATE VIEW {v.name} AS {v.sql[conn.dialect.name]}")
        if conn.dialect.name == "postgresql":
            _comment(conn, f"VIEW {v.name}", v.comment)
            for col, meaning in v.columns:
                _comment(conn, f"COLUMN {v.name}.{col}", meaning)


def drop_views(conn: Connection, views: Sequence[View]) -> None:
    for v in reversed(views):
        _run(conn, f"DROP VIEW IF EXISTS {v.name}")
    _run(conn, f"DROP VIEW IF EXISTS {SITE_TIME}")


def site_time(engine: Engine) -> tuple[str, int] | None:
    """(time zone, UTC offset in minutes) the views use; None before migration 0015."""
    from sqlalchemy import inspect

    if SITE_TIME not in inspect(engine).get_view_names():
        return None
    with engine.connect() as conn:
        tz, offset = conn.execute(text(f"SELECT timezone, utc_offset_min FROM {SITE_TIME}")).one()
    return str(tz), int(offset)


def set_site_time(engine: Engine, tz_name: str) -> bool:
    """Point the views at the site's time zone (its offset now); True if that changed v_site_time.
    Nothing happens before migration 0015 (no views yet)."""
    now = site_time(engine)
    wanted = (tz_name, utc_offset_min(tz_name))
    if now is None or now == wanted:
        return False
    with engine.begin() as conn:
        write_site_time(conn, *wanted)
    return True


# -- the read-only role BI tools connect as (PostgreSQL) ------------------------------------------------------

_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class RoleRefused(Exception):
    """The read-only role cannot be made here: SQLite, a bad name, or a user who may not create roles."""


def grant_read_only(engine: Engine, role: str, password: str | None) -> bool:
    """Make (or bring up to date) a LOGIN role that reads everything and writes nothing: CONNECT on the
    database, USAGE on the schema, SELECT on every table and view, SELECT on the tables the connecting user
    makes later (default privileges), and read-only transactions by default. True if it was created."""
    if engine.dialect.name != "postgresql":
        raise RoleRefused(
            "the database is SQLite: there are no roles. Serve it read-only with `gozen bi` (Datasette), "
            "or give BI tools the SQLite file opened read-only (file:...?mode=ro)"
        )
    if not _ROLE_NAME.match(role):
        raise RoleRefused(f"role {role!r}: use lower-case letters, digits and _ (not starting with a digit)")
    import psycopg
    from psycopg import sql

    with engine.begin() as conn:
        me, superuser, may = conn.exec_driver_sql(
            "SELECT current_user, rolsuper, rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"
        ).one()
        if not may:
            raise RoleRefused(
                f"user {me!r} may not create roles: run `gozen db bi-role` as a user with CREATEROLE "
                "(and the one gozen's tables belong to, for the default privileges)"
            )
        if role == me:
            raise RoleRefused(f"role {role!r} is the user gozen connects as: name another role")
        created = not conn.exec_driver_sql("SELECT 1 FROM pg_roles WHERE rolname = %(r)s", {"r": role}).first()
        db, schema = conn.exec_driver_sql("SELECT current_database(), current_schema()").one()
        r, s = sql.Identifier(role), sql.Identifier(schema)
        # only a superuser may name SUPERUSER, REPLICATION or BYPASSRLS at all (a new role has none of them)
        limits = sql.SQL(
            "LOGIN NOCREATEDB NOCREATEROLE INHERIT" + (" NOSUPERUSER NOREPLICATION NOBYPASSRLS" if superuser else "")
        )
        pw = sql.SQL(" PASSWORD {}").format(sql.Literal(password)) if password is not None else sql.SQL("")
        statements = [
            sql.SQL("{} ROLE {} ").format(sql.SQL("CREATE" if created else "ALTER"), r) + limits + pw,
            sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(r),
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(db), r),
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, r),
            sql.SQL("REVOKE CREATE ON SCHEMA {} FROM {}").format(s, r),
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(s, r),
            sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(s, r),
        ]
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            for stmt in statements:
                try:
                    cur.execute(stmt)
                except psycopg.errors.InsufficientPrivilege as err:
                    raise RoleRefused(
                        f"user {me!r} may not grant this ({str(err).strip()}): run `gozen db bi-role` as the user "
                        "gozen's tables belong to (database.url's), or as a superuser"
                    ) from None
        _check_read_only(conn, role, me, schema)
    return created


def _check_read_only(conn: Connection, role: str, me: str, schema: str) -> None:
    """GRANT by a user who does not own a table only warns: check the role reads everything, and no more."""
    unread = (
        conn.exec_driver_sql(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %(s)s AND c.relkind IN ('r', 'v', 'm', 'p') "
            "AND NOT has_table_privilege(%(r)s, c.oid, 'SELECT') ORDER BY 1",
            {"s": schema, "r": role},
        )
        .scalars()
        .all()
    )
    if unread:
        raise RoleRefused(
            f"role {role!r} cannot read {', '.join(unread[:5])}{' ...' if len(unread) > 5 else ''}: user {me!r} "
            "does not own them; run `gozen db bi-role` as the user gozen's tables belong to, or as a superuser"
        )
    too_much = conn.exec_driver_sql(
        "SELECT rolsuper OR rolbypassrls OR rolreplication FROM pg_roles WHERE rolname = %(r)s", {"r": role}
    ).scalar()
    if too_much:
        raise RoleRefused(f"role {role!r} is a superuser or bypasses row security: not a read-only role")
