"""files.daq_state may say `missing`: audit found the DAQ copy gone before the janitor freed it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

OLD = "present, or deleted (by the janitor)."
NEW = "present, deleted (by the janitor), or missing (gone from the DAQ volume without the janitor; found by audit)."


def _comment(new: str, old: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        return  # SQLite keeps no column comments (and rebuilding `files` would trip its foreign keys)
    op.alter_column(
        "files", "daq_state", existing_type=sa.String(16), existing_nullable=False, comment=new, existing_comment=old
    )


def upgrade() -> None:
    _comment(NEW, OLD)


def downgrade() -> None:
    _comment(OLD, NEW)
