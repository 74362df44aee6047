"""Two deadline clocks per incident, reminders and in-app notices.

- ``incidents.respond_due_at``: the response deadline (接单时限, default 24 h; per category from the
  ``deadlines_file`` setting). ``deadline_at`` keeps meaning what the routes say: the completion /
  feedback deadline (办结时限). Existing incidents get reported_at + 24 h, the policy default.
- ``incident_reminders``: one row per (incident, clock, light) a reminder run has marked, so running
  the job twice marks once (the primary key).
- ``notices`` (站内提醒): what a reminder tells the incident's holder (``member_id``) and the dispatchers
  of a region (``region_code``: grid, community or street code), with when it was read.

Revision ID: 0012_deadlines
Revises: 0009_planner
"""
import sqlalchemy as sa
from alembic import op

revision = "0012_deadlines"
down_revision = "0009_planner"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("incidents", sa.Column("respond_due_at", sa.DateTime(timezone=True)))
    op.execute("UPDATE incidents SET respond_due_at = reported_at + interval '24 hours' "
               "WHERE respond_due_at IS NULL AND reported_at IS NOT NULL")
    op.create_table(
        "incident_reminders",
        sa.Column("incident_id", sa.Text, sa.ForeignKey("incidents.incident_id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("clock", sa.Text, primary_key=True),
        sa.Column("light", sa.Text, primary_key=True),
        sa.Column("marked_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("clock IN ('respond', 'complete')", name="ck_incident_reminders_clock"),
        sa.CheckConstraint("light IN ('yellow', 'red')", name="ck_incident_reminders_light"),
    )
    op.create_table(
        "notices",
        sa.Column("notice_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("incident_id", sa.Text, sa.ForeignKey("incidents.incident_id", ondelete="CASCADE")),
        sa.Column("member_id", sa.Text, sa.ForeignKey("members.member_id", ondelete="CASCADE")),
        sa.Column("region_code", sa.Text),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("member_id IS NOT NULL OR region_code IS NOT NULL", name="ck_notices_recipient"),
    )
    op.create_index("ix_notices_member", "notices", ["member_id", "created_at"])
    op.create_index("ix_notices_region", "notices", ["region_code", "created_at"])


def downgrade() -> None:
    op.drop_table("notices")
    op.drop_table("incident_reminders")
    op.drop_column("incidents", "respond_due_at")
