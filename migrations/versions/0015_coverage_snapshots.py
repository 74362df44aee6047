"""Coverage snapshots: a region's coverage layers kept in PostGIS, exactly as fresh as the data under them.

- ``coverage_snapshots``: one row per (region, radius in metres, H3 resolution of the gap cells) with the
  layers of :func:`api.usecases.leader.coverage_layers` as GeoParquet (WGS84) and its summary (JSONB),
  stamped with the ``epoch`` it was computed in, and what the pages derive from them (``derived``: the
  ``GET /coverage`` tables and the map's label points, as JSON bytes). Derived data only:
  :mod:`geodata.store.coverage_snapshots` writes and reads it.
- ``coverage_epoch``: one row, the current epoch. Only readers advance it (under an advisory lock), when they
  find dirty marks; a snapshot is served only while its epoch is current.
- ``coverage_dirty``: one row per statement that changed ``grids``, ``communities``, ``households``,
  ``members``, ``links``, ``link_runs`` or ``service_centres``, inserted by a statement-level trigger in the
  writer's own transaction (insert-only: concurrent writers never wait on each other). An update of members
  that changes only ``available`` (在岗/离岗) marks nothing: coverage does not depend on it.

Revision ID: 0015_coverage_snapshots
Revises: 0016_weekly_reports (the lead re-chains at merge)
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0015_coverage_snapshots"
down_revision = "0016_weekly_reports"
branch_labels = None
depends_on = None

#: Tables whose writes can change a region's coverage, and the columns whose change alone marks nothing.
WATCHED = {"grids": "", "communities": "", "households": "", "members": "available", "links": "",
           "link_runs": "", "service_centres": ""}

MARK_FUNCTION = """
CREATE OR REPLACE FUNCTION coverage_mark_dirty() RETURNS trigger AS $$
BEGIN
    -- TG_ARGV[0]: a column whose change alone does not matter (UPDATE only; '' for none). A statement that
    -- changed no row (a header-only import, an upsert of equal rows) marks nothing either.
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO coverage_dirty (table_name) VALUES (TG_TABLE_NAME);
    ELSIF TG_OP = 'UPDATE' THEN
        IF EXISTS (SELECT to_jsonb(n) - TG_ARGV[0] FROM new_rows n
                   EXCEPT SELECT to_jsonb(o) - TG_ARGV[0] FROM old_rows o) THEN
            INSERT INTO coverage_dirty (table_name) VALUES (TG_TABLE_NAME);
        END IF;
    ELSIF TG_OP = 'INSERT' THEN
        IF EXISTS (SELECT 1 FROM new_rows) THEN
            INSERT INTO coverage_dirty (table_name) VALUES (TG_TABLE_NAME);
        END IF;
    ELSIF EXISTS (SELECT 1 FROM old_rows) THEN
        INSERT INTO coverage_dirty (table_name) VALUES (TG_TABLE_NAME);
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql
"""

TRANSITIONS = {"INSERT": "NEW TABLE AS new_rows", "DELETE": "OLD TABLE AS old_rows",
               "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows"}


def upgrade() -> None:
    op.create_table("coverage_snapshots", sa.Column("region", sa.Text, primary_key=True),
                    sa.Column("radius_m", sa.Float, primary_key=True),
                    sa.Column("gap_res", sa.Integer, primary_key=True),
                    sa.Column("epoch", sa.BigInteger, nullable=False),
                    sa.Column("summary", JSONB, nullable=False),
                    sa.Column("grid_status", sa.LargeBinary, nullable=False),
                    sa.Column("unlinked_households", sa.LargeBinary, nullable=False),
                    sa.Column("service_areas", sa.LargeBinary, nullable=False),
                    sa.Column("gap_cells", sa.LargeBinary, nullable=False),
                    sa.Column("derived", sa.LargeBinary),
                    sa.Column("built_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
                    sa.Column("build_ms", sa.Integer))
    op.create_table("coverage_epoch", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("n", sa.BigInteger, nullable=False),
                    sa.CheckConstraint("id = 1", name="coverage_epoch_one_row"))
    op.execute("INSERT INTO coverage_epoch (id, n) VALUES (1, 0)")
    op.create_table("coverage_dirty", sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
                    sa.Column("table_name", sa.Text, nullable=False),
                    sa.Column("marked_at", sa.DateTime(timezone=True), server_default=sa.func.now()))
    op.execute(MARK_FUNCTION)
    for table, ignored in WATCHED.items():
        for event, tables in TRANSITIONS.items():
            op.execute(f"CREATE TRIGGER {table}_coverage_{event.lower()[:3]} AFTER {event} ON {table} "
                       f"REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION coverage_mark_dirty('{ignored}')")
        op.execute(f"CREATE TRIGGER {table}_coverage_trunc AFTER TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION coverage_mark_dirty('')")


def downgrade() -> None:
    for table in WATCHED:
        for suffix in ("ins", "upd", "del", "trunc"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_coverage_{suffix} ON {table}")
    op.execute("DROP FUNCTION IF EXISTS coverage_mark_dirty()")
    op.drop_table("coverage_dirty")
    op.drop_table("coverage_epoch")
    op.drop_table("coverage_snapshots")
