"""Benchmark: maps of a 1M-household city — HTML size, build time, Chromium time until drawn.

Target (issue 7): ≤ 5 MB per page and ≤ 2 s until drawn in headless Chromium. Anchor: folium's own
``folium.GeoJson`` of the same grid-status layer with a ``GeoJsonPopup`` (what a plain folium map
would do; CDN assets, full-precision coordinates, every attribute in the data) — size and build
time ratios are printed against it.

Engine work (grid status, service coverage, siting) is timed apart from the map build, which is
what this benchmark is about. The redraw map uses today's grids as the "proposal" with 5 % of
households marked as moved (districting a 1M city is the districting benchmark's job).

Run: ``.venv/bin/python bench/maps.py [n_households]`` (default 1,000,000; generation takes minutes).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_MB = 5.0
TARGET_DRAW_S = 2.0


def _t(fn, *a, **kw):
    t = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t


def main(n: int = 1_000_000) -> None:
    import folium
    import geopandas as gpd

    from geodata.synth import synth_city
    from gridmap import coverage
    from gridmap.siting import choose_sites
    from maps.base import save_html
    from maps.coverage import coverage_map
    from maps.incidents import incident_map
    from maps.links import links_map
    from maps.redraw import redraw_map
    from maps.render import open_page
    from maps.service import service_map

    print(f"synthesising a city of {n:,} households …", flush=True)
    city, t_synth = _t(synth_city, n, seed=0)
    hh, mm, grids = city["households"], city["members"], city["grids"]
    print(f"  {len(hh):,} households, {len(mm):,} members, {len(grids):,} grids, "
          f"{len(city['communities']):,} communities, {len(city['streets']):,} streets, "
          f"{len(city['service_centres']):,} centres ({t_synth:.0f} s)")
    rng = np.random.default_rng(1)
    # grids without branch / members so the coverage map has every class
    grids = grids.copy()
    grids["has_branch"] = rng.random(len(grids)) > 0.05
    st, t_status = _t(coverage.grid_status, grids, hh, mm)
    straight, t_cov = _t(coverage.straight_line_coverage, hh, city["service_centres"])
    covered = straight["covered"].to_numpy()
    gaps, t_gaps = _t(coverage.gap_cells, hh, ~covered)
    cands = gpd.GeoDataFrame({"site_id": grids["grid_code"].to_numpy()},
                             geometry=grids.geometry.representative_point().values, crs=4326)
    (sites, _), t_sites = _t(choose_sites, cands, hh, 10, covered=covered)
    k = 50_000
    pick = rng.choice(len(hh), k, replace=False)
    incidents = gpd.GeoDataFrame({
        "incident_id": [f"E{i:06d}" for i in range(k)], "category": rng.choice(["市容环境", "矛盾纠纷", "民政"], k),
        "reported_at": pd.Timestamp("2024-05-01") + pd.to_timedelta(rng.integers(0, 86400 * 30, k), unit="s"),
        "light": rng.choice(["red", "yellow", "green"], k, p=[0.05, 0.15, 0.8]),
        "grid_code": hh["grid_code"].to_numpy()[pick]}, geometry=hh.geometry.values[pick], crs=4326)
    moved = hh.iloc[rng.choice(len(hh), len(hh) // 20, replace=False)]
    proposed = st[["grid_code", "community_code", "households", "band_min", "band_max", "geometry"]].copy()
    proposed["status"] = rng.choice(["kept", "redrawn", "new"], len(proposed), p=[0.7, 0.25, 0.05])
    print(f"engines: grid status {t_status:.1f} s, straight coverage {t_cov:.1f} s ({covered.mean():.1%} covered), "
          f"gap cells {t_gaps:.1f} s ({len(gaps):,} cells), siting k=10 {t_sites:.1f} s", flush=True)
    from gridmap.linkage import link_households

    g0 = st["grid_code"].iloc[len(st) // 2]
    hh0, mm0 = hh[hh["grid_code"] == g0], mm[mm["grid_code"] == g0]
    links0 = link_households(hh0, mm0).links

    builds = {
        "coverage": lambda: coverage_map(st, communities=city["communities"], streets=city["streets"], tiles="none"),
        "service": lambda: service_map(city["service_centres"], gap_cells=gaps, sites=sites, grids=grids,
                                       communities=city["communities"], coverage_pct=100 * covered.mean(),
                                       tiles="none"),
        "incidents": lambda: incident_map(incidents, communities=city["communities"], tiles="none"),
        "links (one grid)": lambda: links_map(links0, hh0, mm0, grid_code=g0, grids=grids, tiles="none"),
        "redraw": lambda: redraw_map(st, proposed, moved=moved, communities=city["communities"], tiles="none"),
    }
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name, build in builds.items():
            path = Path(d) / f"{name.split()[0]}.html"
            t0 = time.perf_counter()
            m = build()
            save_html(m, path)
            t_build = time.perf_counter() - t0
            size = path.stat().st_size / 1e6
            rep = open_page(path, screenshot=False, timeout_s=300)
            rows.append((name, size, t_build, rep.drawn_ms / 1000, rep.wall_s, len(rep.errors)))
            print(f"  {name:<17} {size:6.2f} MB  build {t_build:6.2f} s  drawn {rep.drawn_ms / 1000:5.2f} s "
                  f"(wall {rep.wall_s:.2f} s)  JS errors {len(rep.errors)}", flush=True)
        # anchor: plain folium.GeoJson of the same grid-status layer
        t0 = time.perf_counter()
        b = grids.total_bounds
        fm = folium.Map(location=[(b[1] + b[3]) / 2, (b[0] + b[2]) / 2], zoom_start=12,
                        tiles=None, prefer_canvas=True)
        cols = ["grid_code", "name", "households", "members", "status", "link_coverage_pct"]
        folium.GeoJson(st[cols + ["geometry"]].to_json(), popup=folium.GeoJsonPopup(cols)).add_to(fm)
        apath = Path(d) / "anchor.html"
        fm.save(str(apath))
        t_anchor = time.perf_counter() - t0
        a_size = apath.stat().st_size / 1e6
    cov = rows[0]
    print()
    print(f"{'map':<17} {'MB':>6} {'build s':>8} {'drawn s':>8} {'MB/5':>6} {'drawn/2s':>9}")
    for name, size, tb, td, _, _ in rows:
        print(f"{name:<17} {size:6.2f} {tb:8.2f} {td:8.2f} {size / TARGET_MB:6.2f} {td / TARGET_DRAW_S:9.2f}")
    print(f"anchor folium.GeoJson(grid status): {a_size:.2f} MB, build {t_anchor:.2f} s (CDN assets, not drawable "
          f"offline) → coverage map size ratio {cov[1] / a_size:.2f}, build ratio {cov[2] / t_anchor:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
