"""Table definitions (SQLAlchemy Core). Every table and column carries a comment,
because BI tools (Metabase, Grafana) read this schema directly; docs/database.md
is generated from these comments by `gozen db docs`."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Index, MetaData, String, Table, Text

from gozen.db.types import BigId, UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

events = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True, comment="Event number, increasing."),
    Column("time", UtcDateTime, nullable=False, comment="When it happened (UTC)."),
    Column("host", String(128), nullable=False, comment="Host where it happened (config hosts[].name)."),
    Column("source", String(64), nullable=False, comment="What reported it, e.g. supervisord, dfmonitor."),
    Column("kind", String(64), nullable=False, comment="What happened, e.g. process_exited, process_state."),
    Column("subject", String(256), nullable=False, comment="What it happened to, e.g. group:program or a volume."),
    Column("severity", String(16), nullable=False, comment="info, warning or error."),
    Column("message", Text, nullable=False, comment="One line for a person."),
    Column("data", JSON, nullable=True, comment="Details as reported (JSON)."),
    comment="Things that happened on any host: process state changes, faults, thresholds crossed.",
)
Index(None, events.c.time)
Index(None, events.c.kind, events.c.time)
