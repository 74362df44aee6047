"""``households``, ``members``, ``links`` and ``incidents`` partitioned by street (街道) code (issue 18).

Native declarative partitioning, ``PARTITION BY LIST (street_code)``, one partition per street
(``<table>_p_<code>``) plus a ``DEFAULT`` partition (``<table>_p_default``) for rows in no street
(``street_code`` NULL) or in a street whose partition does not exist yet.

- ``street_code``: added to households, members and links (incidents had it). Households and members
  take it from grid → community → street, links from their household, incidents keep the street they
  were routed to (else their grid's). Writers may leave it out: statement triggers fill it from the
  grid (row movement to the right partition) so every existing INSERT keeps working.
- Keys: a partitioned table's unique keys must contain the partition key, so each table has
  ``UNIQUE NULLS NOT DISTINCT (street_code, <id>)`` (NULL = no street, hence not a primary key).
  Global id uniqueness lives in narrow unpartitioned lookup tables ``household_street``,
  ``member_street`` and ``incident_street`` (``<id>`` primary key, ``street_code``; for incidents also
  the unique ``ticket``), kept by statement triggers with transition tables; lookups by id use them to
  reach one partition. Foreign keys that pointed at the partitioned tables (visits, notices,
  incident_events, ticket_photos, incident_reminders) now point at the lookup tables, ON DELETE
  CASCADE as before. The foreign keys from these tables to ``grids`` and ``link_runs`` stay.
- ``gridmap_street_partition(table, code)``: creates a street's partition when it first appears,
  moving that street's rows out of the default partition first (PostgreSQL refuses to create a
  partition whose rows sit in the default one). The importer calls it in its own transaction.
- Triggers of 0006 (``grid_figures`` marks) are statement triggers with transition tables: allowed on
  a partitioned parent in PostgreSQL 15 (only row triggers with transition tables are not), so they are
  recreated on the parents.

Revision ID: 0014_partition_by_street
Revises: 0013_planner_edits
"""
from alembic import op

revision = "0014_partition_by_street"
down_revision = "0013_planner_edits"
branch_labels = None
depends_on = None

#: table → (key columns besides street_code, lookup table or None, id column)
TABLES = {
    "households": (("household_id",), "household_street", "household_id"),
    "members": (("member_id",), "member_street", "member_id"),
    "incidents": (("incident_id",), "incident_street", "incident_id"),
    "links": (("run_id", "household_id"), None, None),
}
#: Foreign keys into the partitioned tables: (table, column, target table, delete action).
INBOUND = (
    ("visits", "household_id", "households", "household_id"),
    ("visits", "member_id", "members", "member_id"),
    ("notices", "member_id", "members", "member_id"),
    ("notices", "incident_id", "incidents", "incident_id"),
    ("incident_events", "incident_id", "incidents", "incident_id"),
    ("ticket_photos", "incident_id", "incidents", "incident_id"),
    ("incident_reminders", "incident_id", "incidents", "incident_id"),
)
OUTBOUND = {  # foreign keys the tables themselves hold (re-created on the new tables)
    "households": ["ADD CONSTRAINT fk_households_grid FOREIGN KEY (grid_code) REFERENCES grids(grid_code) "
                   "ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED"],
    "members": ["ADD CONSTRAINT fk_members_grid FOREIGN KEY (grid_code) REFERENCES grids(grid_code) "
                "ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED"],
    "incidents": ["ADD CONSTRAINT fk_incidents_grid FOREIGN KEY (grid_code) REFERENCES grids(grid_code) "
                  "ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED"],
    "links": ["ADD CONSTRAINT links_run_id_fkey FOREIGN KEY (run_id) REFERENCES link_runs(run_id) ON DELETE CASCADE"],
}
FIGURE_TABLES = ("households", "members", "links")

#: The street of a grid: its community's street (the contract's containment, as auth.region_scope).
GRID_STREET = "SELECT g.grid_code, c.street_code FROM grids g JOIN communities c ON c.code = g.community_code"

PARTITION_FUNCTION = r"""
CREATE OR REPLACE FUNCTION gridmap_partition_name(parent text, code text) RETURNS text AS $$
    -- a safe identifier; codes that needed changing (or are long) get a hash so two never collide
    SELECT CASE WHEN code ~ '^[a-z0-9_]{1,40}$' THEN parent || '_p_' || code
                ELSE left(parent || '_p_' || lower(regexp_replace(code, '[^A-Za-z0-9]', '_', 'g')), 50)
                     || '_' || left(md5(code), 8) END
$$ LANGUAGE sql IMMUTABLE;

CREATE OR REPLACE FUNCTION gridmap_street_partition(parent text, code text) RETURNS boolean AS $$
DECLARE
    part text := gridmap_partition_name(parent, code);
    dflt text := parent || '_p_default';
BEGIN
    IF code IS NULL OR to_regclass(quote_ident(part)) IS NOT NULL THEN
        RETURN false;
    END IF;
    -- Rows of this street waiting in the default partition move out first (PostgreSQL refuses the new
    -- partition otherwise). Direct partition DML fires no parent statement triggers: lookups untouched.
    EXECUTE format('CREATE TEMP TABLE _gridmap_moving ON COMMIT DROP AS SELECT * FROM %I WHERE street_code = $1', dflt)
        USING code;
    EXECUTE format('DELETE FROM %I WHERE street_code = $1', dflt) USING code;
    EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES IN (%L)', part, parent, code);
    EXECUTE format('INSERT INTO %I SELECT * FROM _gridmap_moving', part);
    DROP TABLE _gridmap_moving;
    RETURN true;
END $$ LANGUAGE plpgsql;
"""

#: Lookup maintenance (global id uniqueness) and street filling, as statement triggers on the parent.
LOOKUP_FUNCTIONS = """
CREATE OR REPLACE FUNCTION gridmap_{t}_lookup() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO {lk} ({id}, street_code{xcol}) SELECT {id}, street_code{xcol} FROM new_rows;
    ELSIF TG_OP = 'UPDATE' THEN
        DELETE FROM {lk} WHERE {id} IN (SELECT {id} FROM old_rows EXCEPT SELECT {id} FROM new_rows);
        INSERT INTO {lk} ({id}, street_code{xcol}) SELECT {id}, street_code{xcol} FROM new_rows
        ON CONFLICT ({id}) DO UPDATE SET street_code = EXCLUDED.street_code{xset}
        WHERE ({lk}.street_code{xcmp}) IS DISTINCT FROM (EXCLUDED.street_code{xexc});
    ELSE
        DELETE FROM {lk} WHERE {id} IN (SELECT {id} FROM old_rows);
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;
"""

#: Rows written without a street (or whose grid/household changed) get it here; an UPDATE of the
#: partition key moves them to their street's partition. Incidents keep a street routing gave them.
FILL_FUNCTIONS = {
    "households": f"""UPDATE households t SET street_code = gs.street_code FROM new_rows n JOIN ({GRID_STREET}) gs
        ON gs.grid_code = n.grid_code WHERE t.household_id = n.household_id AND t.street_code IS NOT DISTINCT FROM n.street_code
        AND n.street_code IS DISTINCT FROM gs.street_code AND gs.street_code IS NOT NULL""",
    "members": f"""UPDATE members t SET street_code = gs.street_code FROM new_rows n JOIN ({GRID_STREET}) gs
        ON gs.grid_code = n.grid_code WHERE t.member_id = n.member_id AND t.street_code IS NOT DISTINCT FROM n.street_code
        AND n.street_code IS DISTINCT FROM gs.street_code AND gs.street_code IS NOT NULL""",
    "incidents": f"""UPDATE incidents t SET street_code = gs.street_code FROM new_rows n JOIN ({GRID_STREET}) gs
        ON gs.grid_code = n.grid_code WHERE t.incident_id = n.incident_id AND t.street_code IS NULL
        AND n.street_code IS NULL AND gs.street_code IS NOT NULL""",
    "links": """UPDATE links t SET street_code = hs.street_code FROM new_rows n JOIN household_street hs
        ON hs.household_id = n.household_id WHERE t.run_id = n.run_id AND t.household_id = n.household_id
        AND t.street_code IS NOT DISTINCT FROM n.street_code AND n.street_code IS DISTINCT FROM hs.street_code
        AND hs.street_code IS NOT NULL""",
}


def _fill_function(table: str) -> str:
    return (f"CREATE OR REPLACE FUNCTION gridmap_{table}_fill_street() RETURNS trigger AS $$\n"
            # a statement trigger fires even for no rows: the guard ends the UPDATE → trigger recursion
            f"BEGIN\n    IF EXISTS (SELECT 1 FROM new_rows) THEN\n    {FILL_FUNCTIONS[table]};\n    END IF;\n"
            "    RETURN NULL;\nEND $$ LANGUAGE plpgsql")


def _lookup_function(table: str) -> str:
    _, lookup, idcol = TABLES[table]
    extra = table == "incidents"  # the public ticket is unique across every street
    return LOOKUP_FUNCTIONS.format(
        t=table, lk=lookup, id=idcol, xcol=", ticket" if extra else "", xset=", ticket = EXCLUDED.ticket" if extra else "",
        xcmp=f", {lookup}.ticket" if extra else "", xexc=", EXCLUDED.ticket" if extra else "")


def _statement_triggers(table: str, prefix: str, function: str, events=("INSERT", "UPDATE", "DELETE")) -> None:
    for event in events:
        tables = {"INSERT": "NEW TABLE AS new_rows", "DELETE": "OLD TABLE AS old_rows",
                  "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows"}[event]
        op.execute(f"CREATE TRIGGER {table}_{prefix}_{event.lower()[:3]} AFTER {event} ON {table} "
                   f"REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION {function}()")


def _figure_triggers(table: str) -> None:
    """The 0006 ``grid_figures`` marks (statement triggers, transition table ``changed``)."""
    for suffix, event, side in (("ins", "INSERT", "NEW"), ("upd", "UPDATE", "NEW"), ("del", "DELETE", "OLD")):
        op.execute(f"CREATE TRIGGER {table}_grid_figures_{suffix} AFTER {event} ON {table} "
                   f"REFERENCING {side} TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION grid_figures_mark_dirty()")
    op.execute(f"CREATE TRIGGER {table}_grid_figures_trunc AFTER TRUNCATE ON {table} "
               "FOR EACH STATEMENT EXECUTE FUNCTION grid_figures_mark_dirty()")


def _index_definitions(table: str, skip: tuple[str, ...]) -> list[str]:
    rows = op.get_bind().exec_driver_sql(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = %(t)s",
        {"t": table}).all()
    return [d for n, d in rows if n not in skip]


def _drop_inbound() -> None:
    for table, column, _, _ in INBOUND:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {table}_{column}_fkey")


def _add_inbound(targets: dict[str, str]) -> None:
    for table, column, target, idcol in INBOUND:
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_{column}_fkey FOREIGN KEY ({column}) "
                   f"REFERENCES {targets[target]}({idcol}) ON DELETE CASCADE")


def _street_select(table: str, old: str) -> str:
    """The street of each old row (see the module docstring)."""
    if table in ("households", "members"):
        return f"(SELECT gs.street_code FROM ({GRID_STREET}) gs WHERE gs.grid_code = o.grid_code)"
    if table == "incidents":
        return f"COALESCE(o.street_code, (SELECT gs.street_code FROM ({GRID_STREET}) gs WHERE gs.grid_code = o.grid_code))"
    return "(SELECT hs.street_code FROM household_street hs WHERE hs.household_id = o.household_id)"


def _partition_table(table: str) -> None:
    keys, lookup, idcol = TABLES[table]
    old = f"{table}_unpartitioned"
    indexes = _index_definitions(table, (f"{table}_pkey", "incidents_ticket_key", "ix_incidents_street"))
    op.execute(f"ALTER TABLE {table} RENAME TO {old}")
    op.execute(f"ALTER TABLE {old} DROP CONSTRAINT {table}_pkey")
    for d in indexes:
        op.execute(f"DROP INDEX IF EXISTS {d.split(' ON ')[0].split()[-1]}")
    op.execute("DROP INDEX IF EXISTS incidents_ticket_key; DROP INDEX IF EXISTS ix_incidents_street")
    if table != "incidents":
        op.execute(f"ALTER TABLE {old} ADD COLUMN street_code text")
    op.execute(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
               "PARTITION BY LIST (street_code)")
    op.execute(f"CREATE TABLE {table}_p_default PARTITION OF {table} DEFAULT")
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_street_key UNIQUE NULLS NOT DISTINCT "
               f"(street_code, {', '.join(keys)})")
    cols = [r[0] for r in op.get_bind().exec_driver_sql(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %(t)s AND column_name <> 'street_code' "
        "ORDER BY ordinal_position", {"t": old}).all()]
    op.execute(f"CREATE TEMP TABLE _streets ON COMMIT DROP AS SELECT o.*, {_street_select(table, old)} AS _street "
               f"FROM {old} o")
    for (code,) in op.get_bind().exec_driver_sql("SELECT DISTINCT _street FROM _streets WHERE _street IS NOT NULL").all():
        op.get_bind().exec_driver_sql("SELECT gridmap_street_partition(%(t)s, %(c)s)", {"t": table, "c": code})
    op.execute(f"INSERT INTO {table} ({', '.join(cols)}, street_code) SELECT {', '.join(cols)}, _street FROM _streets")
    op.execute("DROP TABLE _streets")
    op.execute(f"DROP TABLE {old}")
    for d in indexes:
        op.execute(d)
    if table == "incidents":
        op.execute("CREATE INDEX ix_incidents_ticket ON incidents (ticket)")
    for fk in OUTBOUND[table]:
        op.execute(f"ALTER TABLE {table} {fk}")
    if lookup:
        extra = ", ticket text UNIQUE" if table == "incidents" else ""
        op.execute(f"CREATE TABLE {lookup} ({idcol} text PRIMARY KEY, street_code text{extra})")
        op.execute(f"INSERT INTO {lookup} ({idcol}, street_code{', ticket' if extra else ''}) "
                   f"SELECT {idcol}, street_code{', ticket' if extra else ''} FROM {table}")
        op.execute(_lookup_function(table))
        _statement_triggers(table, "a_lookup", f"gridmap_{table}_lookup")
    op.execute(_fill_function(table))
    _statement_triggers(table, "b_street", f"gridmap_{table}_fill_street", ("INSERT", "UPDATE"))
    if table in FIGURE_TABLES:
        _figure_triggers(table)


def upgrade() -> None:
    op.execute(PARTITION_FUNCTION)
    _drop_inbound()
    for table in ("households", "members", "incidents", "links"):  # links read household_street
        _partition_table(table)
    _add_inbound({"households": "household_street", "members": "member_street", "incidents": "incident_street"})


def _unpartition_table(table: str) -> None:
    keys, lookup, _ = TABLES[table]
    part = f"{table}_partitioned"
    indexes = _index_definitions(table, (f"{table}_street_key", f"ix_{table}_street", "ix_incidents_ticket"))
    op.execute(f"ALTER TABLE {table} RENAME TO {part}")
    for d in indexes:
        op.execute(f"DROP INDEX IF EXISTS {d.split(' ON ')[0].split()[-1]}")
    op.execute(f"CREATE TABLE {table} (LIKE {part} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    op.execute(f"INSERT INTO {table} SELECT * FROM {part}")
    op.execute(f"DROP TABLE {part} CASCADE")
    if lookup:
        op.execute(f"DROP TABLE {lookup}")
        op.execute(f"DROP FUNCTION IF EXISTS gridmap_{table}_lookup()")
    op.execute(f"DROP FUNCTION IF EXISTS gridmap_{table}_fill_street()")
    if table != "incidents":
        op.execute(f"ALTER TABLE {table} DROP COLUMN street_code")
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY ({', '.join(keys)})")
    for d in indexes:
        op.execute(d.replace(" ONLY ", " "))
    if table == "incidents":
        op.execute("CREATE UNIQUE INDEX incidents_ticket_key ON incidents (ticket)")
        op.execute("CREATE INDEX ix_incidents_street ON incidents (street_code)")
    for fk in OUTBOUND[table]:
        op.execute(f"ALTER TABLE {table} {fk}")
    if table in FIGURE_TABLES:
        _figure_triggers(table)


def downgrade() -> None:
    _drop_inbound()
    for table in ("links", "incidents", "members", "households"):
        _unpartition_table(table)
    _add_inbound({"households": "households", "members": "members", "incidents": "incidents"})
    op.execute("DROP FUNCTION IF EXISTS gridmap_street_partition(text, text)")
    op.execute("DROP FUNCTION IF EXISTS gridmap_partition_name(text, text)")
