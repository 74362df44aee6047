"""Dispatch: incident history, holiday calendar, geography KNN indexes, incident timing columns.

- ``incident_events``: one row per life-cycle step of an incident (report, assign, accept, close,
  rate) with who and when — the 全程跟踪 trail; removed with its incident.
- ``holidays``: the working-day calendar (节假日 and 调休上班 days) used for 3-working-day deadlines.
- GiST indexes on ``geom::geography`` for members, incidents and grids, so ``<->`` KNN and
  ``ST_DWithin`` work in metres on the sphere through an index (never in degrees).
- ``incidents``: ``response_kind`` (ordinary/complex), ``escalated``, ``assigned_at``,
  ``accepted_at``, ``closed_at`` and the proposed responders.

Revision ID: 0002_dispatch
Revises: 0001_initial
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002_dispatch"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

_GEOG_INDEXES = (("ix_members_geog", "members"), ("ix_incidents_geog", "incidents"), ("ix_grids_geog", "grids"))


def upgrade() -> None:
    op.add_column("incidents", sa.Column("response_kind", sa.Text))
    op.add_column("incidents", sa.Column("escalated", sa.Boolean, server_default="false", nullable=False))
    op.add_column("incidents", sa.Column("assigned_at", sa.DateTime(timezone=True)))
    op.add_column("incidents", sa.Column("accepted_at", sa.DateTime(timezone=True)))
    op.add_column("incidents", sa.Column("closed_at", sa.DateTime(timezone=True)))
    op.add_column("incidents", sa.Column("proposed", JSONB))
    op.create_check_constraint("ck_incidents_rating", "incidents", "rating IS NULL OR rating BETWEEN 1 AND 5")
    op.create_index("ix_incidents_status", "incidents", ["status"])
    op.create_index("ix_incidents_community", "incidents", ["community_code"])
    op.create_index("ix_incidents_street", "incidents", ["street_code"])
    op.create_table(
        "incident_events",
        sa.Column("event_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("incident_id", sa.Text, sa.ForeignKey("incidents.incident_id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("from_status", sa.Text),
        sa.Column("to_status", sa.Text, nullable=False),
        sa.Column("member_id", sa.Text),
        sa.Column("detail", JSONB),
    )
    op.create_index("ix_incident_events_incident", "incident_events", ["incident_id", "event_id"])
    op.create_table(
        "holidays",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False, server_default="holiday"),
        sa.Column("name", sa.Text),
        sa.CheckConstraint("kind IN ('holiday', 'workday')", name="ck_holidays_kind"),
    )
    for name, table in _GEOG_INDEXES:
        op.execute(f"CREATE INDEX {name} ON {table} USING gist ((geom::geography))")


def downgrade() -> None:
    for name, _ in _GEOG_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    op.drop_table("holidays")
    op.drop_table("incident_events")
    op.drop_index("ix_incidents_street", "incidents")
    op.drop_index("ix_incidents_community", "incidents")
    op.drop_index("ix_incidents_status", "incidents")
    op.drop_constraint("ck_incidents_rating", "incidents", type_="check")
    for col in ("proposed", "closed_at", "accepted_at", "assigned_at", "escalated", "response_kind"):
        op.drop_column("incidents", col)
