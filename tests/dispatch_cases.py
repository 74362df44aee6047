"""Built dispatch cases shared by the domain, store and API tiers: random responders around Hangzhou
(WGS84 degrees, spreads in metres), query cases, and a street → community → grid layout of squares
in PostGIS.
"""

from __future__ import annotations

from datetime import datetime

import geopandas as gpd
import numpy as np
from shapely.geometry import MultiPolygon, box

from gridmap.dispatch import LOCAL_TZ


CST = LOCAL_TZ
LON0, LAT0 = 120.17, 30.28  # Hangzhou
M_PER_DEG_LAT = 111_195.08
M_PER_DEG_LON = M_PER_DEG_LAT * np.cos(np.radians(LAT0))

#: China's 2018 National Day holiday: 1–7 October off, Saturday 29 and Sunday 30 September worked.
NATIONAL_DAY_2018 = """# date,kind,name
2018-09-29,workday,国庆调休
2018-09-30,workday,国庆调休
2018-10-01,holiday,国庆节
2018-10-02,holiday
2018-10-03,holiday
2018-10-04,休
2018-10-05,holiday
"""


def cst(*a):
    return datetime(*a, tzinfo=CST)


# -- nearest: KD-tree on the sphere vs brute force ---------------------------------------------------

SKILLS = ("法律", "医疗", "心理", "维修", "消防")


def random_members(n, seed, spread_m=5000.0, dup_share=0.05):
    rng = np.random.default_rng(seed)
    lon = LON0 + rng.uniform(-spread_m, spread_m, n) / M_PER_DEG_LON
    lat = LAT0 + rng.uniform(-spread_m, spread_m, n) / M_PER_DEG_LAT
    dup = rng.random(n) < dup_share  # some members at the very same spot: ties broken by id
    src = rng.integers(0, n, n)
    lon[dup], lat[dup] = lon[src[dup]], lat[src[dup]]
    skills = [list(rng.choice(SKILLS, rng.integers(0, 3), replace=False)) for _ in range(n)]
    avail = rng.random(n) < 0.8
    ids = [f"M{i:05d}" for i in rng.permutation(n)]
    return ids, lon, lat, skills, avail


def query_cases(seed, n_queries=40):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_queries):
        lon = LON0 + rng.uniform(-6000, 6000) / M_PER_DEG_LON
        lat = LAT0 + rng.uniform(-6000, 6000) / M_PER_DEG_LAT
        k = int(rng.choice([1, 3, 5, 10, 50]))
        skill = [None, "法律", "心理"][i % 3]
        radius = [None, 300.0, 1000.0, 4000.0][i % 4]
        out.append((lon, lat, k, skill, radius))
    return out


# -- PostGIS ---------------------------------------------------------------------------------------

def insert_members(engine, ids, lon, lat, skills, avail, grid_codes=None, kind="member"):
    import sqlalchemy as sa  # here, not at the top: the domain tier imports this module without a database

    grid_codes = grid_codes if grid_codes is not None else [None] * len(ids)
    rows = [{"id": i, "g": g, "s": list(s), "a": bool(a), "lon": float(x), "lat": float(y), "k": kind}
            for i, g, s, a, x, y in zip(ids, grid_codes, skills, avail, lon, lat)]
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO members (member_id, grid_code, kind, skills, available, h3, geom) "
                          "VALUES (:id, :g, :k, :s, :a, 0, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))"), rows)


def _square(x0_m, y0_m, size_m):
    """A square of ``size_m`` metres whose south-west corner is ``(x0_m, y0_m)`` metres from (LON0, LAT0)."""
    return MultiPolygon([box(LON0 + x0_m / M_PER_DEG_LON, LAT0 + y0_m / M_PER_DEG_LAT,
                             LON0 + (x0_m + size_m) / M_PER_DEG_LON, LAT0 + (y0_m + size_m) / M_PER_DEG_LAT)])


def _pt(x_m, y_m):
    return LON0 + x_m / M_PER_DEG_LON, LAT0 + y_m / M_PER_DEG_LAT


def load_areas(engine):
    """Street S1 = communities C1 (grids G1, G2) and C2 (grid G3); street S2 = C3 (grid G4), 2 km east.

    Grids are 400 m squares: G1 [0,400], G2 [400,800] (shares G1's east edge), G3 [800,1200],
    G4 [2000,2400]. G3 and G4 carry no community_code: their community is found by location.
    """
    from geodata.store.importer import import_layer

    streets = gpd.GeoDataFrame({"code": ["S1", "S2"], "name": ["一街", "二街"]},
                               geometry=[_square(-10, -10, 1220), _square(1990, -10, 420)], crs="EPSG:4326")
    comms = gpd.GeoDataFrame({"code": ["C1", "C2", "C3"], "street_code": ["S1", "S1", None]},
                             geometry=[_square(0, 0, 800), _square(800, 0, 400), _square(2000, 0, 400)],
                             crs="EPSG:4326")
    grids = gpd.GeoDataFrame({"grid_code": ["G1", "G2", "G3", "G4"], "community_code": ["C1", "C1", None, None]},
                             geometry=[_square(0, 0, 400), _square(400, 0, 400), _square(800, 0, 400),
                                       _square(2000, 0, 400)], crs="EPSG:4326")
    import_layer(engine, "streets", streets)
    import_layer(engine, "communities", comms)
    import_layer(engine, "grids", grids)
