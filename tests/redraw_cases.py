"""Checks shared by the domain and data tiers' building redraw tests: households placed inside footprints,
and every building whole with counts equal to a point-in-polygon recount.
"""

from __future__ import annotations

import numpy as np
import shapely


UTM = "EPSG:32651"
X0, Y0 = 230_000.0, 3_350_000.0


def _points_inside(footprints_m, counts, rng):
    """``counts[i]`` random points inside each footprint (metres), by rejection in its bounds."""
    out = []
    for poly, n in zip(footprints_m, counts):
        x0, y0, x1, y1 = poly.bounds
        got = np.zeros((0, 2))
        while len(got) < n:
            cand = np.column_stack([rng.uniform(x0, x1, 4 * n + 8), rng.uniform(y0, y1, 4 * n + 8)])
            got = np.vstack([got, cand[shapely.contains_xy(poly, cand[:, 0], cand[:, 1])]])
        out.append(got[:n])
    return np.vstack(out) if out else np.zeros((0, 2))


def _check_whole_and_recount(res, communities_m, footprints_m, households_m, band_max=500):
    grids = res.grids.to_crs(UTM)
    xy = shapely.get_coordinates(households_m)
    recount = [int(shapely.contains_xy(g, xy[:, 0], xy[:, 1]).sum()) for g in grids.geometry]
    assert recount == grids["households"].tolist()
    assert grids["households"].sum() == len(xy)
    kept = grids.geometry[grids["status"] == "kept"].to_numpy()
    border = shapely.union_all(np.r_[shapely.boundary(communities_m), shapely.boundary(kept)])
    split = 0
    for foot in footprints_m:
        held = int(shapely.contains_xy(foot, xy[:, 0], xy[:, 1]).sum())
        if shapely.intersects(foot, border) or held > band_max:
            continue  # cut by a community or a kept grid (both untouched), or alone above the band
        shares = shapely.area(shapely.intersection(grids.geometry.to_numpy(), foot))
        split += int((shares > 0.01).sum() > 1)
    assert split == 0
