"""The coverage scenario shared by the data and API tiers: real Hangzhou grids (../shared) with
synthesised households, branch and members removed from chosen grids.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="module")
def scenario(hangzhou_grids):
    """Real grids with synthesised households; branch and members removed from chosen grids.

    Built deterministically so the expected blank grids are known by construction: every grid
    outside ``strip_members`` is given at least one member, every grid outside ``strip_branch``
    has a branch.
    """
    from geodata.synth import synth_in_grids

    s = synth_in_grids(hangzhou_grids, seed=7, no_member_share=0.0, no_branch_share=0.0)
    grids = s["grids"].copy()
    hh = s["households"]
    codes = np.sort(grids["grid_code"].unique())
    rng = np.random.default_rng(3)
    pick = rng.choice(len(codes), 30, replace=False)
    strip_branch = set(codes[pick[:10]])
    strip_members = set(codes[pick[10:20]])
    both = set(codes[pick[20:30]])
    grids["has_branch"] = ~grids["grid_code"].isin(strip_branch | both)
    members = s["members"][~s["members"]["grid_code"].isin(strip_members | both)]
    # every other grid with households gets one member at its first household
    have = set(members["grid_code"])
    extra = hh[~hh["grid_code"].isin(have | strip_members | both)].drop_duplicates("grid_code")
    add = gpd.GeoDataFrame({"member_id": [f"X{i:04d}" for i in range(len(extra))],
                            "grid_code": extra["grid_code"].to_numpy()}, geometry=extra.geometry.values, crs=4326)
    members = pd.concat([members[["member_id", "grid_code", "geometry"]], add], ignore_index=True)
    members = gpd.GeoDataFrame(members, geometry="geometry", crs=4326)
    return {"grids": grids, "households": hh, "members": members, "centres": s["service_centres"],
            "strip_branch": strip_branch, "strip_members": strip_members, "both": both}
