"""Grid tiles from one table: ``grid_figures`` also holds what a ``grids`` tile shows (issue 13).

At 1M households / 2,550 grids a z12 ``grids`` tile cost 3.3× tipg's, because it joined ``grids``,
``grid_figures`` and ``communities`` and projected every outline to Web Mercator per request.
``grid_figures`` (derived data, rebuilt by :mod:`geodata.store.grid_figures` after a committed write)
now also keeps each grid's ``name``, ``community_code``, ``community_name``, ``kind``, ``has_branch`` and its
outline in Web Mercator (``geom_3857``, EPSG:3857 metres, GiST-indexed), so a tile is one index scan of
one table.

- ``communities`` gets the 0006 statement triggers too: a renamed community marks the figures stale.
- ``h3_counts``: households and members counted per H3 cell (resolutions 5–10) and grid, with the cell
  centre as ``(lon, lat, res)`` under an n-D GiST index (:mod:`geodata.store.cell_counts`), rebuilt with the
  figures, so an aggregate households tile reads a few dozen rows instead of every household under it.
- Existing rows are filled by the first rebuild (``grids``, ``households`` and ``members`` marks are left for it).

Revision ID: 0017_grid_tiles
Revises: 0014_partition_by_street
"""
import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision = "0017_grid_tiles"
down_revision = "0015_coverage_snapshots"
branch_labels = None
depends_on = None

COLUMNS = (("name", sa.Text), ("community_code", sa.Text), ("community_name", sa.Text), ("kind", sa.Text),
           ("has_branch", sa.Boolean))


def upgrade() -> None:
    for name, kind in COLUMNS:
        op.add_column("grid_figures", sa.Column(name, kind))
    op.add_column("grid_figures", sa.Column("geom_3857", Geometry("MULTIPOLYGON", srid=3857, spatial_index=False)))
    op.execute("CREATE INDEX ix_grid_figures_geom_3857 ON grid_figures USING gist (geom_3857)")
    for suffix, event, side in (("ins", "INSERT", "NEW"), ("upd", "UPDATE", "NEW"), ("del", "DELETE", "OLD")):
        op.execute(f"CREATE TRIGGER communities_grid_figures_{suffix} AFTER {event} ON communities "
                   f"REFERENCING {side} TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION grid_figures_mark_dirty()")
    op.execute("CREATE TRIGGER communities_grid_figures_trunc AFTER TRUNCATE ON communities "
               "FOR EACH STATEMENT EXECUTE FUNCTION grid_figures_mark_dirty()")
    op.create_table("h3_counts", sa.Column("layer", sa.Text, nullable=False), sa.Column("res", sa.SmallInteger, nullable=False),
                    sa.Column("cell", sa.BigInteger, nullable=False), sa.Column("grid_code", sa.Text),
                    sa.Column("n", sa.Integer, nullable=False),
                    sa.Column("centre", Geometry("POINTZ", srid=4326, spatial_index=False)))
    op.execute("CREATE INDEX ix_h3_counts_centre ON h3_counts USING gist (centre gist_geometry_ops_nd)")
    op.execute("INSERT INTO grid_figures_dirty (table_name) VALUES ('grids'), ('households'), ('members')")


def downgrade() -> None:
    op.drop_table("h3_counts")
    for suffix in ("ins", "upd", "del", "trunc"):
        op.execute(f"DROP TRIGGER IF EXISTS communities_grid_figures_{suffix} ON communities")
    op.execute("DROP INDEX IF EXISTS ix_grid_figures_geom_3857")
    op.drop_column("grid_figures", "geom_3857")
    for name, _ in reversed(COLUMNS):
        op.drop_column("grid_figures", name)
