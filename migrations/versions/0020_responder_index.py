"""Nearest responders on 3-D points of the sphere, and one unpartitioned index of every responder (issue 19).

- ``gridmap_sphere_xyz(lon, lat)``: the point on the sphere of radius 6,371,008.8 m (the mean radius
  ``gridmap.metric.haversine_m`` and PostGIS's sphere use) as a 3-D point in metres, from WGS84
  degrees. The straight-line (chord) distance ``c`` between two such points orders them exactly as the
  great-circle distance ``2R·asin(c / 2R)`` does, and an n-D GiST index (``gist_geometry_ops_nd``,
  operator ``<<->>``) walks it nearest first with simple arithmetic instead of the geography
  operator's trigonometry: the database's CPU per nearest-responder query fell by about a quarter.
- ``responder_index``: one row per member (``member_id``, ``street_code``, ``grid_code``, ``kind``,
  ``skills``, ``available``, ``geom``), unpartitioned, with the n-D index on its sphere points. A search
  that is not limited to one street (a city-wide dispatcher, a pool spanning streets) reads this one
  index instead of merging a nearest-first scan of every street's partition of ``members`` (0014),
  which cost the database three times as much CPU as the search itself. Kept by statement triggers with
  transition tables in the writer's own transaction (insert, update incl. moves between partitions,
  delete, truncate), so it never differs from ``members`` as any transaction sees it. The triggers are
  named ``members_a_responders_*`` so that they fire before ``members_b_street_*`` (PostgreSQL fires a
  table's triggers in name order): the street trigger's own UPDATE (it fills ``street_code``) then fires
  them once more, nested, with the rows as they end up — last, so the index keeps those.
- ``members`` gets the same n-D index per partition: a pool inside one street still reads only that
  street's partition (0014, issue 18), now ranked by the same chord as the city-wide search.

Revision ID: 0020_responder_index
Revises: 0019_freshness_marks
"""
from alembic import op

revision = "0020_responder_index"
down_revision = "0019_freshness_marks"
branch_labels = None
depends_on = None

#: Mean Earth radius in metres (IUGG), as ``gridmap.metric.EARTH_RADIUS_M``.
R_M = 6371008.8

SPHERE_XYZ = f"""
CREATE OR REPLACE FUNCTION gridmap_sphere_xyz(lon double precision, lat double precision) RETURNS geometry
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT ST_MakePoint({R_M} * cos(radians(lat)) * cos(radians(lon)),
                        {R_M} * cos(radians(lat)) * sin(radians(lon)),
                        {R_M} * sin(radians(lat)))
$$
"""

COLUMNS = "member_id, street_code, grid_code, kind, skills, available, geom"

SYNC_FUNCTION = f"""
CREATE OR REPLACE FUNCTION gridmap_responder_index() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM responder_index;  -- (TRUNCATE would refuse: the table may be in the same TRUNCATE)
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO responder_index ({COLUMNS}) SELECT {COLUMNS} FROM new_rows;
    ELSIF TG_OP = 'UPDATE' THEN
        DELETE FROM responder_index WHERE member_id IN (SELECT member_id FROM old_rows EXCEPT SELECT member_id FROM new_rows);
        INSERT INTO responder_index ({COLUMNS}) SELECT {COLUMNS} FROM new_rows
        ON CONFLICT (member_id) DO UPDATE SET street_code = EXCLUDED.street_code, grid_code = EXCLUDED.grid_code,
            kind = EXCLUDED.kind, skills = EXCLUDED.skills, available = EXCLUDED.available, geom = EXCLUDED.geom
        WHERE (responder_index.street_code, responder_index.grid_code, responder_index.kind, responder_index.skills,
               responder_index.available, responder_index.geom)
              IS DISTINCT FROM (EXCLUDED.street_code, EXCLUDED.grid_code, EXCLUDED.kind, EXCLUDED.skills,
                                EXCLUDED.available, EXCLUDED.geom);
    ELSE
        DELETE FROM responder_index WHERE member_id IN (SELECT member_id FROM old_rows);
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql
"""

XYZ_INDEX = "USING gist (gridmap_sphere_xyz(ST_X(geom), ST_Y(geom)) gist_geometry_ops_nd)"


def upgrade() -> None:
    op.execute(SPHERE_XYZ)
    op.execute("CREATE TABLE responder_index (member_id text PRIMARY KEY, street_code text, grid_code text, "
               "kind text NOT NULL, skills text[], available boolean NOT NULL, geom geometry(Point, 4326) NOT NULL)")
    op.execute(f"INSERT INTO responder_index ({COLUMNS}) SELECT {COLUMNS} FROM members")
    op.execute(f"CREATE INDEX ix_responder_index_xyz ON responder_index {XYZ_INDEX}")
    op.execute(f"CREATE INDEX ix_members_xyz ON members {XYZ_INDEX}")
    op.execute(SYNC_FUNCTION)
    for event, tables in (("INSERT", "NEW TABLE AS new_rows"), ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
                          ("DELETE", "OLD TABLE AS old_rows")):
        op.execute(f"CREATE TRIGGER members_a_responders_{event.lower()[:3]} AFTER {event} ON members "
                   f"REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION gridmap_responder_index()")
    op.execute("CREATE TRIGGER members_a_responders_trunc AFTER TRUNCATE ON members "
               "FOR EACH STATEMENT EXECUTE FUNCTION gridmap_responder_index()")
    op.execute("ANALYZE responder_index")


def downgrade() -> None:
    for suffix in ("ins", "upd", "del", "trunc"):
        op.execute(f"DROP TRIGGER IF EXISTS members_a_responders_{suffix} ON members")
    op.execute("DROP FUNCTION IF EXISTS gridmap_responder_index()")
    op.execute("DROP INDEX IF EXISTS ix_members_xyz")
    op.execute("DROP TABLE IF EXISTS responder_index")
    op.execute("DROP FUNCTION IF EXISTS gridmap_sphere_xyz(double precision, double precision)")
