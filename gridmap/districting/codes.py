"""Grid codes: kept and redrawn grids keep theirs; new ones ``<community><sep><NN>`` (CJ/T 349 style)."""

from __future__ import annotations

import re

import numpy as np
import shapely


def sequence_codes(community_code: str, used: set[str], n: int, separator: str | None) -> list[str]:
    """``n`` new grid codes ``<community><sep><NN>`` not in ``used`` (lowest free numbers first).

    ``separator`` defaults to ``""`` for numeric community codes, else ``"-"``.
    """
    if separator is None:
        separator = "" if community_code.isdigit() else "-"
    taken = set()
    pattern = re.compile(re.escape(community_code + separator) + r"(\d+)$")
    for code in used:
        match = pattern.match(str(code))
        if match:
            taken.add(int(match.group(1)))
    codes: list[str] = []
    number = 1
    while len(codes) < n:
        code = f"{community_code}{separator}{number:02d}"
        if number not in taken and code not in used:
            codes.append(code)
        number += 1
    return codes


def name_new_grids(drafts: list, community_code: str, used: set[str], separator: str | None) -> None:
    """Give the drafts without a code new codes, north to south then west to east (in place)."""
    new = [d for d in drafts if d["code"] is None]
    inner = [shapely.get_coordinates(shapely.point_on_surface(d["geom"]))[0] for d in new]
    order = sorted(range(len(new)), key=lambda t: (-round(float(inner[t][1])), round(float(inner[t][0]))))
    for t, code in zip(order, sequence_codes(community_code, used, len(new), separator)):
        new[t]["code"] = code


def code_of_label(drafts: list, labels: np.ndarray, status_kept: str) -> np.ndarray:
    """Grid code per atom label (object array indexed by label; the last slot, -1, is None)."""
    codes = np.array([None] * (int(labels.max()) + 2 if len(labels) else 1), dtype=object)
    for draft in drafts:
        if draft["status"] != status_kept and draft["gid"] >= 0:
            codes[draft["gid"]] = draft["code"]
    return codes
