"""Incident figures' cache marks: what keeps the cached sums of closed incidents exactly as fresh as the table.

- ``incident_stats_epoch``: one row, the current epoch. Only readers advance it (under an advisory lock), when
  they find dirty marks; sums cached in an earlier epoch are not served (:mod:`geodata.store.stats_cache`).
- ``incident_stats_dirty``: one row per statement that changed ``incidents``, inserted by a statement-level
  trigger in the writer's own transaction (insert-only: concurrent writers never wait on each other).

Revision ID: 0018_incident_stats_epoch
Revises: 0017_grid_tiles (the lead re-chains at merge)
"""
import sqlalchemy as sa
from alembic import op

revision = "0018_incident_stats_epoch"
down_revision = "0017_grid_tiles"
branch_labels = None
depends_on = None

MARK_FUNCTION = """
CREATE OR REPLACE FUNCTION incident_stats_mark_dirty() RETURNS trigger AS $$
BEGIN
    -- a statement that changed no row marks nothing
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO incident_stats_dirty DEFAULT VALUES;
    ELSIF TG_OP = 'INSERT' THEN
        IF EXISTS (SELECT 1 FROM new_rows) THEN INSERT INTO incident_stats_dirty DEFAULT VALUES; END IF;
    ELSIF EXISTS (SELECT 1 FROM old_rows) THEN
        INSERT INTO incident_stats_dirty DEFAULT VALUES;
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql
"""

TRANSITIONS = {"ins": ("INSERT", "NEW TABLE AS new_rows"), "del": ("DELETE", "OLD TABLE AS old_rows"),
               "upd": ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows")}


def upgrade() -> None:
    op.create_table("incident_stats_epoch", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("n", sa.BigInteger, nullable=False),
                    sa.CheckConstraint("id = 1", name="incident_stats_epoch_one_row"))
    op.execute("INSERT INTO incident_stats_epoch (id, n) VALUES (1, 0)")
    op.create_table("incident_stats_dirty", sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
                    sa.Column("marked_at", sa.DateTime(timezone=True), server_default=sa.func.now()))
    op.execute(MARK_FUNCTION)
    for suffix, (event, tables) in TRANSITIONS.items():
        op.execute(f"CREATE TRIGGER incidents_stats_{suffix} AFTER {event} ON incidents "
                   f"REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION incident_stats_mark_dirty()")
    op.execute("CREATE TRIGGER incidents_stats_trunc AFTER TRUNCATE ON incidents "
               "FOR EACH STATEMENT EXECUTE FUNCTION incident_stats_mark_dirty()")


def downgrade() -> None:
    for suffix in ("ins", "upd", "del", "trunc"):
        op.execute(f"DROP TRIGGER IF EXISTS incidents_stats_{suffix} ON incidents")
    op.execute("DROP FUNCTION IF EXISTS incident_stats_mark_dirty()")
    op.drop_table("incident_stats_dirty")
    op.drop_table("incident_stats_epoch")
