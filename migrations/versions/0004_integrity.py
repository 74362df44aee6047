"""Integrity: every grid reference names a grid that exists, and every grid carries a version.

- ``grids.version`` (integer, starts at 1): bumped by a trigger on every UPDATE of a grid row, so an
  edit computed on version n is refused once anyone (an edit, a redraw, a re-import) has written the
  grid since (lost update, issue 11 finding 2).
- Foreign keys ``households.grid_code``, ``members.grid_code``, ``incidents.grid_code`` →
  ``grids(grid_code)`` ``ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED``: checked at commit, so a
  transaction may delete and re-create grids as long as nothing dangles when it ends (issue 11
  findings 1 and 8). References to grids that no longer exist are set to NULL first, with a notice
  saying how many (those rows then show as 不在任何网格内 in coverage).

Revision ID: 0004_integrity
Revises: 0003_auth
"""
import logging

import sqlalchemy as sa
from alembic import op

revision = "0004_integrity"
down_revision = "0003_auth"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

#: Tables whose ``grid_code`` must name an existing grid.
REFERRING = ("households", "members", "incidents")

BUMP_FUNCTION = """
CREATE OR REPLACE FUNCTION grids_bump_version() RETURNS trigger AS $$
BEGIN
    -- An explicit new version is kept; otherwise every write moves the version on by one.
    IF NEW.version IS NOT DISTINCT FROM OLD.version THEN
        NEW.version := OLD.version + 1;
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql
"""


def _null_dangling(table: str) -> None:
    n = op.get_bind().execute(sa.text(
        f"UPDATE {table} t SET grid_code = NULL WHERE t.grid_code IS NOT NULL "
        f"AND NOT EXISTS (SELECT 1 FROM grids g WHERE g.grid_code = t.grid_code)")).rowcount
    if n:
        msg = f"0004_integrity: {n} {table} row(s) named a grid that does not exist; their grid_code is now NULL"
        log.warning(msg)
        op.execute(sa.text(f"DO $$ BEGIN RAISE NOTICE '{msg}'; END $$"))


def upgrade() -> None:
    op.add_column("grids", sa.Column("version", sa.Integer, nullable=False, server_default="1"))
    op.execute(BUMP_FUNCTION)
    op.execute("CREATE TRIGGER grids_version BEFORE UPDATE ON grids FOR EACH ROW EXECUTE FUNCTION grids_bump_version()")
    for table in REFERRING:
        _null_dangling(table)
        op.create_foreign_key(f"fk_{table}_grid", table, "grids", ["grid_code"], ["grid_code"],
                              onupdate="CASCADE", deferrable=True, initially="DEFERRED")


def downgrade() -> None:
    for table in REFERRING:
        op.drop_constraint(f"fk_{table}_grid", table, type_="foreignkey")
    op.execute("DROP TRIGGER IF EXISTS grids_version ON grids")
    op.execute("DROP FUNCTION IF EXISTS grids_bump_version()")
    op.drop_column("grids", "version")
