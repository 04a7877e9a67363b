"""The status board: latest values and their history.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

from gozen.db.types import BigId, UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "status",
        sa.Column(
            "key",
            sa.String(128),
            primary_key=True,
            comment="What is measured, e.g. df.node0.used_pct, weather.humidity_pct.",
        ),
        sa.Column("value", sa.JSON, nullable=True, comment="Latest value (number, text or true/false)."),
        sa.Column("unit", sa.String(16), nullable=False, comment="Unit, e.g. %, B, degC."),
        sa.Column("source", sa.String(64), nullable=False, comment="Program that measured it, e.g. storage:dfmonitor."),
        sa.Column("time", UtcDateTime, nullable=False, comment="When it was measured (UTC)."),
        sa.Column("max_age_s", sa.Float, nullable=False, comment="Older than this, the value is stale."),
        sa.PrimaryKeyConstraint("key", name="pk_status"),
        comment="The status board: the latest value of everything monitored.",
    )
    op.create_table(
        "status_history",
        sa.Column("id", BigId, primary_key=True, autoincrement=True, comment="Reading number."),
        sa.Column("key", sa.String(128), nullable=False, comment="status.key"),
        sa.Column("value", sa.JSON, nullable=True, comment="Value then."),
        sa.Column("time", UtcDateTime, nullable=False, comment="When it was measured (UTC)."),
        sa.PrimaryKeyConstraint("id", name="pk_status_history"),
        comment="Every reading of the status board, for plots and BI tools.",
    )
    op.create_index("ix_status_history_key_time", "status_history", ["key", "time"])


def downgrade() -> None:
    op.drop_index("ix_status_history_key_time", table_name="status_history")
    op.drop_table("status_history")
    op.drop_table("status")
