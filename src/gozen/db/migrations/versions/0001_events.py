"""The events table: process state changes and faults from every host.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

from gozen.db.types import BigId, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True, comment="Event number, increasing."),
        sa.Column("time", UtcDateTime, nullable=False, comment="When it happened (UTC)."),
        sa.Column("host", sa.String(128), nullable=False, comment="Host where it happened (config hosts[].name)."),
        sa.Column("source", sa.String(64), nullable=False, comment="What reported it, e.g. supervisord, dfmonitor."),
        sa.Column("kind", sa.String(64), nullable=False, comment="What happened, e.g. process_exited, process_state."),
        sa.Column(
            "subject", sa.String(256), nullable=False, comment="What it happened to, e.g. group:program or a volume."
        ),
        sa.Column("severity", sa.String(16), nullable=False, comment="info, warning or error."),
        sa.Column("message", sa.Text, nullable=False, comment="One line for a person."),
        sa.Column("data", sa.JSON, nullable=True, comment="Details as reported (JSON)."),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        comment="Things that happened on any host: process state changes, faults, thresholds crossed.",
    )
    op.create_index("ix_events_time", "events", ["time"])
    op.create_index("ix_events_kind_time", "events", ["kind", "time"])


def downgrade() -> None:
    op.drop_index("ix_events_kind_time", table_name="events")
    op.drop_index("ix_events_time", table_name="events")
    op.drop_table("events")
