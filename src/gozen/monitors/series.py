"""Status history for plots, thinned in the database: a few hundred slices per key whatever the range.

Two days of readings every 5 s are ~35,000 rows a key; a plot needs a point per pixel column. Up to
EXACT_ROWS readings in the range, the database groups each key's readings into `buckets` equal slices
of [since, until] and returns, per slice, the minimum, maximum and mean of numbers, or the smallest and
largest of other values (false < true: a slice where a flag changed says so). Over that, reading every
row costs seconds (a key's rows lie scattered among the others'), so each slice shows its first reading,
found through the (key, time) index: a blip shorter than a slice (72 s at 6 h, under 5 min at 24 h) may
not show; the CSV has every reading. SQLite and PostgreSQL both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, bindparam, text

BUCKETS = 300
EXACT_ROWS = 20_000

_SLICE = {
    "sqlite": "CAST(round((julianday(time) - julianday(:t0)) * 86400.0, 3) / :width AS INTEGER)",  # to the ms
    "postgresql": "CAST(floor(extract(epoch FROM (time - CAST(:t0 AS timestamptz))) / :width) AS INTEGER)",
}
_NUMBER = {
    "sqlite": "CASE WHEN json_type(value) IN ('integer', 'real') THEN CAST(value AS REAL) END",
    "postgresql": "CASE WHEN json_typeof(value) = 'number' THEN CAST(CAST(value AS TEXT) AS DOUBLE PRECISION) END",
}
_TEXT = {"sqlite": "CAST(value AS TEXT)", "postgresql": "CAST(value AS TEXT)"}


@dataclass(frozen=True)
class Bucket:
    """One slice of a numeric key: its middle time, and the readings' min, max and mean in it."""

    time: datetime
    lo: float
    hi: float
    mean: float


@dataclass(frozen=True)
class Span:
    """One slice of a true/false or text key: its start and end, and the smallest and largest value read in it
    (as text sorts: false < true; equal when the value held all through)."""

    start: datetime
    end: datetime
    lo: object
    hi: object


def time_param(engine: Engine, t: datetime) -> str | datetime:
    """A time as a query parameter compared with status_history.time (SQLite keeps it as naive UTC text)."""
    t = t.astimezone(UTC)
    return t.replace(tzinfo=None).isoformat(sep=" ") if engine.dialect.name == "sqlite" else t


def _rows(engine: Engine, expr: str, keys: list[str], since: datetime, until: datetime, buckets: int) -> list:  # type: ignore[type-arg]
    dialect = engine.dialect.name if engine.dialect.name in _SLICE else "sqlite"
    width = max((until - since).total_seconds() / buckets, 1e-3)
    q = text(
        f"SELECT key, {_SLICE[dialect]} AS b, {expr.format(v=_NUMBER[dialect], t=_TEXT[dialect])} "
        "FROM status_history WHERE key IN :keys AND time >= :since AND time <= :until GROUP BY key, b ORDER BY key, b"
    ).bindparams(bindparam("keys", expanding=True))
    params = {
        "keys": keys,
        "t0": time_param(engine, since),
        "since": time_param(engine, since),
        "until": time_param(engine, until),
        "width": width,
    }
    with engine.connect() as conn:
        return list(conn.execute(q, params))


def many(engine: Engine, keys: list[str], since: datetime, until: datetime) -> bool:
    """More than EXACT_ROWS readings of these keys in the range? (Counted in the index alone, and only so far.)"""
    q = text(
        "SELECT COUNT(*) FROM (SELECT 1 FROM status_history WHERE key IN :keys AND time >= :since AND time <= :until "
        "LIMIT :cap) AS n"
    ).bindparams(bindparam("keys", expanding=True))
    params = {"keys": keys, "since": time_param(engine, since), "until": time_param(engine, until)}
    with engine.connect() as conn:
        return int(conn.execute(q, params | {"cap": EXACT_ROWS + 1}).scalar_one()) > EXACT_ROWS


_FIRST_IN_SLICE = {
    # key, time, value as text of each key's first reading at or after each slice's start
    "sqlite": "SELECT key, time, CAST(value AS TEXT) FROM status_history WHERE id IN ("
    " SELECT (SELECT id FROM status_history WHERE key = k.value AND time >= b.value AND time <= :until"
    " ORDER BY time LIMIT 1) FROM json_each(:keys) AS k, json_each(:bounds) AS b)",
    "postgresql": "SELECT DISTINCT k.key, h.time, CAST(h.value AS TEXT) FROM unnest(CAST(:keys AS TEXT[])) AS k(key)"
    " CROSS JOIN unnest(CAST(:bounds AS TIMESTAMPTZ[])) AS b(t) CROSS JOIN LATERAL (SELECT time, value"
    " FROM status_history WHERE key = k.key AND time >= b.t AND time <= :until ORDER BY time LIMIT 1) AS h",
}


def sampled(
    engine: Engine, keys: list[str], since: datetime, until: datetime, buckets: int
) -> list[tuple[str, int, object]]:
    """(key, slice, value) of each key's first reading in each slice, through the (key, time) index."""
    width = (until - since).total_seconds() / buckets
    bounds = [since + timedelta(seconds=i * width) for i in range(buckets)]
    pg = engine.dialect.name == "postgresql"
    params = {
        "keys": keys if pg else json.dumps(keys),
        "bounds": bounds if pg else json.dumps([time_param(engine, b) for b in bounds]),
        "until": time_param(engine, until),
    }
    with engine.connect() as conn:
        rows = conn.execute(text(_FIRST_IN_SLICE["postgresql" if pg else "sqlite"]), params).all()
    out = []
    for key, t, value in rows:
        t = t if isinstance(t, datetime) else datetime.fromisoformat(t)
        t = t.replace(tzinfo=UTC) if t.tzinfo is None else t
        b = int((t - since).total_seconds() // width)
        if 0 <= b < buckets and value is not None:
            out.append((key, b, json.loads(value)))
    return sorted(out, key=lambda r: (r[0], r[1]))


def middle(since: datetime, until: datetime, buckets: int, b: int) -> datetime:
    width = (until - since).total_seconds() / buckets
    return since + timedelta(seconds=(b + 0.5) * width)


def numbers(
    engine: Engine, keys: list[str], since: datetime, until: datetime, buckets: int = BUCKETS
) -> dict[str, list[Bucket]]:
    """key -> its buckets with numbers in them, oldest first (a bucket without readings is left out: a gap)."""
    if not keys:
        return {}
    out: dict[str, list[Bucket]] = {k: [] for k in keys}
    if many(engine, keys, since, until):
        for key, b, v in sampled(engine, keys, since, until, buckets):
            if isinstance(v, int | float) and not isinstance(v, bool):
                out[key].append(Bucket(middle(since, until, buckets, b), float(v), float(v), float(v)))
        return out
    for key, b, lo, hi, mean in _rows(engine, "MIN({v}), MAX({v}), AVG({v})", keys, since, until, buckets):
        if lo is not None and 0 <= b < buckets:
            out[key].append(Bucket(middle(since, until, buckets, b), float(lo), float(hi), float(mean)))
    return out


def states(
    engine: Engine, keys: list[str], since: datetime, until: datetime, buckets: int = BUCKETS
) -> dict[str, list[Span]]:
    """key -> a Span per bucket with a reading (true/false, text), oldest first."""
    if not keys:
        return {}
    width = timedelta(seconds=(until - since).total_seconds() / buckets)
    out: dict[str, list[Span]] = {k: [] for k in keys}
    if many(engine, keys, since, until):
        for key, b, v in sampled(engine, keys, since, until, buckets):
            start = since + b * width
            out[key].append(Span(start, start + width, v, v))
        return out
    for key, b, lo, hi in _rows(engine, "MIN({t}), MAX({t})", keys, since, until, buckets):
        if lo is not None and 0 <= b < buckets:
            start = since + b * width
            out[key].append(Span(start, start + width, json.loads(lo), json.loads(hi)))
    return out


def has_history_before(engine: Engine, keys: list[str], before: datetime) -> bool:
    """Whether any of these keys has a reading older than `before`."""
    q = text("SELECT 1 FROM status_history WHERE key IN :keys AND time < :t LIMIT 1").bindparams(
        bindparam("keys", expanding=True)
    )
    with engine.connect() as conn:
        return conn.execute(q, {"keys": keys, "t": time_param(engine, before)}).first() is not None
