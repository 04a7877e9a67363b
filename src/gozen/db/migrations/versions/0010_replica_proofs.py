"""Replicas carry their last proof: replicas.proved_at, and the state `copied` (on the node, fsynced,
waiting for its proof on the node's own host).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from gozen.db.types import UtcDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

OLD = "queued, copying, verified, failed, lost, or expired (removed by the node's retention)."
NEW = (
    "queued, copying, copied (on the node and fsynced, waiting for its proof on the node's host), verified, "
    "failed, lost, or expired (removed by the node's retention)."
)
PROVED = (
    "When the copy was last proven whole: its checksum read from the node's disk on the node's own host "
    "(or, for a node without a gozen host, an rsync checksum pass). The janitor trusts only recent proofs."
)


def upgrade() -> None:
    with op.batch_alter_table("replicas") as batch:
        batch.add_column(sa.Column("proved_at", UtcDateTime, nullable=True, comment=PROVED))
    op.execute("UPDATE replicas SET proved_at = verified_at WHERE state = 'verified'")
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column(
            "replicas", "state", existing_type=sa.String(16), existing_nullable=False, comment=NEW, existing_comment=OLD
        )


def downgrade() -> None:
    op.execute("UPDATE replicas SET state = 'queued', node = NULL, path = NULL WHERE state = 'copied'")
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column(
            "replicas", "state", existing_type=sa.String(16), existing_nullable=False, comment=OLD, existing_comment=NEW
        )
    with op.batch_alter_table("replicas") as batch:
        batch.drop_column("proved_at")
