"""The camera split over DAQ hosts, and full readouts: readout_reports.daq_host, and each file's
overscan level and noise (daq_files.overscan_median, daq_files.overscan_noise).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

DAQ_HOST = "DAQ host of the readout (NULL: reported before the camera could be split over hosts)."
MEDIAN = "Median of the frames' overscan medians, ADU (NULL: a light-only readout has no overscan)."
NOISE = "Median of the frames' overscan noise (1.4826 x MAD), ADU (NULL: no overscan)."


def upgrade() -> None:
    with op.batch_alter_table("readout_reports") as batch:
        batch.add_column(sa.Column("daq_host", sa.String(128), nullable=True, comment=DAQ_HOST))
    with op.batch_alter_table("daq_files") as batch:
        batch.add_column(sa.Column("overscan_median", sa.Float, nullable=True, comment=MEDIAN))
        batch.add_column(sa.Column("overscan_noise", sa.Float, nullable=True, comment=NOISE))


def downgrade() -> None:
    with op.batch_alter_table("daq_files") as batch:
        batch.drop_column("overscan_noise")
        batch.drop_column("overscan_median")
    with op.batch_alter_table("readout_reports") as batch:
        batch.drop_column("daq_host")
