"""Weekly reports (每周报表): one row per street and reported week, written by the weekly job.

- ``weekly_reports``: ``street_code``, the reported week ``week_start``–``week_end`` (China dates, Monday
  to Sunday), ``format`` (``xlsx``), the file's ``path`` in the configured folder, its size and SHA-256,
  and when it was written. ``UNIQUE (street_code, week_start, format)``: a second run of the same week
  adds nothing (the job is idempotent per street and week).

Revision ID: 0016_weekly_reports
Revises: 0014_partition_by_street
"""
import sqlalchemy as sa
from alembic import op

revision = "0016_weekly_reports"
down_revision = "0014_partition_by_street"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "weekly_reports",
        sa.Column("report_id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("street_code", sa.Text, nullable=False),
        sa.Column("week_start", sa.Date, nullable=False),
        sa.Column("week_end", sa.Date, nullable=False),
        sa.Column("format", sa.Text, nullable=False, server_default="xlsx"),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("street_code", "week_start", "format", name="uq_weekly_reports_week"),
        sa.CheckConstraint("week_end >= week_start", name="ck_weekly_reports_week"),
    )
    op.create_index("ix_weekly_reports_street", "weekly_reports", ["street_code", "week_start"])


def downgrade() -> None:
    op.drop_table("weekly_reports")
