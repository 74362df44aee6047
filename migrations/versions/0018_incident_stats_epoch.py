"""Incident figures' cache marks: what keeps the cached sums of closed incidents exactly as fresh as the table.

- ``incident_stats_epoch``: one row, the current epoch. Only readers advance it (under an advisory lock), when
  they find dirty marks; sums cached in an earlier epoch are not served (:mod:`geodata.store.stats_cache`).
- ``incident_stats_dirty``: one row per statement that changed ``incidents`` (or a member's id, name or grid:
  the names shown beside the figures are kept too), inserted by a statement-level trigger in the writer's own
  transaction (insert-only: concurrent writers never wait on each other). A members update that changes
  none of those (在岗/离岗, skills) marks nothing.

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

MEMBERS_FUNCTION = """
CREATE OR REPLACE FUNCTION incident_stats_mark_members() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO incident_stats_dirty DEFAULT VALUES;
    ELSIF TG_OP = 'UPDATE' THEN
        IF EXISTS (SELECT member_id, name, grid_code FROM new_rows
                   EXCEPT SELECT member_id, name, grid_code FROM old_rows) THEN
            INSERT INTO incident_stats_dirty DEFAULT VALUES;
        END IF;
    ELSIF TG_OP = 'INSERT' THEN
        IF EXISTS (SELECT 1 FROM new_rows) THEN INSERT INTO incident_stats_dirty DEFAULT VALUES; END IF;
    ELSIF EXISTS (SELECT 1 FROM old_rows) THEN
        INSERT INTO incident_stats_dirty DEFAULT VALUES;
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql
"""

#: Watched table → the function its statement triggers run.
WATCHED = {"incidents": "incident_stats_mark_dirty", "members": "incident_stats_mark_members"}

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
    op.execute(MEMBERS_FUNCTION)
    for table, function in WATCHED.items():
        for suffix, (event, tables) in TRANSITIONS.items():
            op.execute(f"CREATE TRIGGER {table}_stats_{suffix} AFTER {event} ON {table} "
                       f"REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION {function}()")
        op.execute(f"CREATE TRIGGER {table}_stats_trunc AFTER TRUNCATE ON {table} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()")


def downgrade() -> None:
    for table, function in WATCHED.items():
        for suffix in ("ins", "upd", "del", "trunc"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_stats_{suffix} ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {function}()")
    op.drop_table("incident_stats_dirty")
    op.drop_table("incident_stats_epoch")
