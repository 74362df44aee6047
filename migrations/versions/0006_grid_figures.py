"""Per-grid figures for the ``grids`` vector tiles, refreshed lazily when the data under them changes.

- ``grid_figures``: one row per grid with its household, member and linked-household (包片联户, in a
  current link run) counts, and the grid outline shifted to GCJ-02 (Amap) vertex by vertex. Derived
  data only: :mod:`geodata.store.grid_figures` rebuilds it from ``grids``, ``households``, ``members``,
  ``links`` and ``link_runs``.
- ``grid_figures_dirty``: one row per statement that wrote one of those five tables, inserted by a
  statement-level trigger in the writer's own transaction. Readers refresh the figures while any row is
  visible, so a tile never shows figures older than the last committed write, and the writers
  (imports, link runs, grid commits) need no change. Insert-only, so concurrent writers never wait on
  each other here.

Revision ID: 0006_grid_figures
Revises: 0005_web
"""
import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision = "0006_grid_figures"
down_revision = "0005_web"
branch_labels = None
depends_on = None

#: Tables whose writes change a grid's figures (or its outline).
WATCHED = ("grids", "households", "members", "links", "link_runs")

MARK_FUNCTION = """
CREATE OR REPLACE FUNCTION grid_figures_mark_dirty() RETURNS trigger AS $$
BEGIN
    -- A statement that changed no row (a header-only import, an upsert of equal rows) marks nothing:
    -- "changed" is the statement's transition table; TRUNCATE has none and always marks.
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO grid_figures_dirty (table_name) VALUES (TG_TABLE_NAME);
    ELSIF EXISTS (SELECT 1 FROM changed) THEN  -- planned only here: TRUNCATE has no "changed"
        INSERT INTO grid_figures_dirty (table_name) VALUES (TG_TABLE_NAME);
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql
"""

#: One statement trigger per event: transition tables exist for INSERT, UPDATE and DELETE separately.
TRIGGERS = (("ins", "INSERT", "NEW"), ("upd", "UPDATE", "NEW"), ("del", "DELETE", "OLD"))


def upgrade() -> None:
    op.create_table("grid_figures", sa.Column("grid_code", sa.Text, primary_key=True),
                    sa.Column("households", sa.Integer, nullable=False),
                    sa.Column("members", sa.Integer, nullable=False),
                    sa.Column("linked_households", sa.Integer, nullable=False),
                    sa.Column("geom_gcj02", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False)))
    op.create_table("grid_figures_dirty", sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
                    sa.Column("table_name", sa.Text, nullable=False),
                    sa.Column("marked_at", sa.DateTime(timezone=True), server_default=sa.func.now()))
    op.execute(MARK_FUNCTION)
    for table in WATCHED:
        for suffix, event, side in TRIGGERS:
            op.execute(f"CREATE TRIGGER {table}_grid_figures_{suffix} AFTER {event} ON {table} "
                       f"REFERENCING {side} TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION grid_figures_mark_dirty()")
        op.execute(f"CREATE TRIGGER {table}_grid_figures_trunc AFTER TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION grid_figures_mark_dirty()")
    # existing data: the first tile request builds the figures
    op.execute("INSERT INTO grid_figures_dirty (table_name) VALUES ('grids')")


def downgrade() -> None:
    for table in WATCHED:
        for suffix in ("ins", "upd", "del", "trunc"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_grid_figures_{suffix} ON {table}")
    op.execute("DROP FUNCTION IF EXISTS grid_figures_mark_dirty()")
    op.drop_table("grid_figures_dirty")
    op.drop_table("grid_figures")
