"""outbox.state may say `unrouted`: a message whose kind no notifier takes (kept, never posted).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

OLD = "pending, sent or failed (given up)."
NEW = "pending, sent, failed (given up) or unrouted (no notifier takes its kind: never posted)."


def _comment(new: str, old: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        return  # SQLite keeps no column comments
    op.alter_column(
        "outbox", "state", existing_type=sa.String(16), existing_nullable=False, comment=new, existing_comment=old
    )


def upgrade() -> None:
    _comment(NEW, OLD)


def downgrade() -> None:
    _comment(OLD, NEW)
