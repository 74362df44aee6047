"""Manual edits of redraw drafts: the undo/redo stack kept with the draft.

- ``redraw_drafts.edits``: the planner's manual edits in order, each ``{to_grid, cells, before, after,
  moved}`` — the touched grids before and after (GeoJSON features, WGS84) and the households that changed
  grid — so undo and redo replay stored states exactly and survive a reload.
- ``redraw_drafts.edit_pos``: how many of ``edits`` are applied (the rest can be redone).

Revision ID: 0013_planner_edits
Revises: 0012_deadlines
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0013_planner_edits"
down_revision = "0012_deadlines"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("redraw_drafts", sa.Column("edits", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")))
    op.add_column("redraw_drafts", sa.Column("edit_pos", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("redraw_drafts", "edit_pos")
    op.drop_column("redraw_drafts", "edits")
