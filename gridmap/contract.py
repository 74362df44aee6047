"""The data contract and the policy defaults.

Column names here are the contract between the importers (``geodata``) and the engines. Every
layer is a GeoDataFrame in WGS84 (EPSG:4326); distances are metres.
"""

from __future__ import annotations

from dataclasses import dataclass

WGS84 = "EPSG:4326"

#: Resolution of the H3 cell stored beside every point (res 10: ~15,000 m² per cell, edge ~66 m).
H3_POINT_RES = 10

# Layers and their columns ----------------------------------------------------------------------

LAYERS = ("streets", "communities", "grids", "households", "members", "service_centres", "incidents")

@dataclass(frozen=True)
class Column:
    """One column of a layer in the data contract.

    ``type`` is one of :data:`COLUMN_TYPES` (``text[]`` is a list of strings end to end: file cell
    → PostgreSQL array → Python list). ``required``: every row of a file must carry it. ``pii``:
    personal data, masked unless role and region allow. ``default``: what the store writes for a
    blank cell (such a column is NOT NULL in the store although a file may leave it out).
    """

    name: str
    type: str = "text"
    required: bool = False
    pii: bool = False
    default: object = None

    @property
    def nullable(self) -> bool:
        """Whether the store may hold NULL here."""
        return not self.required and self.default is None


#: The column types of the contract (PostgreSQL spelling).
COLUMN_TYPES = ("text", "integer", "double precision", "boolean", "text[]", "timestamptz")


def _text(name: str, **kw) -> Column:
    return Column(name, "text", **kw)


#: The contract columns of every layer (besides the geometry), the id first. This is the one list
#: the importer copies, the store's SELECTs read and ``tests/test_contract.py`` checks the ORM models
#: and the migrated database against.
COLUMNS: dict[str, tuple[Column, ...]] = {
    "streets": (_text("code", required=True), _text("name")),
    "communities": (_text("code", required=True), _text("name"), _text("street_code")),
    "grids": (_text("grid_code", required=True), _text("name"), _text("community_code"), _text("kind"),
              Column("has_branch", "boolean"), _text("branch_name")),
    "households": (_text("household_id", required=True), _text("grid_code"), Column("size", "integer"),
                   Column("tags", "text[]"), _text("name", pii=True), _text("phone", pii=True),
                   _text("id_number", pii=True), _text("building"), _text("unit"), _text("room")),
    "members": (_text("member_id", required=True), _text("grid_code"), _text("kind", default="member"),
                Column("skills", "text[]"), Column("available", "boolean", default=True),
                Column("min_links", "integer"), Column("max_links", "integer"), _text("name", pii=True),
                _text("phone", pii=True)),
    "service_centres": (_text("centre_id", required=True), _text("name"), _text("kind"),
                        Column("radius_m", "double precision")),
    "incidents": (_text("incident_id", required=True), _text("category", required=True), Column("level", "integer"),
                  _text("status", default="reported"), _text("required_skill"),
                  Column("reported_at", "timestamptz", required=True), _text("grid_code"), _text("source")),
}


def column_names(layer: str, *, pii: bool = True) -> tuple[str, ...]:
    """Names of a layer's contract columns in contract order; ``pii=False`` leaves personal data out."""
    return tuple(c.name for c in COLUMNS[layer] if pii or not c.pii)


#: The id column of each layer.
ID_COLUMN = {layer: cols[0].name for layer, cols in COLUMNS.items()}
#: Columns every row of a file must carry (besides the geometry).
REQUIRED = {layer: tuple(c.name for c in cols if c.required) for layer, cols in COLUMNS.items()}
#: Columns of a layer holding a list of strings (``tags``, ``skills``).
LIST_COLUMNS = tuple(dict.fromkeys(c.name for cols in COLUMNS.values() for c in cols if c.type == "text[]"))

#: Geometry type each layer must carry ("point" or "polygon").
GEOMETRY_KIND = {
    "streets": "polygon",
    "communities": "polygon",
    "grids": "polygon",
    "households": "point",
    "members": "point",
    "service_centres": "point",
    "incidents": "point",
}

#: Personal data of residents (and members' contact details): masked unless role and region allow.
PII_COLUMNS = tuple(dict.fromkeys(c.name for cols in COLUMNS.values() for c in cols if c.pii))

# Policy defaults (seeds 001/002) ---------------------------------------------------------------

#: 包片联户: each party member links 5–10 households; every household exactly one member.
MIN_LINKS = 5
MAX_LINKS = 10

#: Grid size bands in households, by grid kind.
GRID_BANDS = {"urban": (300, 500), "rural": (100, 200)}
DEFAULT_GRID_KIND = "urban"

#: One full-time grid worker per this many households.
HOUSEHOLDS_PER_GRID_WORKER = 300

#: 15-minute service circle: straight-line radius, walking speed and minutes.
SERVICE_RADIUS_M = 1000.0
WALK_SPEED_M_PER_MIN = 80.0
WALK_MINUTES = 15.0

#: Incident response windows.
ORDINARY_RESPONSE_HOURS = 24
COMPLEX_RESPONSE_WORKING_DAYS = 3
#: The last fraction of a response window shown yellow (红黄绿灯).
YELLOW_FRACTION = 0.2


def grid_band(kind: str | None) -> tuple[int, int]:
    """Household band ``(min, max)`` for a grid kind (``urban`` / ``rural``); unknown kinds are urban."""
    return GRID_BANDS.get((kind or DEFAULT_GRID_KIND).strip().lower(), GRID_BANDS[DEFAULT_GRID_KIND])


# Special groups (特殊人群) --------------------------------------------------------------------------

#: Household tags of the special groups 包片联户 serves first: such a household is never left unlinked
#: while an ordinary household is linked to a member who could serve it instead. Tags are compared
#: exactly (stripped); both spellings of 低保 rosters use are listed.
SPECIAL_TAGS = ("独居老人", "空巢老人", "留守儿童", "残疾人", "低保", "低保户", "特困", "重病")


# One vocabulary for yes/no cells (Excel, CSV, forms) -------------------------------------------

#: Words read as true / false in a yes-no column (compared lower-cased and stripped).
TRUE_WORDS = frozenset({"1", "true", "t", "yes", "y", "是", "有", "在岗", "可用", "√"})
FALSE_WORDS = frozenset({"0", "false", "f", "no", "n", "否", "无", "没有", "不在岗", "离岗", "不可用", "×"})


def parse_bool(value, default: bool | None = None) -> bool | None:
    """A yes/no cell as a bool: ``TRUE_WORDS`` / ``FALSE_WORDS``, numbers (0 is false), real bools.

    Empty cells (None, NaN, "") give ``default``; any other word raises ``ValueError`` naming it.
    """
    if value is None or (isinstance(value, float) and value != value):
        return default
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    if isinstance(value, (int, float)) or type(value).__module__ == "numpy":
        return bool(value != 0)
    word = str(value).strip().lower()
    if word == "" or word in ("nan", "<na>", "none"):
        return default
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"{value!r} is not yes/no (use 是/否, 1/0, true/false)")


# Why a household has no linked member (无联系党员): one set of codes, Chinese labels for display -----

UNLINKED_NO_GRID = "no_grid"
UNLINKED_NO_MEMBER = "no_member_in_grid"
UNLINKED_TOO_FAR = "member_too_far"
UNLINKED_FULL = "members_full"
UNLINKED_NOT_LINKED = "not_linked"

UNLINKED_LABELS = {
    UNLINKED_NO_GRID: "不在任何网格内",
    UNLINKED_NO_MEMBER: "网格内无党员",
    UNLINKED_TOO_FAR: "党员距离过远",
    UNLINKED_FULL: "党员联户已满",
    UNLINKED_NOT_LINKED: "尚未联户",
}
