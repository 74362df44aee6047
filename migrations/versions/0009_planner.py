"""Redraw drafts (网格调整草案): a planner's redraw result saved to reopen, compare and commit later.

- ``redraw_drafts``: one row per draft of one community — the proposed grids (WGS84 polygons with the
  code each keeps, blank for new grids), each household's proposed grid, the stored grid versions the
  draft was computed on (``commit_redraw`` refuses it once those changed), the controls used (locked
  grids, band, minimal change) and the figures (grids in band, mean Polsby-Popper, households moved).
  Drafts hold no personal data: household ids and grid codes only.

Revision ID: 0009_planner
Revises: 0008_residents
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009_planner"
down_revision = "0008_residents"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "redraw_drafts",
        sa.Column("draft_id", sa.Integer, primary_key=True),
        sa.Column("community_code", sa.Text, nullable=False, index=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("params", JSONB, nullable=False),
        sa.Column("versions", JSONB, nullable=False),
        sa.Column("grids", JSONB, nullable=False),
        sa.Column("assignment", JSONB, nullable=False),
        sa.Column("summary", JSONB, nullable=False),
        sa.Column("committed_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("redraw_drafts")
