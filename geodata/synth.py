"""Synthetic but realistic scenarios: households, members and service centres.

Two entry points, both deterministic for a seed:

* ``synth_in_grids`` fills real grid polygons (e.g. the Hangzhou grids) with households clustered
  in buildings, party members living among them (~7 %), and service centres; a share of grids is made
  over- or under-size, some get no member and some no party branch, so every engine has real work.
* ``synth_city`` lays out a whole city of streets → communities → grids (jittered lattice that tiles
  exactly) with buildings, for benchmarks from 50k to 1M households.

All output is WGS84 (EPSG:4326). Names, phone numbers and ID numbers are made up (18-digit IDs
carry a valid GB 11643 check digit) and exist only so that masking and import paths are exercised.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely

from gridmap.metric import metric_crs

SKILLS = ("法律", "医疗", "心理", "维修", "调解", "消防", "教育", "养老", "电工", "志愿服务")
TAGS = (("独居老人", 0.05), ("低保户", 0.03), ("残疾人", 0.02), ("退役军人", 0.03))
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
_GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国建华志强海燕淑珍玉兰"
_ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
_ID_CHECK = "10X98765432"


def _names(rng, n: int) -> np.ndarray:
    s = rng.integers(0, len(_SURNAMES), n)
    g1 = rng.integers(0, len(_GIVEN), n)
    g2 = rng.integers(0, len(_GIVEN), n)
    two = rng.random(n) < 0.6
    return np.array([_SURNAMES[a] + _GIVEN[b] + (_GIVEN[c] if t else "") for a, b, c, t in zip(s, g1, g2, two)], dtype=object)


def _phones(rng, n: int) -> np.ndarray:
    prefix = rng.choice(np.array([133, 135, 136, 137, 138, 139, 150, 151, 158, 180, 186, 189]), n)
    rest = rng.integers(0, 10**8, n)
    return np.array([f"{p}{r:08d}" for p, r in zip(prefix, rest)], dtype=object)


def _id_numbers(rng, n: int, region: str = "330103") -> np.ndarray:
    days = rng.integers(0, 365 * 70, n)
    births = (np.datetime64("1940-01-01") + days.astype("timedelta64[D]")).astype(str)
    seq = rng.integers(0, 1000, n)
    out = []
    for b, q in zip(births, seq):
        body = f"{region}{b.replace('-', '')}{q:03d}"
        check = _ID_CHECK[int(np.dot(_ID_WEIGHTS, np.frombuffer(body.encode(), dtype=np.uint8) - 48) % 11)]
        out.append(body + check)
    return np.array(out, dtype=object)


def _tags(rng, n: int) -> np.ndarray:
    cols = [np.where(rng.random(n) < p, t, "") for t, p in TAGS]
    return np.array([",".join(x for x in row if x) or None for row in zip(*cols)], dtype=object)


def _skills(rng, n: int) -> np.ndarray:
    k = rng.integers(1, 3, n)
    return np.array([",".join(sorted(set(rng.choice(SKILLS, kk, replace=False)))) for kk in k], dtype=object)


def _sample_in_polygons(rng, polys_m, counts) -> np.ndarray:
    """Uniform random points (metres) inside each polygon, ``counts[i]`` for polygon i (rejection sampling)."""
    out = []
    for poly, c in zip(polys_m, counts):
        if c <= 0:
            continue
        minx, miny, maxx, maxy = poly.bounds
        got = np.zeros((0, 2))
        tries = 0
        while len(got) < c and tries < 50:
            m = max(int((c - len(got)) * 2.5) + 8, 16)
            xy = np.column_stack([rng.uniform(minx, maxx, m), rng.uniform(miny, maxy, m)])
            inside = shapely.contains_xy(poly, xy[:, 0], xy[:, 1])
            got = np.vstack([got, xy[inside]])
            tries += 1
        if len(got) < c:  # a sliver polygon: fall back to its representative point
            p = poly.representative_point()
            got = np.vstack([got, np.tile([p.x, p.y], (c - len(got), 1))])
        out.append(got[:c])
    return np.vstack(out) if out else np.zeros((0, 2))


def _people(rng, hh_xy_m, crs, grid_codes, region="330103", start=1):
    n = len(hh_xy_m)
    pts = gpd.GeoSeries(gpd.points_from_xy(hh_xy_m[:, 0], hh_xy_m[:, 1]), crs=crs).to_crs("EPSG:4326")
    return gpd.GeoDataFrame({
        "household_id": [f"H{i:07d}" for i in range(start, start + n)],
        "grid_code": grid_codes,
        "size": rng.choice(np.array([1, 2, 3, 4, 5]), n, p=[0.18, 0.32, 0.28, 0.15, 0.07]),
        "tags": _tags(rng, n),
        "name": _names(rng, n),
        "phone": _phones(rng, n),
        "id_number": _id_numbers(rng, n, region),
    }, geometry=pts.values, crs="EPSG:4326")


def _members_from(rng, households: gpd.GeoDataFrame, rate: float, skip_grids=()) -> gpd.GeoDataFrame:
    eligible = ~households["grid_code"].isin(list(skip_grids)).to_numpy()
    pick = np.flatnonzero(eligible & (rng.random(len(households)) < rate))
    m = len(pick)
    src = households.iloc[pick]
    return gpd.GeoDataFrame({
        "member_id": [f"M{i:06d}" for i in range(1, m + 1)],
        "grid_code": src["grid_code"].to_numpy(),
        "skills": _skills(rng, m),
        "available": rng.random(m) < 0.9,
        "kind": "member",
        "name": _names(rng, m),
        "phone": _phones(rng, m),
    }, geometry=src.geometry.values, crs="EPSG:4326")


def _centres(rng, polys_wgs84, n: int) -> gpd.GeoDataFrame:
    n = max(1, min(n, len(polys_wgs84)))
    idx = np.sort(rng.choice(len(polys_wgs84), n, replace=False))
    pts = [polys_wgs84[i].representative_point() for i in idx]
    return gpd.GeoDataFrame({
        "centre_id": [f"C{i:03d}" for i in range(1, n + 1)],
        "name": [f"党群服务中心{i}" for i in range(1, n + 1)],
        "kind": "community",
        "radius_m": 1000.0,
    }, geometry=pts, crs="EPSG:4326")


def synth_in_grids(grids: gpd.GeoDataFrame, seed: int = 0, households_per_grid: tuple[int, int] = (300, 500),
                   member_rate: float = 0.07, odd_share: float = 0.10, no_member_share: float = 0.05,
                   no_branch_share: float = 0.05, centres_per_grid: float = 1 / 8) -> dict[str, gpd.GeoDataFrame]:
    """Households, members and service centres inside real grid polygons (WGS84).

    Parameters
    ----------
    grids : grid polygons with ``grid_code`` (EPSG:4326).
    seed : random seed; equal seeds give equal output.
    households_per_grid : ``(a, b)`` households drawn uniformly per ordinary grid.
    member_rate : share of households with a party member living there (at home).
    odd_share : share of grids made over-size (×1.3–1.8) and, again, under-size (×0.3–0.7).
    no_member_share, no_branch_share : share of grids given no member / ``has_branch = False``.
    centres_per_grid : service centres per grid (placed at grid representative points).

    Returns
    -------
    dict with ``grids`` (input plus ``has_branch``, ``kind``), ``households``, ``members``,
    ``service_centres``; all EPSG:4326.
    """
    rng = np.random.default_rng(seed)
    grids = grids.reset_index(drop=True).copy()
    crs = metric_crs(grids)
    gm = grids.to_crs(crs)
    n_g = len(grids)
    a, b = households_per_grid
    counts = rng.integers(a, b + 1, n_g).astype(float)
    roll = rng.random(n_g)
    over = roll < odd_share
    under = (roll >= odd_share) & (roll < 2 * odd_share)
    counts[over] *= rng.uniform(1.3, 1.8, over.sum())
    counts[under] *= rng.uniform(0.3, 0.7, under.sum())
    counts = counts.astype(int)
    # Households cluster in buildings of 10–60 households; buildings sit uniformly inside the grid.
    xy_parts, codes = [], []
    codes_all = grids["grid_code"].to_numpy()
    for i, poly in enumerate(gm.geometry.values):
        c = counts[i]
        if c == 0:
            continue
        nb = max(1, int(round(c / rng.integers(10, 60))))
        centres = _sample_in_polygons(rng, [poly], [nb])
        which = rng.integers(0, nb, c)
        xy = centres[which] + rng.normal(0, 4.0, (c, 2))
        inside = shapely.contains_xy(poly, xy[:, 0], xy[:, 1])
        xy[~inside] = centres[which[~inside]]
        xy_parts.append(xy)
        codes.extend([codes_all[i]] * c)
    hh_xy = np.vstack(xy_parts) if xy_parts else np.zeros((0, 2))
    households = _people(rng, hh_xy, crs, np.array(codes, dtype=object))
    order = rng.permutation(n_g)
    k_nm = int(round(no_member_share * n_g))
    k_nb = int(round(no_branch_share * n_g))
    no_members = set(codes_all[order[:k_nm]])
    no_branch = set(codes_all[order[k_nm:k_nm + k_nb]])
    members = _members_from(rng, households, member_rate, skip_grids=no_members)
    grids["has_branch"] = ~grids["grid_code"].isin(no_branch)
    if "kind" not in grids.columns:
        grids["kind"] = "urban"
    centres = _centres(rng, grids.geometry.values, int(round(n_g * centres_per_grid)))
    return {"grids": grids, "households": households, "members": members, "service_centres": centres}


def _jittered_lattice(rng: np.random.Generator, origin_xy: tuple[float, float], nx: int, ny: int,
                      grid_side_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Polygons of an ``nx × ny`` lattice of squares of side ``grid_side_m`` metres (metric CRS), inner
    vertices jittered so the cells tile exactly; also the column and row index of each cell."""
    vx = origin_xy[0] + np.arange(nx + 1) * grid_side_m
    vy = origin_xy[1] + np.arange(ny + 1) * grid_side_m
    VX, VY = np.meshgrid(vx, vy, indexing="ij")
    jit = grid_side_m * 0.18
    interior = np.zeros_like(VX, dtype=bool)
    interior[1:-1, 1:-1] = True
    VX = VX + np.where(interior, rng.uniform(-jit, jit, VX.shape), 0.0)
    VY = VY + np.where(interior, rng.uniform(-jit, jit, VY.shape), 0.0)
    col_2d, row_2d = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    ii, jj = col_2d.ravel(), row_2d.ravel()
    rings = np.stack([
        np.column_stack([VX[ii, jj], VY[ii, jj]]), np.column_stack([VX[ii + 1, jj], VY[ii + 1, jj]]),
        np.column_stack([VX[ii + 1, jj + 1], VY[ii + 1, jj + 1]]), np.column_stack([VX[ii, jj + 1], VY[ii, jj + 1]]),
        np.column_stack([VX[ii, jj], VY[ii, jj]]),
    ], axis=1)
    return np.asarray(shapely.polygons(rings), dtype=object), ii, jj


def _lattice_codes(ii: np.ndarray, jj: np.ndarray, nx: int, grids_per_community: tuple[int, int],
                   communities_per_street: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Grid codes and community codes of the lattice cells at columns ``ii``, rows ``jj``
    (street ``330103001``, community + three digits, grid + two digits)."""
    gx, gy = grids_per_community
    cx, cy = communities_per_street
    comm_i, comm_j = ii // gx, jj // gy
    ncx = nx // gx
    comm_idx = comm_i + comm_j * ncx
    street_idx = (comm_i // cx) + (comm_j // cy) * int(np.ceil(ncx / cx))
    street_codes = np.array([f"330103{s + 1:03d}" for s in range(street_idx.max() + 1)])
    # community sequence numbers restart inside each street
    comm_street: dict[int, int] = {}
    for c, s in zip(comm_idx, street_idx):
        comm_street.setdefault(int(c), int(s))
    seq_in_street: dict[int, int] = {}
    comm_code = {}
    for c in sorted(comm_street):
        s = comm_street[c]
        seq_in_street[s] = seq_in_street.get(s, 0) + 1
        comm_code[c] = f"{street_codes[s]}{seq_in_street[s]:03d}"
    grid_seq: dict[int, int] = {}
    code_list = []
    for c in comm_idx:
        grid_seq[int(c)] = grid_seq.get(int(c), 0) + 1
        code_list.append(f"{comm_code[int(c)]}{grid_seq[int(c)]:02d}")
    grid_comm = np.array([comm_code[int(c)] for c in comm_idx], dtype=object)
    return np.array(code_list, dtype=object), grid_comm


def _lattice_buildings(rng: np.random.Generator, grid_polys: np.ndarray,
                       counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Building centres (metric x, y), grid positions and households: ``counts[g]`` households of grid
    ``g`` in buildings of 15–60 on a 40 m sub-lattice, every 25 m × 30 m footprint inside its grid."""
    xy_parts, grid_parts, hh_parts = [], [], []
    cell = 40.0
    for g, poly in enumerate(grid_polys):
        c = counts[g]
        if c == 0:
            continue
        minx, miny, maxx, maxy = poly.bounds
        xs = np.arange(minx + cell / 2, maxx, cell)
        ys = np.arange(miny + cell / 2, maxy, cell)
        X_2d, Y_2d = np.meshgrid(xs, ys, indexing="ij")
        X, Y = X_2d.ravel(), Y_2d.ravel()
        # the whole footprint must sit inside the grid so buildings never straddle a boundary
        ok = shapely.contains_xy(poly, X - 13, Y - 16) & shapely.contains_xy(poly, X + 13, Y + 16) & \
            shapely.contains_xy(poly, X - 13, Y + 16) & shapely.contains_xy(poly, X + 13, Y - 16)
        X, Y = X[ok], Y[ok]
        nb = int(np.clip(round(c / rng.integers(15, 61)), 1, len(X)))
        pick = rng.choice(len(X), nb, replace=False)
        share = (rng.multinomial(c - nb, np.full(nb, 1 / nb)) + 1 if c >= nb
                 else np.bincount(rng.integers(0, nb, c), minlength=nb))
        xy_parts.append(np.column_stack([X[pick], Y[pick]]))
        grid_parts.append(np.full(nb, g))
        hh_parts.append(share)
    b_xy, b_grid, b_hh = np.vstack(xy_parts), np.concatenate(grid_parts), np.concatenate(hh_parts)
    keep = b_hh > 0
    return b_xy[keep], b_grid[keep], b_hh[keep]


def _admin_layers(grid_polys: np.ndarray, grid_codes: np.ndarray, grid_comm: np.ndarray,
                  crs: str) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Grids, communities dissolved from them and streets dissolved from those, in ``crs``."""
    grids = gpd.GeoDataFrame({"grid_code": grid_codes, "community_code": grid_comm, "kind": "urban", "has_branch": True,
                              "name": [f"网格{c[-4:]}" for c in grid_codes]}, geometry=grid_polys, crs=crs)
    comms = (grids.dissolve("community_code", as_index=False)[["community_code", "geometry"]]
             .rename(columns={"community_code": "code"}))
    comms["street_code"] = comms["code"].str[:9]
    comms["name"] = [f"社区{c[-3:]}" for c in comms["code"]]
    streets = comms.dissolve("street_code", as_index=False)[["street_code", "geometry"]].rename(columns={"street_code": "code"})
    streets["name"] = [f"街道{c[-3:]}" for c in streets["code"]]
    return grids, comms, streets


def synth_city(n_households: int, seed: int = 0, households_per_grid: int = 400,  # noqa: PLR0913 - see below
               member_rate: float = 0.08, grid_side_m: float = 300.0, grids_per_community: tuple[int, int] = (3, 2),
               communities_per_street: tuple[int, int] = (3, 3), centres_per_grid: float = 1 / 6,
               spread: float = 0.45, origin: tuple[float, float] = (120.10, 30.20),
               with_people: bool = True) -> dict[str, gpd.GeoDataFrame]:
    """A synthetic city of about ``n_households`` households for benchmarks (WGS84 output).

    Grids are the cells of a jittered square lattice of side ``grid_side_m`` metres (so they tile
    exactly); ``grids_per_community`` blocks of grids form a community and blocks of communities a
    street. Each grid holds ``households_per_grid × U(1-spread, 1+spread)`` households (rescaled to
    the exact total) in buildings of 15–60 households (25 m × 30 m footprints on a 40 m sub-lattice).

    Codes follow the administrative pattern: street ``330103001``, community ``330103001001``,
    grid ``33010300100101`` (community code + two digits, CJ/T 349 style).

    Every argument is an independent knob of the synthetic city that tests and benchmarks set by
    keyword (hence more than ten of them).

    Returns
    -------
    dict of GeoDataFrames: ``streets``, ``communities``, ``grids``, ``buildings`` (``building_id``,
    ``households``, ``grid_code``, ``community_code``), ``households``, ``members``, ``service_centres``.
    """
    rng = np.random.default_rng(seed)
    n_grids = max(1, int(np.ceil(n_households / households_per_grid)))
    gx, gy = grids_per_community
    # Lattice size in grids, rounded up to whole communities.
    side = int(np.ceil(np.sqrt(n_grids)))
    nx = int(np.ceil(side / gx)) * gx
    ny = int(np.ceil(n_grids / nx / gy)) * gy
    lon0, lat0 = origin
    crs = f"EPSG:{32600 + int((lon0 + 180) // 6) + 1}"
    o = gpd.GeoSeries(gpd.points_from_xy([lon0], [lat0]), crs="EPSG:4326").to_crs(crs).iloc[0]
    grid_polys, ii, jj = _jittered_lattice(rng, (o.x, o.y), nx, ny, grid_side_m)
    grid_codes, grid_comm = _lattice_codes(ii, jj, nx, grids_per_community, communities_per_street)
    # households per grid
    w = rng.uniform(1 - spread, 1 + spread, len(grid_polys))
    counts = np.floor(w / w.sum() * n_households).astype(int)
    counts[rng.choice(len(counts), n_households - counts.sum(), replace=False)] += 1
    b_xy, b_grid, b_hh = _lattice_buildings(rng, grid_polys, counts)
    bld_m = shapely.box(b_xy[:, 0] - 12.5, b_xy[:, 1] - 15, b_xy[:, 0] + 12.5, b_xy[:, 1] + 15)
    grids, comms, streets = _admin_layers(grid_polys, grid_codes, grid_comm, crs)
    buildings = gpd.GeoDataFrame({"building_id": [f"B{i:07d}" for i in range(len(bld_m))], "households": b_hh,
                                  "grid_code": grid_codes[b_grid], "community_code": grid_comm[b_grid]},
                                 geometry=bld_m, crs=crs)
    out: dict[str, gpd.GeoDataFrame] = {"streets": streets, "communities": comms, "grids": grids, "buildings": buildings}
    if with_people:
        reps = np.repeat(np.arange(len(b_hh)), b_hh)
        hxy = b_xy[reps] + np.column_stack([rng.uniform(-11, 11, len(reps)), rng.uniform(-14, 14, len(reps))])
        households = _people(rng, hxy, crs, grid_codes[b_grid[reps]])
        members = _members_from(rng, households, member_rate)
        out["households"] = households
        out["members"] = members
    out["service_centres"] = _centres(rng, gpd.GeoSeries(grid_polys, crs=crs).to_crs("EPSG:4326").values,
                                      int(round(len(grid_polys) * centres_per_grid)))
    for k in ("streets", "communities", "grids", "buildings"):
        out[k] = out[k].to_crs("EPSG:4326")
    return out


# streamed generation: one street at a time --------------------------------------------------------

#: Grids of one synthetic street: 15 × 5 grids (5 communities of 3 × 5), ≈ 30k households at 400 a grid.
STREET_GRIDS = (15, 5)
STREET_COMMUNITY_GRIDS = (3, 5)


def street_layout(n_households: int, households_per_street: int = 30_000) -> dict:
    """How :func:`synth_street` splits ``n_households`` into streets: their count, households each and columns.

    Streets are blocks of ``15 × 5`` grids of 300 m (4.5 km × 1.5 km) in a near-square city; every
    street gets the same share (the first ``n % streets`` one more), so a street's households and
    their ids are known without generating the others.
    """
    streets = max(1, -(-n_households // households_per_street))
    base, extra = divmod(n_households, streets)
    return {"n_households": n_households, "streets": streets, "base": base, "extra": extra,
            "columns": max(1, int(np.ceil(np.sqrt(streets * STREET_GRIDS[1] / STREET_GRIDS[0]))))}


def street_code(index: int) -> str:
    """Code of the ``index``-th synthetic street (0-based): nine digits, ``330`` + six (``330000001``)."""
    return f"330{index + 1:06d}"


def _street_households(layout: dict, index: int) -> tuple[int, int]:
    """``(first household number, households)`` of street ``index`` in ``layout``."""
    base, extra = layout["base"], layout["extra"]
    return 1 + index * base + min(index, extra), base + (1 if index < extra else 0)


def _street_lattice(rng, layout: dict, index: int, crs: str, origin: tuple[float, float], grid_side_m: float):
    """Grid polygons (metric ``crs``), grid codes and community codes of street ``index``."""
    nx, ny = STREET_GRIDS
    gx, gy = STREET_COMMUNITY_GRIDS
    col, row = index % layout["columns"], index // layout["columns"]
    o = gpd.GeoSeries(gpd.points_from_xy([origin[0]], [origin[1]]), crs="EPSG:4326").to_crs(crs).iloc[0]
    corner = (o.x + col * nx * grid_side_m, o.y + row * ny * grid_side_m)
    polys, ii, jj = _jittered_lattice(rng, corner, nx, ny, grid_side_m)  # outer edges straight: streets tile
    street = street_code(index)
    comm = (ii // gx) + (jj // gy) * (nx // gx)
    comm_codes = np.array([f"{street}{c + 1:03d}" for c in comm], dtype=object)
    seq = np.zeros(len(polys), dtype=int)
    for c in np.unique(comm):
        at = np.flatnonzero(comm == c)
        seq[at] = np.arange(1, len(at) + 1)
    grid_codes = np.array([f"{c}{s:02d}" for c, s in zip(comm_codes, seq)], dtype=object)
    return polys, grid_codes, comm_codes


def synth_street(layout: dict, index: int, seed: int = 0, households_per_grid: int = 400,
                 member_rate: float = 0.08, grid_side_m: float = 300.0, centres_per_grid: float = 1 / 6,
                 spread: float = 0.45, origin: tuple[float, float] = (120.10, 30.20)) -> dict[str, gpd.GeoDataFrame]:
    """Street ``index`` of a synthetic city laid out by :func:`street_layout` (WGS84 output).

    The streamed counterpart of :func:`synth_city` for 10M+ households: each street is generated
    alone, from its own random stream (``seed``, ``index``), so streets can be made in any order or
    in parallel and memory is bounded by one street. The same building and people model as
    ``synth_city`` (grids of ``households_per_grid × U(1-spread, 1+spread)``, metres for sizes); ids
    carry the street (``M`` / ``C`` + street number) or a city-wide number (``H`` + nine digits).

    Returns
    -------
    dict of GeoDataFrames: ``streets`` (one row), ``communities``, ``grids``, ``households``,
    ``members``, ``service_centres``.
    """
    rng = np.random.default_rng([seed, index])
    crs = f"EPSG:{32600 + int((origin[0] + 180) // 6) + 1}"
    polys, grid_codes, comm_codes = _street_lattice(rng, layout, index, crs, origin, grid_side_m)
    first, n = _street_households(layout, index)
    w = rng.uniform(1 - spread, 1 + spread, len(polys)) * households_per_grid
    counts = np.floor(w / w.sum() * n).astype(int)
    counts[rng.choice(len(counts), n - counts.sum(), replace=False)] += 1
    b_xy, b_grid, b_hh = _lattice_buildings(rng, polys, counts)
    grids, comms, streets = _admin_layers(polys, grid_codes, comm_codes, crs)
    reps = np.repeat(np.arange(len(b_hh)), b_hh)
    hxy = b_xy[reps] + np.column_stack([rng.uniform(-11, 11, len(reps)), rng.uniform(-14, 14, len(reps))])
    households = _people(rng, hxy, crs, grid_codes[b_grid[reps]])
    households["household_id"] = [f"H{i:09d}" for i in range(first, first + n)]
    members = _members_from(rng, households, member_rate)
    members["member_id"] = [f"M{index + 1:06d}{i:04d}" for i in range(1, len(members) + 1)]
    centres = _centres(rng, gpd.GeoSeries(polys, crs=crs).to_crs("EPSG:4326").values,
                       int(round(len(polys) * centres_per_grid)))
    centres["centre_id"] = [f"C{index + 1:06d}{i:02d}" for i in range(1, len(centres) + 1)]
    out = {"streets": streets, "communities": comms, "grids": grids, "households": households, "members": members,
           "service_centres": centres}
    return {k: v.to_crs("EPSG:4326") for k, v in out.items()}
