"""包片联户 on the real Hangzhou grids (../shared) with synthesised households."""

from __future__ import annotations

from gridmap.linkage import (
    REASON_ALL_FULL,
    REASON_NO_MEMBER,
    grid_adjacency,
    link_households,
)


# ------------------------------------------------------------------------------------------------
# Real Hangzhou grids with synthesised households


def test_hangzhou_real_grids_report_shortages(hangzhou_scenario):
    grids = hangzhou_scenario["grids"]
    street = grids["grid_code"].str.split("-").str[0]
    keep = street == street.value_counts().index[0]  # the street with the most grids
    codes = set(grids.loc[keep, "grid_code"])
    g = grids[keep]
    hh = hangzhou_scenario["households"]
    mm = hangzhou_scenario["members"]
    hh = hh[hh["grid_code"].isin(codes)]
    mm = mm[mm["grid_code"].isin(codes)]
    base = link_households(hh, mm, grids=g)
    res = link_households(hh, mm, grids=g, allow_cross_grid=True)
    for r in (base, res):
        assert r.links["household_id"].is_unique
        assert r.links.groupby("member_id").size().max() <= 10
        gr = r.grids.set_index("grid_code")
        assert (gr["members_needed"] == -(-gr["unlinked"] // 10)).all()
        assert r.summary["linked"] + r.summary["unlinked"] == len(hh)
    # Members are ~7 % of households with 10 places each: real shortages, reported per grid.
    assert res.summary["grids_short"] > 0 and res.summary["members_needed"] > 0
    no_member = set(g["grid_code"]) - set(mm.loc[mm["available"].astype(bool), "grid_code"])
    un = res.unlinked.set_index("household_id")
    if no_member:
        assert set(un.loc[un["grid_code"].isin(no_member), "reason"]) <= {REASON_NO_MEMBER, REASON_ALL_FULL}
    # Borrowing never lowers the number linked, and only crosses to neighbouring grids.
    assert res.summary["linked"] >= base.summary["linked"]
    adj = grid_adjacency(g)
    cross = res.links[res.links["cross_grid"]]
    assert all(m in adj[h] for h, m in zip(cross["grid_code"], cross["member_grid_code"]))
