"""Initial schema: streets, communities, grids (+ H3 cells), households, members, service centres,
link runs and links (包片联户), incidents. SRID 4326 geometries with GiST indexes; H3 res 10 BIGINT.

Revision ID: 0001_initial
Revises:
"""
import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def _geom(kind):
    return sa.Column("geom", Geometry(kind, srid=4326, spatial_index=False), nullable=False)


def _gist(table):
    op.create_index(f"ix_{table}_geom", table, ["geom"], postgresql_using="gist")


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.create_table("streets", sa.Column("code", sa.Text, primary_key=True), sa.Column("name", sa.Text), _geom("MULTIPOLYGON"))
    op.create_table("communities", sa.Column("code", sa.Text, primary_key=True), sa.Column("name", sa.Text),
                    sa.Column("street_code", sa.Text, index=True), _geom("MULTIPOLYGON"))
    op.create_table("grids", sa.Column("grid_code", sa.Text, primary_key=True), sa.Column("name", sa.Text),
                    sa.Column("community_code", sa.Text, index=True), sa.Column("kind", sa.Text),
                    sa.Column("has_branch", sa.Boolean), sa.Column("branch_name", sa.Text), _geom("MULTIPOLYGON"),
                    sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()))
    op.create_table("grid_cells",
                    sa.Column("grid_code", sa.Text, sa.ForeignKey("grids.grid_code", ondelete="CASCADE"), primary_key=True),
                    sa.Column("h3", sa.BigInteger, primary_key=True))
    op.create_index("ix_grid_cells_h3", "grid_cells", ["h3"])
    op.create_table("households", sa.Column("household_id", sa.Text, primary_key=True),
                    sa.Column("grid_code", sa.Text, index=True), sa.Column("size", sa.Integer), sa.Column("tags", ARRAY(sa.Text)),
                    sa.Column("name", sa.Text), sa.Column("phone", sa.Text), sa.Column("id_number", sa.Text),
                    sa.Column("h3", sa.BigInteger, nullable=False, index=True), _geom("POINT"))
    op.create_table("members", sa.Column("member_id", sa.Text, primary_key=True),
                    sa.Column("grid_code", sa.Text, index=True),
                    sa.Column("kind", sa.Text, server_default="member", nullable=False),
                    sa.Column("skills", ARRAY(sa.Text)),
                    sa.Column("available", sa.Boolean, server_default="true", nullable=False),
                    sa.Column("min_links", sa.Integer), sa.Column("max_links", sa.Integer),
                    sa.Column("name", sa.Text), sa.Column("phone", sa.Text),
                    sa.Column("h3", sa.BigInteger, nullable=False, index=True), _geom("POINT"))
    op.create_table("service_centres", sa.Column("centre_id", sa.Text, primary_key=True), sa.Column("name", sa.Text),
                    sa.Column("kind", sa.Text), sa.Column("radius_m", sa.Float),
                    sa.Column("h3", sa.BigInteger, nullable=False, index=True), _geom("POINT"))
    op.create_table("link_runs", sa.Column("run_id", sa.BigInteger, primary_key=True, autoincrement=True),
                    sa.Column("region", sa.Text, nullable=False),
                    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
                    sa.Column("params", JSONB), sa.Column("summary", JSONB),
                    sa.Column("is_current", sa.Boolean, server_default="false", nullable=False))
    op.create_index("ux_link_runs_current", "link_runs", ["region"], unique=True, postgresql_where=sa.text("is_current"))
    op.create_table("links",
                    sa.Column("run_id", sa.BigInteger, sa.ForeignKey("link_runs.run_id", ondelete="CASCADE"), primary_key=True),
                    sa.Column("household_id", sa.Text, primary_key=True),
                    sa.Column("member_id", sa.Text, nullable=False, index=True),
                    sa.Column("distance_m", sa.Float), sa.Column("visit_order", sa.Integer))
    op.create_table("incidents", sa.Column("incident_id", sa.Text, primary_key=True),
                    sa.Column("category", sa.Text, nullable=False), sa.Column("level", sa.Integer),
                    sa.Column("status", sa.Text, server_default="reported", nullable=False),
                    sa.Column("required_skill", sa.Text),
                    sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
                    sa.Column("deadline_at", sa.DateTime(timezone=True)),
                    sa.Column("grid_code", sa.Text, index=True), sa.Column("community_code", sa.Text),
                    sa.Column("street_code", sa.Text), sa.Column("assigned_member_id", sa.Text, index=True),
                    sa.Column("escalation_level", sa.Text), sa.Column("rating", sa.Integer), sa.Column("source", sa.Text),
                    sa.Column("h3", sa.BigInteger, nullable=False, index=True), _geom("POINT"),
                    sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()))
    for t in ("streets", "communities", "grids", "households", "members", "service_centres", "incidents"):
        _gist(t)


def downgrade() -> None:
    for t in ("incidents", "links", "link_runs", "service_centres", "members", "households", "grid_cells", "grids",
              "communities", "streets"):
        op.drop_table(t)
