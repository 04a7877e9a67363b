"""Archive export and storage-node retention.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

from gozen.db.types import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("replicas") as batch:
        batch.add_column(
            sa.Column("expired_at", UtcDateTime, nullable=True, comment="When retention removed it from the node.")
        )
        batch.alter_column(
            "state",
            existing_type=sa.String(16),
            existing_nullable=False,
            comment="queued, copying, verified, failed, lost, or expired (removed by the node's retention).",
        )
    op.create_table(
        "exports",
        sa.Column("file_id", sa.BigInteger, primary_key=True, comment="The file (files.id)."),
        sa.Column(
            "state",
            sa.String(16),
            nullable=False,
            comment="not_selected (not for the archive), packaged, exported (sent and verified), "
            "acknowledged (the archive took it) or rejected (to be sent again).",
        ),
        sa.Column("package", sa.String(64), nullable=True, comment="Package name: <night>-<host>-<nnn>."),
        sa.Column("night", sa.String(8), nullable=True, comment="Observing night YYYYMMDD (from the file name)."),
        sa.Column("data_type", sa.String(16), nullable=True, comment="DATA-TYP from the header."),
        sa.Column("project", sa.String(64), nullable=True, comment="PROJECT from the header."),
        sa.Column(
            "manifest", sa.JSON, nullable=True, comment="The file's manifest entry: size, checksum, key header values."
        ),
        sa.Column("source_path", sa.Text, nullable=True, comment="Replica it was sent from."),
        sa.Column(
            "packaged_at", UtcDateTime, nullable=False, comment="When it was put in a package (or not selected)."
        ),
        sa.Column("exported_at", UtcDateTime, nullable=True, comment="When the archive copy was verified."),
        sa.Column("acknowledged_at", UtcDateTime, nullable=True, comment="When the archive's receipt named it."),
        sa.Column("last_error", sa.Text, nullable=True, comment="Why the last send or the archive refused it."),
        sa.PrimaryKeyConstraint("file_id", name="pk_exports"),
        sa.ForeignKeyConstraint(["file_id"], ["files.id"], name="fk_exports_file_id_files"),
        comment="Export of raw files to the public archive, in nightly packages with manifests.",
    )
    op.create_index("ix_exports_state_package", "exports", ["state", "package"])


def downgrade() -> None:
    op.drop_index("ix_exports_state_package", table_name="exports")
    op.drop_table("exports")
    with op.batch_alter_table("replicas") as batch:
        batch.drop_column("expired_at")
        batch.alter_column(
            "state",
            existing_type=sa.String(16),
            existing_nullable=False,
            comment="queued, copying, verified, failed or lost.",
        )
