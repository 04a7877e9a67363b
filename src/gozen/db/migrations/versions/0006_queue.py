"""Queue: recipes, their history, the server's state.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

from gozen.db.types import BigId, UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recipes",
        sa.Column("uuid", sa.String(36), primary_key=True, comment="Recipe UUID (given or assigned at submission)."),
        sa.Column("name", sa.String(128), nullable=False, comment="Recipe name, e.g. Queue-Observer INB 11 45+01."),
        sa.Column("priority", sa.String(16), nullable=False, comment="low, normal, high or interrupt."),
        sa.Column(
            "priority_rank", sa.Integer, nullable=False, comment="0 interrupt, 1 high, 2 normal, 3 low: ordering key."
        ),
        sa.Column(
            "state",
            sa.String(16),
            nullable=False,
            comment="queued, executing, done, failed, aborted, interrupted, expired or cancelled.",
        ),
        sa.Column("project", sa.String(64), nullable=False, comment="PROJECT."),
        sa.Column("observer", sa.String(64), nullable=False, comment="OBSERVER."),
        sa.Column("not_before", UtcDateTime, nullable=True, comment="Window start (UTC)."),
        sa.Column("not_after", UtcDateTime, nullable=True, comment="Window end (UTC): expires after it."),
        sa.Column("ra_deg", sa.Float, nullable=True, comment="First target RA (deg), for scheduling."),
        sa.Column("dec_deg", sa.Float, nullable=True, comment="First target Dec (deg), for scheduling."),
        sa.Column("body", sa.JSON, nullable=False, comment="The recipe as validated (JSON)."),
        sa.Column("progress", sa.JSON, nullable=True, comment="Steps done and exposures done in the current step."),
        sa.Column("submitted_at", UtcDateTime, nullable=False, comment="When it was submitted."),
        sa.Column("submitted_by", sa.String(64), nullable=False, comment="Who submitted it (user, token or cli)."),
        sa.Column("started_at", UtcDateTime, nullable=True, comment="When it last started executing."),
        sa.Column("finished_at", UtcDateTime, nullable=True, comment="When it ended (done, failed, aborted, ...)."),
        sa.Column("message", sa.Text, nullable=True, comment="Outcome or why it waits / failed."),
        sa.PrimaryKeyConstraint("uuid", name="pk_recipes"),
        comment="Queue recipes: what remote observers submitted, and where each stands.",
    )
    op.create_index(
        "ix_recipes_state_priority_rank_submitted_at", "recipes", ["state", "priority_rank", "submitted_at"]
    )
    op.create_index("ix_recipes_state_uuid", "recipes", ["state", "uuid"])
    op.create_table(
        "recipe_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True, comment="Event number."),
        sa.Column("recipe_uuid", sa.String(36), nullable=False, comment="recipes.uuid"),
        sa.Column("time", UtcDateTime, nullable=False, comment="When (UTC)."),
        sa.Column(
            "kind",
            sa.String(32),
            nullable=False,
            comment="submitted, started, step, preempted, interrupted, requeued, done, failed, aborted, cancelled, "
            "expired.",
        ),
        sa.Column("message", sa.Text, nullable=False, comment="One line for a person."),
        sa.PrimaryKeyConstraint("id", name="pk_recipe_events"),
        comment="The full history of every recipe.",
    )
    op.create_index("ix_recipe_events_recipe_uuid_id", "recipe_events", ["recipe_uuid", "id"])
    op.create_table(
        "queue_state",
        sa.Column("key", sa.String(64), primary_key=True, comment="mode, paused, server, activity."),
        sa.Column("value", sa.JSON, nullable=True, comment="Its value (JSON)."),
        sa.Column("updated_at", UtcDateTime, nullable=False, comment="When it was set."),
        sa.PrimaryKeyConstraint("key", name="pk_queue_state"),
        comment="The queue server's state: mode (normal / maintenance), paused, pid and what it is doing.",
    )


def downgrade() -> None:
    op.drop_table("queue_state")
    op.drop_index("ix_recipe_events_recipe_uuid_id", table_name="recipe_events")
    op.drop_table("recipe_events")
    op.drop_index("ix_recipes_state_uuid", table_name="recipes")
    op.drop_index("ix_recipes_state_priority_rank_submitted_at", table_name="recipes")
    op.drop_table("recipes")
