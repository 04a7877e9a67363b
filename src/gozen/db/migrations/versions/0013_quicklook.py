"""Quick look: a binned picture and sky statistics of each chip's first frame (table quicklook);
exposures are found by time (an index on exposures.start_at).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from gozen.db.types import UtcDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quicklook",
        sa.Column(
            "exp_id", sa.Integer, sa.ForeignKey("exposures.exp_id"), primary_key=True, comment="Exposure (EXP_ID)."
        ),
        sa.Column("det_id", sa.Integer, primary_key=True, comment="Detector id (DET-ID)."),
        sa.Column("daq_host", sa.String(128), nullable=False, comment="DAQ host whose daq:quicklook made it."),
        sa.Column("made_at", UtcDateTime, nullable=False, comment="When it was made."),
        sa.Column("binning", sa.Integer, nullable=False, comment="Pixels binned (mean) into one, on each axis."),
        sa.Column("width", sa.Integer, nullable=False, comment="Width of the binned picture, pixels."),
        sa.Column("height", sa.Integer, nullable=False, comment="Height of the binned picture, pixels."),
        sa.Column("z1", sa.Float, nullable=False, comment="Lower display limit (zscale), ADU."),
        sa.Column("z2", sa.Float, nullable=False, comment="Upper display limit (zscale), ADU."),
        sa.Column(
            "png", sa.LargeBinary, nullable=False, comment="The binned first frame, 8-bit grey PNG scaled z1..z2."
        ),
        sa.Column("sky_adu", sa.Float, nullable=True, comment="Median sky level of the first frame, ADU."),
        sa.Column("noise_adu", sa.Float, nullable=True, comment="Sky noise (background RMS) of the first frame, ADU."),
        sa.Column(
            "n_stars",
            sa.Integer,
            nullable=True,
            comment="Sources detected (sep) on the first frame (NULL: not counted).",
        ),
        sa.Column(
            "fwhm_px",
            sa.Float,
            nullable=True,
            comment="Median FWHM of those sources, unbinned pixels (NULL: none found or not measured).",
        ),
        comment="Quick look of each chip's first frame per exposure (daq:quicklook): a picture and sky statistics.",
    )
    op.create_index("ix_quicklook_made_at", "quicklook", ["made_at"])
    op.create_index("ix_exposures_start_at", "exposures", ["start_at"])


def downgrade() -> None:
    op.drop_index("ix_exposures_start_at", "exposures")
    op.drop_index("ix_quicklook_made_at", "quicklook")
    op.drop_table("quicklook")
