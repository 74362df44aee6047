"""Responders on a phone: household addresses, the visit log.

- ``households.building`` / ``unit`` / ``room`` (楼栋/单元/室): optional address parts from the roster
  (data contract), so a responder finds the door and the map groups a building's households.
- ``visits`` (走访记录): one row per check-in of a member at a household — when, how (上门/电话), where
  the phone was (WGS84 point, its accuracy and the distance to the household in metres; more than
  200 m is flagged, not refused), a note (may name residents: shown under the personal-data rules)
  and an optional photo stored on disk (path relative to the ``upload_dir`` setting, and its SHA-256).

Revision ID: 0007_responders
Revises: 0006_grid_figures
"""
import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision = "0007_responders"
down_revision = "0006_grid_figures"
branch_labels = None
depends_on = None

VISIT_KINDS = ("door", "phone")


def upgrade() -> None:
    for name in ("building", "unit", "room"):
        op.add_column("households", sa.Column(name, sa.Text))
    op.create_table(
        "visits",
        sa.Column("visit_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("member_id", sa.Text, sa.ForeignKey("members.member_id", ondelete="CASCADE"), nullable=False),
        sa.Column("household_id", sa.Text, sa.ForeignKey("households.household_id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("visited_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("accuracy_m", sa.Float),
        sa.Column("distance_m", sa.Float),
        sa.Column("far", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("photo_path", sa.Text),
        sa.Column("photo_sha256", sa.Text),
        sa.Column("geom", Geometry("POINT", srid=4326, spatial_index=False)),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("kind IN ('door', 'phone')", name="ck_visits_kind"),
        sa.CheckConstraint("accuracy_m IS NULL OR accuracy_m >= 0", name="ck_visits_accuracy"),
        sa.CheckConstraint("(photo_path IS NULL) = (photo_sha256 IS NULL)", name="ck_visits_photo"),
        sa.CheckConstraint("char_length(note) <= 2000", name="ck_visits_note"),
    )
    op.create_index("ix_visits_household", "visits", ["household_id", "visited_at"])
    op.create_index("ix_visits_member", "visits", ["member_id", "visited_at"])


def downgrade() -> None:
    op.drop_table("visits")
    for name in ("room", "unit", "building"):
        op.drop_column("households", name)
