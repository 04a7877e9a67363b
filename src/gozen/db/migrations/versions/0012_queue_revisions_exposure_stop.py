"""A queued recipe can change (moved up by an operator, updated by a new alert): recipes.revision;
an exposure can be stopped early, at a frame boundary (unsafe weather): exposures.stop_at, stop_reason.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from gozen.db.types import UtcDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

REVISION = "0 as submitted; +1 each time a queued recipe is changed (moved up, updated by a new alert)."
STOP_AT = "When it was asked to stop early (unsafe weather, an abort): it ends at the next frame boundary."
STOP_REASON = "Why it was asked to stop early, and by whom."


def upgrade() -> None:
    with op.batch_alter_table("recipes") as batch:
        batch.add_column(sa.Column("revision", sa.Integer, nullable=False, server_default="0", comment=REVISION))
    # Not a batch (a copy of the table on SQLite): daq_files refers to exposures, and SQLite adds columns in place.
    op.add_column("exposures", sa.Column("stop_at", UtcDateTime, nullable=True, comment=STOP_AT))
    op.add_column("exposures", sa.Column("stop_reason", sa.Text, nullable=True, comment=STOP_REASON))


def downgrade() -> None:
    op.drop_column("exposures", "stop_reason")  # SQLite >= 3.35 drops a column in place
    op.drop_column("exposures", "stop_at")
    with op.batch_alter_table("recipes") as batch:
        batch.drop_column("revision")
