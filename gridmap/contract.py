"""The data contract and the policy defaults.

Column names here are the contract between the importers (``geodata``) and the engines. Every
layer is a GeoDataFrame in WGS84 (EPSG:4326); distances are metres.
"""

from __future__ import annotations

WGS84 = "EPSG:4326"

#: Resolution of the H3 cell stored beside every point (res 10: ~15,000 m² per cell, edge ~66 m).
H3_POINT_RES = 10

# Layers and their columns ----------------------------------------------------------------------

LAYERS = ("streets", "communities", "grids", "households", "members", "service_centres", "incidents")

ID_COLUMN = {
    "streets": "code",
    "communities": "code",
    "grids": "grid_code",
    "households": "household_id",
    "members": "member_id",
    "service_centres": "centre_id",
    "incidents": "incident_id",
}

REQUIRED = {
    "streets": ("code",),
    "communities": ("code",),
    "grids": ("grid_code",),
    "households": ("household_id",),
    "members": ("member_id",),
    "service_centres": ("centre_id",),
    "incidents": ("incident_id", "category", "reported_at"),
}

OPTIONAL = {
    "streets": ("name",),
    "communities": ("name", "street_code"),
    "grids": ("name", "community_code", "kind", "has_branch", "branch_name"),
    "households": ("grid_code", "size", "tags", "name", "phone", "id_number"),
    "members": ("grid_code", "skills", "available", "min_links", "max_links", "name", "phone", "kind"),
    "service_centres": ("name", "kind", "radius_m"),
    "incidents": ("level", "status", "required_skill", "grid_code"),
}

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
PII_COLUMNS = ("name", "phone", "id_number")

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
