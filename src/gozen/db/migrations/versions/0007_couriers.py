"""Couriers: alerts seen, the outbox, feed state.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

from gozen.db.types import BigId, UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True, comment="Alert number."),
        sa.Column("feed", sa.String(16), nullable=False, comment="cneos, gaia, maxi or mpec."),
        sa.Column(
            "key", sa.String(128), nullable=False, comment="Its identity in the feed (designation + time, name, id)."
        ),
        sa.Column("title", sa.String(256), nullable=False, comment="Name or designation."),
        sa.Column("event_time", UtcDateTime, nullable=True, comment="When it happened (close approach, alert, issue)."),
        sa.Column("ra_deg", sa.Float, nullable=True, comment="Position RA (deg), if any."),
        sa.Column("dec_deg", sa.Float, nullable=True, comment="Position Dec (deg), if any."),
        sa.Column("data", sa.JSON, nullable=False, comment="Its fields as read from the feed."),
        sa.Column("seen_at", UtcDateTime, nullable=False, comment="When a courier first read it."),
        sa.Column(
            "followup_uuid", sa.String(36), nullable=True, comment="The queue recipe a follow-up rule made of it."
        ),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.UniqueConstraint("feed", "key", name="uq_alerts_feed_key"),
        comment="What the alert feeds said, each once: a restarted courier never posts twice.",
    )
    op.create_index("ix_alerts_feed_seen_at", "alerts", ["feed", "seen_at"])
    op.create_table(
        "outbox",
        sa.Column("id", BigId, primary_key=True, autoincrement=True, comment="Message number."),
        sa.Column(
            "kind", sa.String(32), nullable=False, comment="cneos, gaia, mpec, failure, snippet ... (for routing)."
        ),
        sa.Column("notifier", sa.String(64), nullable=False, comment="config notifiers[].name it goes to."),
        sa.Column("text", sa.Text, nullable=False, comment="Plain text (also the fallback of rich messages)."),
        sa.Column("blocks", sa.JSON, nullable=True, comment="Slack Block Kit blocks, if any."),
        sa.Column("state", sa.String(16), nullable=False, comment="pending, sent or failed (given up)."),
        sa.Column("attempts", sa.Integer, nullable=False, comment="Posts tried."),
        sa.Column("next_try_at", UtcDateTime, nullable=False, comment="Not to be tried before this (backoff)."),
        sa.Column("created_at", UtcDateTime, nullable=False, comment="When it was made."),
        sa.Column("sent_at", UtcDateTime, nullable=True, comment="When the service took it."),
        sa.Column("last_error", sa.Text, nullable=True, comment="Why the last post failed."),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        comment="Messages to Slack and other services: kept until delivered, retried with backoff.",
    )
    op.create_index("ix_outbox_state_next_try_at", "outbox", ["state", "next_try_at"])
    op.create_table(
        "feed_state",
        sa.Column("feed", sa.String(16), primary_key=True, comment="cneos, gaia, maxi or mpec."),
        sa.Column("etag", sa.String(256), nullable=True, comment="ETag of the last response (conditional GET)."),
        sa.Column("last_modified", sa.String(64), nullable=True, comment="Last-Modified of the last response."),
        sa.Column("checked_at", UtcDateTime, nullable=False, comment="When it was last read."),
        sa.Column("status", sa.String(256), nullable=False, comment="ok, not modified, or what went wrong."),
        sa.Column(
            "cursor", sa.BigInteger, nullable=True, comment="For feed 'events': the last event turned into messages."
        ),
        sa.PrimaryKeyConstraint("feed", name="pk_feed_state"),
        comment="Each feed's last read, for conditional GETs and the Alerts page.",
    )


def downgrade() -> None:
    op.drop_table("feed_state")
    op.drop_index("ix_outbox_state_next_try_at", table_name="outbox")
    op.drop_table("outbox")
    op.drop_index("ix_alerts_feed_seen_at", table_name="alerts")
    op.drop_table("alerts")
