"""GeoAlchemy2 models of the PostGIS schema (mirrors ``migrations/versions``; migrations are the truth).

Geometries are SRID 4326 (WGS84) with GiST indexes; every point has its H3 cell (resolution 10)
as BIGINT; each grid is also stored as its set of H3 cells (``grid_cells``).

``households``, ``members``, ``links`` and ``incidents`` are partitioned by ``street_code`` (migration
0014, see :mod:`geodata.store.partitions`): their unique key is ``(street_code, id)`` and the global
id lives in the lookup tables ``household_street``, ``member_street``, ``incident_street``. The
``primary_key`` flags below name the logical id for SQLAlchemy; the database keys are the migration's.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from geoalchemy2 import Geometry
from sqlalchemy import (ARRAY, BigInteger, Boolean, Column, DateTime, Float, ForeignKey, Integer, MetaData, Table, Text,
                        func)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

metadata = MetaData()


class Base(DeclarativeBase):
    metadata = metadata


def _poly():
    return Column("geom", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False), nullable=False)


def _point():
    return Column("geom", Geometry("POINT", srid=4326, spatial_index=False), nullable=False)


class Street(Base):
    """街道 — a sub-district."""

    __tablename__ = "streets"
    code: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    geom = _poly()


class Community(Base):
    """社区 — a residents' community."""

    __tablename__ = "communities"
    code: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    street_code: Mapped[str | None] = mapped_column(Text, index=True)
    geom = _poly()


class Grid(Base):
    """网格 — a management grid; ``has_branch`` says whether a party branch (网格党支部) covers it."""

    __tablename__ = "grids"
    grid_code: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    community_code: Mapped[str | None] = mapped_column(Text, index=True)
    kind: Mapped[str | None] = mapped_column(Text)
    has_branch: Mapped[bool | None] = mapped_column(Boolean)
    branch_name: Mapped[str | None] = mapped_column(Text)
    geom = _poly()
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    #: Bumped by a trigger on every write (migration 0004); an edit names the versions it was computed on.
    version: Mapped[int] = mapped_column(Integer, server_default="1", nullable=False)


def _grid_ref():
    """``grid_code`` naming an existing grid; checked at commit so one transaction may re-create grids."""
    return mapped_column(Text, ForeignKey("grids.grid_code", onupdate="CASCADE", deferrable=True, initially="DEFERRED"),
                         index=True)


grid_cells = Table(
    "grid_cells", metadata,
    Column("grid_code", Text, ForeignKey("grids.grid_code", ondelete="CASCADE"), primary_key=True),
    Column("h3", BigInteger, primary_key=True),
)


class Household(Base):
    """住户 — a household; ``name``/``phone``/``id_number`` are personal data (masked by default)."""

    __tablename__ = "households"
    household_id: Mapped[str] = mapped_column(Text, primary_key=True)
    grid_code: Mapped[str | None] = _grid_ref()
    size: Mapped[int | None] = mapped_column(Integer)
    tags: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    name: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    id_number: Mapped[str | None] = mapped_column(Text)
    building: Mapped[str | None] = mapped_column(Text)  # 楼栋/单元/室 (migration 0007)
    unit: Mapped[str | None] = mapped_column(Text)
    room: Mapped[str | None] = mapped_column(Text)
    h3: Mapped[int] = mapped_column(BigInteger, index=True)
    geom = _point()
    street_code: Mapped[str | None] = mapped_column(Text)  # partition key (0014): grid → community → street


class Member(Base):
    """党员 (or 网格员, ``kind``) — a responder with skills and availability."""

    __tablename__ = "members"
    member_id: Mapped[str] = mapped_column(Text, primary_key=True)
    grid_code: Mapped[str | None] = _grid_ref()
    kind: Mapped[str] = mapped_column(Text, server_default="member")
    skills: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    available: Mapped[bool] = mapped_column(Boolean, server_default="true")
    min_links: Mapped[int | None] = mapped_column(Integer)
    max_links: Mapped[int | None] = mapped_column(Integer)
    name: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    h3: Mapped[int] = mapped_column(BigInteger, index=True)
    geom = _point()
    street_code: Mapped[str | None] = mapped_column(Text)  # partition key (0014): grid → community → street


class ServiceCentre(Base):
    """党群服务中心 — a service centre with its service radius in metres."""

    __tablename__ = "service_centres"
    centre_id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str | None] = mapped_column(Text)
    radius_m: Mapped[float | None] = mapped_column(Float)
    h3: Mapped[int] = mapped_column(BigInteger, index=True)
    geom = _point()


class LinkRun(Base):
    """One 包片联户 computation for a region; exactly one run per region is current (atomic swap)."""

    __tablename__ = "link_runs"
    run_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    region: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    params = Column(JSONB)
    summary = Column(JSONB)
    is_current: Mapped[bool] = mapped_column(Boolean, server_default="false")


class Link(Base):
    """包片联户 — one household linked to one member in a run."""

    __tablename__ = "links"
    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("link_runs.run_id", ondelete="CASCADE"), primary_key=True)
    household_id: Mapped[str] = mapped_column(Text, primary_key=True)
    member_id: Mapped[str] = mapped_column(Text, index=True)
    distance_m: Mapped[float | None] = mapped_column(Float)
    visit_order: Mapped[int | None] = mapped_column(Integer)
    street_code: Mapped[str | None] = mapped_column(Text)  # partition key (0014): the household's street


class Incident(Base):
    """事件 — a reported incident routed to a grid, with deadline and state."""

    __tablename__ = "incidents"
    incident_id: Mapped[str] = mapped_column(Text, primary_key=True)
    category: Mapped[str] = mapped_column(Text)
    level: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(Text, server_default="reported")
    required_skill: Mapped[str | None] = mapped_column(Text)
    reported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # completion (办结) deadline
    respond_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # 接单 deadline (0012)
    grid_code: Mapped[str | None] = _grid_ref()
    community_code: Mapped[str | None] = mapped_column(Text)
    street_code: Mapped[str | None] = mapped_column(Text)  # partition key (0014)
    assigned_member_id: Mapped[str | None] = mapped_column(Text, index=True)
    escalation_level: Mapped[str | None] = mapped_column(Text)
    rating: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str | None] = mapped_column(Text)
    h3: Mapped[int] = mapped_column(BigInteger, index=True)
    geom = _point()
    # Residents' reports (migration 0008_residents): what they told, the public ticket, hashes only.
    description: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(Text)
    ticket: Mapped[str | None] = mapped_column(Text)  # unique across streets through incident_street (0014)
    reporter_phone_hash: Mapped[str | None] = mapped_column(Text)
    follow_hash: Mapped[str | None] = mapped_column(Text)
    follow_key_hash: Mapped[str | None] = mapped_column(Text)
    rating_comment: Mapped[str | None] = mapped_column(Text)
    flagged: Mapped[bool] = mapped_column(Boolean, server_default="false")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


def _lookup(name: str, idcol: str, *extra: Column) -> Table:
    """Unpartitioned id → street table (0014): global id uniqueness and routing a lookup by id."""
    return Table(name, metadata, Column(idcol, Text, primary_key=True), Column("street_code", Text), *extra)


household_street = _lookup("household_street", "household_id")
member_street = _lookup("member_street", "member_id")
incident_street = _lookup("incident_street", "incident_id", Column("ticket", Text, unique=True))

#: Every member's search fields, unpartitioned (0020): the city-wide nearest-responder index, kept equal
#: to ``members`` by statement triggers (read only; never written by the application).
responder_index = Table(
    "responder_index", metadata, Column("member_id", Text, primary_key=True), Column("street_code", Text),
    Column("grid_code", Text), Column("kind", Text, nullable=False), Column("skills", ARRAY(Text)),
    Column("available", Boolean, nullable=False), Column("geom", Geometry("POINT", srid=4326), nullable=False))

#: The partitioned tables (0014) and their lookup tables.
PARTITIONED = ("households", "members", "links", "incidents")
LOOKUPS = {"households": household_street, "members": member_street, "incidents": incident_street}

#: Tables of the contract layers, by layer name.
LAYER_TABLES: dict[str, Table] = {  # declarative __table__ is typed as its base class, FromClause
    "streets": cast(Table, Street.__table__),
    "communities": cast(Table, Community.__table__),
    "grids": cast(Table, Grid.__table__),
    "households": cast(Table, Household.__table__),
    "members": cast(Table, Member.__table__),
    "service_centres": cast(Table, ServiceCentre.__table__),
    "incidents": cast(Table, Incident.__table__),
}
