"""Nightly reports (www:report): one row per night, with its totals and whether it reached Slack.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from gozen.db.types import UtcDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nightly_reports",
        sa.Column(
            "night",
            sa.String(10),
            primary_key=True,
            comment="The night, named by the local date of its evening (YYYY-MM-DD).",
        ),
        sa.Column(
            "host", sa.String(128), nullable=False, comment="Web host whose www:report made it (the files are there)."
        ),
        sa.Column("made_at", UtcDateTime, nullable=False, comment="When it was made."),
        sa.Column("start_at", UtcDateTime, nullable=False, comment="Start of the span reported (UTC)."),
        sa.Column("end_at", UtcDateTime, nullable=False, comment="End of the span reported (UTC)."),
        sa.Column("path", sa.Text, nullable=False, comment="Directory of its index.html and PNG plots on that host."),
        sa.Column("exposures", sa.Integer, nullable=False, comment="Exposures started in the night."),
        sa.Column("frames", sa.BigInteger, nullable=False, comment="Frames written (all chips)."),
        sa.Column("frames_lost", sa.BigInteger, nullable=False, comment="Frames missing or dropped (all chips)."),
        sa.Column("bytes", sa.BigInteger, nullable=False, comment="Bytes of FITS files written."),
        sa.Column("summary", sa.Text, nullable=False, comment="The one-line summary posted with the link."),
        sa.Column(
            "slack_state",
            sa.String(16),
            nullable=False,
            comment="pending, posted, failed or off (no Slack to post to).",
        ),
        sa.Column("slack_error", sa.Text, nullable=True, comment="Why the last post failed."),
        sa.Column("posted_at", UtcDateTime, nullable=True, comment="When it was posted to Slack."),
        comment="Nightly reports (www:report): one per night, with its totals and whether it reached Slack.",
    )


def downgrade() -> None:
    op.drop_table("nightly_reports")
