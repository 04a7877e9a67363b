"""BI views: v_nightly_summary, v_exposures, v_file_lineage, v_chip_health, v_weather_hourly, and v_site_time
(the site's UTC offset they name nights by; `gozen db upgrade` rewrites it from site.timezone).

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-26
"""

from alembic import op

from gozen.db.views import DEFAULT_TIMEZONE, VIEWS_0015, create_views, drop_views

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_views(op.get_bind(), VIEWS_0015, DEFAULT_TIMEZONE)


def downgrade() -> None:
    drop_views(op.get_bind(), VIEWS_0015)
