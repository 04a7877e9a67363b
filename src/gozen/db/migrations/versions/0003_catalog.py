"""The catalog: files and their replicas on storage nodes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

from gozen.db.types import BigId, UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", BigId, primary_key=True, autoincrement=True, comment="Catalog number."),
        sa.Column("filename", sa.String(64), nullable=False, comment="File name (unique observatory-wide)."),
        sa.Column(
            "daq_file_id", sa.BigInteger, nullable=True, comment="daq_files.id it came from (NULL: found by scanning)."
        ),
        sa.Column("exp_id", sa.Integer, nullable=True, comment="Exposure (EXP_ID)."),
        sa.Column("det_id", sa.Integer, nullable=True, comment="Detector id."),
        sa.Column("size_bytes", sa.BigInteger, nullable=False, comment="Size."),
        sa.Column("checksum_xxh3", sa.String(16), nullable=False, comment="xxh3-64 (hex) every copy must match."),
        sa.Column("daq_host", sa.String(128), nullable=False, comment="DAQ host holding the original."),
        sa.Column("daq_volume", sa.String(128), nullable=True, comment="DAQ volume holding it."),
        sa.Column("daq_path", sa.Text, nullable=False, comment="Path of the original on the DAQ host."),
        sa.Column("daq_state", sa.String(16), nullable=False, comment="present, or deleted (by the janitor)."),
        sa.Column("registered_at", UtcDateTime, nullable=False, comment="When transfer:push catalogued it."),
        sa.Column("daq_deleted_at", UtcDateTime, nullable=True, comment="When the janitor removed the DAQ copy."),
        sa.PrimaryKeyConstraint("id", name="pk_files"),
        sa.UniqueConstraint("filename", name="uq_files_filename"),
        comment="The catalog: every file the DAQ wrote, registered once.",
    )
    op.create_index("ix_files_daq_state_registered_at", "files", ["daq_state", "registered_at"])
    op.create_table(
        "replicas",
        sa.Column("id", BigId, primary_key=True, autoincrement=True, comment="Replica number."),
        sa.Column("file_id", sa.BigInteger, nullable=False, comment="The file (files.id)."),
        sa.Column(
            "node",
            sa.String(128),
            nullable=True,
            comment="Storage node (config storage_nodes[].name); NULL until placed.",
        ),
        sa.Column("path", sa.Text, nullable=True, comment="Path on the node."),
        sa.Column("state", sa.String(16), nullable=False, comment="queued, copying, verified, failed or lost."),
        sa.Column("attempts", sa.Integer, nullable=False, comment="Copies tried."),
        sa.Column("last_error", sa.Text, nullable=True, comment="Why the last attempt failed."),
        sa.Column("claimed_by", sa.String(128), nullable=True, comment="Agent copying it (host:program:pid)."),
        sa.Column("claimed_at", UtcDateTime, nullable=True, comment="When it was claimed."),
        sa.Column("next_try_at", UtcDateTime, nullable=True, comment="Not to be tried before this (backoff)."),
        sa.Column("queued_at", UtcDateTime, nullable=False, comment="When it was queued."),
        sa.Column("verified_at", UtcDateTime, nullable=True, comment="When its checksum was verified on the node."),
        sa.PrimaryKeyConstraint("id", name="pk_replicas"),
        sa.ForeignKeyConstraint(["file_id"], ["files.id"], name="fk_replicas_file_id_files"),
        sa.UniqueConstraint("file_id", "node", name="uq_replicas_file_id_node"),
        comment="Copies of catalogued files on storage nodes, and the copy jobs that make them.",
    )
    op.create_index("ix_replicas_state_next_try_at", "replicas", ["state", "next_try_at"])
    op.create_index("ix_replicas_file_id", "replicas", ["file_id"])


def downgrade() -> None:
    op.drop_index("ix_replicas_file_id", table_name="replicas")
    op.drop_index("ix_replicas_state_next_try_at", table_name="replicas")
    op.drop_table("replicas")
    op.drop_index("ix_files_daq_state_registered_at", table_name="files")
    op.drop_table("files")
