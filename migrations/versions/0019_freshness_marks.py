"""One freshness mark for every cache: a single trigger function, parameterised by the mark table.

0006/0017 (``grid_figures_dirty``), 0015 (``coverage_dirty``) and 0018 (``incident_stats_dirty``) each had
their own plpgsql function writing dirty marks. They become one, ``freshness_mark()``, whose trigger
arguments say where the mark goes and which changes count (:mod:`geodata.store.epochs` reads the marks):

- ``TG_ARGV[0]``: the mark table; the mark is the written table's name.
- ``TG_ARGV[1]``, for an UPDATE: ``any`` (any updated row counts), ``only`` followed by the columns whose
  change counts, or ``except`` followed by the columns whose change alone does not count. An INSERT or
  DELETE counts when it touched a row; TRUNCATE always counts; a statement that changed no row marks
  nothing.

The marks of the tile figures (``grid_figures`` and ``h3_counts``) now count only the columns those count
or show, so a member going 在岗/离岗 (``available``), a household's phone corrected or a link run's summary
written no longer makes the next tile rebuild them. The coverage and incident-statistics marks keep their
rules exactly. ``incident_stats_dirty`` gains the ``table_name`` column the other mark tables have.
The trigger names stay; the downgrade restores the three old functions and their triggers exactly.

Revision ID: 0019_freshness_marks
Revises: 0018_incident_stats_epoch
"""
from alembic import op

revision = "0019_freshness_marks"
down_revision = "0018_incident_stats_epoch"
branch_labels = None
depends_on = None

MARK_FUNCTION = """
CREATE OR REPLACE FUNCTION freshness_mark() RETURNS trigger AS $$
DECLARE
    counts boolean;
    cols text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        counts := true;
    ELSIF TG_OP = 'INSERT' THEN
        counts := EXISTS (SELECT 1 FROM new_rows);
    ELSIF TG_OP = 'DELETE' THEN
        counts := EXISTS (SELECT 1 FROM old_rows);
    ELSIF TG_ARGV[1] = 'only' THEN
        -- the statement's transition tables are visible to EXECUTE as well
        cols := (SELECT string_agg(quote_ident(c), ', ') FROM unnest(TG_ARGV[2:]) AS c);
        EXECUTE format('SELECT EXISTS (SELECT %s FROM new_rows EXCEPT SELECT %s FROM old_rows)', cols, cols)
            INTO counts;
    ELSIF TG_ARGV[1] = 'except' THEN
        counts := EXISTS (SELECT to_jsonb(n) - TG_ARGV[2:] FROM new_rows n
                          EXCEPT SELECT to_jsonb(o) - TG_ARGV[2:] FROM old_rows o);
    ELSE
        counts := EXISTS (SELECT 1 FROM new_rows);
    END IF;
    IF counts THEN
        EXECUTE format('INSERT INTO %I (table_name) VALUES ($1)', TG_ARGV[0]) USING TG_TABLE_NAME;
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql
"""

#: trigger prefix → (mark table, {watched table: the UPDATE rule, TG_ARGV[1:]}).
MARKS = {
    "grid_figures": ("grid_figures_dirty", {
        "grids": ("only", "grid_code", "name", "community_code", "kind", "has_branch", "geom"),
        "communities": ("only", "code", "name"),
        "households": ("only", "household_id", "grid_code", "h3"),
        "members": ("only", "grid_code", "h3"),
        "links": ("only", "run_id", "household_id"),
        "link_runs": ("only", "run_id", "is_current"),
    }),
    "coverage": ("coverage_dirty", {
        "grids": ("except",), "communities": ("except",), "households": ("except",),
        "members": ("except", "available"), "links": ("except",), "link_runs": ("except",),
        "service_centres": ("except",),
    }),
    "stats": ("incident_stats_dirty", {
        "incidents": ("any",),
        "members": ("only", "member_id", "name", "grid_code"),
    }),
}

TRANSITIONS = {"ins": ("INSERT", "NEW TABLE AS new_rows"), "upd": ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
               "del": ("DELETE", "OLD TABLE AS old_rows")}


def _args(*values: str) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def upgrade() -> None:
    op.execute("ALTER TABLE incident_stats_dirty ADD COLUMN table_name text")
    op.execute(MARK_FUNCTION)
    for prefix, (marks, tables) in MARKS.items():
        for table, rule in tables.items():
            for suffix, (event, transition) in TRANSITIONS.items():
                op.execute(f"DROP TRIGGER IF EXISTS {table}_{prefix}_{suffix} ON {table}")
                op.execute(f"CREATE TRIGGER {table}_{prefix}_{suffix} AFTER {event} ON {table} REFERENCING "
                           f"{transition} FOR EACH STATEMENT EXECUTE FUNCTION freshness_mark({_args(marks, *rule)})")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_{prefix}_trunc ON {table}")
            op.execute(f"CREATE TRIGGER {table}_{prefix}_trunc AFTER TRUNCATE ON {table} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION freshness_mark({_args(marks)})")
    for name in OLD_FUNCTIONS:
        op.execute(f"DROP FUNCTION {name}()")


# -- the downgrade: the functions and triggers of 0006/0014/0017, 0015 and 0018, as they were ----------
OLD_FUNCTIONS = {
    "grid_figures_mark_dirty": """
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
""",
    "coverage_mark_dirty": """
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
""",
    "incident_stats_mark_dirty": """
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
""",
    "incident_stats_mark_members": """
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
""",
}


def _old_trigger(prefix: str, table: str, suffix: str) -> str:
    """The 0018-head definition of one trigger (function, transition tables and argument)."""
    name = f"{table}_{prefix}_{suffix}"
    if prefix == "grid_figures":
        function, transition = "grid_figures_mark_dirty()", {"ins": "NEW TABLE AS changed", "upd": "NEW TABLE AS changed",
                                                             "del": "OLD TABLE AS changed"}.get(suffix)
    elif prefix == "coverage":
        ignored = "available" if table == "members" and suffix != "trunc" else ""
        function, transition = f"coverage_mark_dirty('{ignored}')", TRANSITIONS.get(suffix, ("", None))[1]
    else:
        function = "incident_stats_mark_members()" if table == "members" else "incident_stats_mark_dirty()"
        transition = TRANSITIONS.get(suffix, ("", None))[1]
    event = TRANSITIONS[suffix][0] if suffix in TRANSITIONS else "TRUNCATE"
    referencing = f" REFERENCING {transition}" if transition else ""
    return f"CREATE TRIGGER {name} AFTER {event} ON {table}{referencing} FOR EACH STATEMENT EXECUTE FUNCTION {function}"


def downgrade() -> None:
    for sql in OLD_FUNCTIONS.values():
        op.execute(sql)
    for prefix, (_, tables) in MARKS.items():
        for table in tables:
            for suffix in ("ins", "upd", "del", "trunc"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_{prefix}_{suffix} ON {table}")
                op.execute(_old_trigger(prefix, table, suffix))
    op.execute("DROP FUNCTION freshness_mark()")
    op.execute("ALTER TABLE incident_stats_dirty DROP COLUMN table_name")
