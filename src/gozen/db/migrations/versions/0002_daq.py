"""DAQ: exposures, the files written per chip, and readout reports.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

from gozen.db.types import BigId, UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exposures",
        sa.Column(
            "exp_id",
            sa.Integer,
            primary_key=True,
            autoincrement=True,
            comment="Exposure id (EXP_ID; 8 digits in file names).",
        ),
        sa.Column("state", sa.String(16), nullable=False, comment="queued, armed, done, incomplete or failed."),
        sa.Column("object", sa.String(128), nullable=False, comment="OBJECT: target or field name."),
        sa.Column("data_type", sa.String(16), nullable=False, comment="DATA-TYP: OBJECT, FLAT or DARK."),
        sa.Column("obs_mode", sa.String(32), nullable=False, comment="OBS-MOD, e.g. high-cadence survey."),
        sa.Column("filter", sa.String(16), nullable=False, comment="FILTER."),
        sa.Column("project", sa.String(64), nullable=False, comment="PROJECT."),
        sa.Column("observer", sa.String(64), nullable=False, comment="OBSERVER."),
        sa.Column("n_frames", sa.Integer, nullable=False, comment="Frames per chip (NAXIS3)."),
        sa.Column("fps", sa.Float, nullable=False, comment="Frames per second (DATA-FPS)."),
        sa.Column("ra_deg", sa.Float, nullable=True, comment="Requested pointing RA (deg, ICRS), if any."),
        sa.Column("dec_deg", sa.Float, nullable=True, comment="Requested pointing Dec (deg, ICRS), if any."),
        sa.Column("recipe_uuid", sa.String(36), nullable=True, comment="Queue recipe that asked for it."),
        sa.Column("recipe_name", sa.String(128), nullable=True, comment="Name of that recipe."),
        sa.Column("requested_at", UtcDateTime, nullable=False, comment="When it was asked for."),
        sa.Column("start_at", UtcDateTime, nullable=True, comment="GPS time of the first frame (set when armed)."),
        sa.Column("end_at", UtcDateTime, nullable=True, comment="End of the last frame."),
        sa.Column("finished_at", UtcDateTime, nullable=True, comment="When every chip's file was accounted for."),
        sa.Column("chips", sa.JSON, nullable=True, comment="Detector ids expected (set when armed)."),
        sa.Column("snapshot", sa.JSON, nullable=True, comment="Status at exposure start: the FITS header values."),
        sa.PrimaryKeyConstraint("exp_id", name="pk_exposures"),
        comment="Exposures of the whole camera: one file per chip each.",
    )
    op.create_index("ix_exposures_state_exp_id", "exposures", ["state", "exp_id"])
    op.create_table(
        "daq_files",
        sa.Column("id", BigId, primary_key=True, autoincrement=True, comment="File number."),
        sa.Column("exp_id", sa.Integer, nullable=False, comment="Exposure (EXP_ID)."),
        sa.Column("det_id", sa.Integer, nullable=False, comment="Detector id (DET-ID)."),
        sa.Column("state", sa.String(16), nullable=False, comment="written, or lost (no file could be made)."),
        sa.Column("path", sa.Text, nullable=True, comment="Absolute path on the DAQ host."),
        sa.Column("filename", sa.String(64), nullable=False, comment="TMQ<q><YYYYMMDD><exp id><chip>.fits"),
        sa.Column("daq_host", sa.String(128), nullable=False, comment="Host that wrote it."),
        sa.Column("daq_volume", sa.String(128), nullable=True, comment="DAQ volume (config daq_volumes[].name)."),
        sa.Column("size_bytes", sa.BigInteger, nullable=False, comment="File size."),
        sa.Column(
            "checksum_xxh3",
            sa.String(16),
            nullable=True,
            comment="xxh3-64 of the whole file (hex), computed while writing.",
        ),
        sa.Column("frames_expected", sa.Integer, nullable=False, comment="Frames the exposure asked for."),
        sa.Column(
            "frames_written",
            sa.Integer,
            nullable=False,
            comment="Frames with pixels from the camera (damaged included).",
        ),
        sa.Column(
            "frames_missing",
            sa.Integer,
            nullable=False,
            comment="Frames never received (camera miss, ring full, writer lost).",
        ),
        sa.Column("frames_damaged", sa.Integer, nullable=False, comment="Frames received with a link error."),
        sa.Column("naxis1", sa.Integer, nullable=False, comment="NAXIS1"),
        sa.Column("naxis2", sa.Integer, nullable=False, comment="NAXIS2"),
        sa.Column("naxis3", sa.Integer, nullable=False, comment="NAXIS3"),
        sa.Column("writer", sa.String(64), nullable=False, comment="Writer program that made it."),
        sa.Column("created_at", UtcDateTime, nullable=False, comment="When it got its final name."),
        sa.PrimaryKeyConstraint("id", name="pk_daq_files"),
        sa.ForeignKeyConstraint(["exp_id"], ["exposures.exp_id"], name="fk_daq_files_exp_id_exposures"),
        sa.UniqueConstraint("exp_id", "det_id", name="uq_daq_files_exp_id_det_id"),
        comment="FITS files written by the DAQ: one per chip per exposure.",
    )
    op.create_index("ix_daq_files_created_at", "daq_files", ["created_at"])
    op.create_table(
        "readout_reports",
        sa.Column("exp_id", sa.Integer, nullable=False, comment="Exposure."),
        sa.Column("det_id", sa.Integer, nullable=False, comment="Detector id."),
        sa.Column("readout", sa.String(64), nullable=False, comment="Readout program."),
        sa.Column("recognised", sa.Boolean, nullable=False, comment="False: the chip did not answer at start."),
        sa.Column("frames_read", sa.Integer, nullable=False, comment="Frames the camera delivered."),
        sa.Column("frames_missed", sa.Integer, nullable=False, comment="Frames the camera did not deliver."),
        sa.Column("frames_damaged", sa.Integer, nullable=False, comment="Frames delivered with a link error."),
        sa.Column(
            "frames_dropped", sa.Integer, nullable=False, comment="Frames lost because the ring to the writer was full."
        ),
        sa.Column("created_at", UtcDateTime, nullable=False, comment="When the readout finished the chip."),
        sa.PrimaryKeyConstraint("exp_id", "det_id", name="pk_readout_reports"),
        sa.ForeignKeyConstraint(["exp_id"], ["exposures.exp_id"], name="fk_readout_reports_exp_id_exposures"),
        comment="What each readout saw of each chip in each exposure.",
    )


def downgrade() -> None:
    op.drop_table("readout_reports")
    op.drop_index("ix_daq_files_created_at", table_name="daq_files")
    op.drop_table("daq_files")
    op.drop_index("ix_exposures_state_exp_id", table_name="exposures")
    op.drop_table("exposures")
