"""Benchmark: grid redraw (``gridmap.districting.redraw``) against spopt's ``MaxPHeuristic``.

Seeded synthetic cities (``geodata.synth.synth_city``) of 100k and 1M households; atoms are the
buildings (territories grown from the footprints, ``gridmap.atoms.footprint_atoms``, clipped to each
community), weighted by their household counts. Both methods run on the same atoms, weights and
contiguity.

* **gridmap**: the whole city (every community), timed end to end from GeoDataFrames to grid
  polygons; and the same on the comparison subset.
* **spopt MaxPHeuristic** (floor = band minimum, 300; attributes = atom x/y in metres so that the
  heuristic's within-region dissimilarity favours compact regions; ``top_n=2``, default iteration
  counts): too slow for a whole city (seconds per community), so it runs on a seeded random subset
  of communities (``--subset``, default 3) and its whole-city time is extrapolated as the mean per
  community × number of communities. Figures are compared on that subset; speed also city-wide.

Reported per size: grids, % in band ([300, 500]), mean Polsby-Popper (4πA/P² in UTM metres),
seconds (wall, and CPU for gridmap), and the ratios gridmap / spopt (speed: spopt seconds / gridmap seconds). MaxP has no
upper bound, so its regions may exceed 500 households.

Run: ``.venv/bin/python bench/redraw.py [--sizes 100000 1000000] [--subset 6]``. The machine load
average is printed: timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import geopandas as gpd
import numpy as np
import shapely

from geodata.synth import synth_city
from gridmap.atoms import PRECISION_M, footprint_atoms
from gridmap.compactness import polsby_popper
from gridmap.contract import grid_band
from gridmap.districting import redraw
from gridmap.metric import metric_crs

LO, HI = grid_band("urban")


def run_maxp(region, footprints, weights, seed: int):
    """spopt MaxPHeuristic on the footprint atoms of one community; returns (households, pp) per region and seconds."""
    from libpysal.weights import W
    from spopt.region import MaxPHeuristic

    atoms, _ = footprint_atoms(shapely.set_precision(region, PRECISION_M), footprints, HI, building_weight=weights)
    neighbours = {i: [] for i in range(len(atoms))}
    for a, b in atoms.contig:
        neighbours[int(a)].append(int(b))
        neighbours[int(b)].append(int(a))
    gdf = gpd.GeoDataFrame({"households": atoms.weight, "x": atoms.xy[:, 0], "y": atoms.xy[:, 1]}, geometry=atoms.geoms)
    np.random.seed(seed)  # MaxPHeuristic draws from NumPy's global generator
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MaxPHeuristic(gdf, W(neighbours, silence_warnings=True), ["x", "y"], "households", LO, top_n=2)
        model.solve()
    seconds = time.perf_counter() - t
    labels = np.asarray(model.labels_)
    hh, pp = [], []
    for lab in np.unique(labels):
        sel = labels == lab
        hh.append(int(atoms.weight[sel].sum()))
        pp.append(float(polsby_popper([shapely.coverage_union_all(atoms.geoms[sel])])[0]))
    return np.array(hh), np.array(pp), seconds


def figures(households, pp, seconds) -> dict:
    households = np.asarray(households)
    return {
        "grids": len(households),
        "in_band_pct": float(100.0 * np.mean((households >= LO) & (households <= HI))) if len(households) else 0.0,
        "mean_pp": float(np.mean(pp)) if len(pp) else 0.0,
        "seconds": float(seconds),
    }


def bench_size(n: int, subset: int, seed: int) -> None:
    city = synth_city(n, seed=seed, with_people=False)
    comms, bld = city["communities"], city["buildings"]
    print(f"\n== {n:,} households: {len(comms)} communities, {len(bld):,} buildings (atoms) ==")
    t, c = time.perf_counter(), time.process_time()
    res = redraw(comms, buildings=bld, seed=seed)
    full = figures(res.grids["households"], res.grids["polsby_popper"], time.perf_counter() - t)
    cpu = time.process_time() - c
    print(f"gridmap, whole city: {full['grids']} grids, {full['in_band_pct']:.1f}% in band, "
          f"mean Polsby-Popper {full['mean_pp']:.3f}, {full['seconds']:.2f} s wall ({cpu:.2f} s CPU)")

    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(comms), size=min(subset, len(comms)), replace=False))
    sub = comms.iloc[pick]
    crs = metric_crs(comms)
    sub_m = sub.to_crs(crs)
    bm = bld.to_crs(crs)
    feet = bm.geometry.to_numpy()
    in_sub = bld["community_code"].isin(sub["code"]).to_numpy()
    t = time.perf_counter()
    ours = redraw(sub, buildings=bld[in_sub], seed=seed)
    ours_fig = figures(ours.grids["households"], ours.grids["polsby_popper"], time.perf_counter() - t)
    hh_all, pp_all, sec, cpu_sp = [], [], 0.0, time.process_time()
    for code, region in zip(sub_m["code"], sub_m.geometry):
        inside = (bld["community_code"] == code).to_numpy()
        hh, pp, s = run_maxp(region, feet[inside], bld["households"].to_numpy()[inside], seed)
        hh_all.append(hh)
        pp_all.append(pp)
        sec += s
    sp = figures(np.concatenate(hh_all), np.concatenate(pp_all), sec)
    cpu_sp = time.process_time() - cpu_sp
    per_comm = sec / len(sub)
    sp_city = per_comm * len(comms)
    print(f"subset of {len(sub)} communities (seeded), same atoms:")
    print(f"  {'':10s} {'grids':>6s} {'% in band':>10s} {'mean PP':>8s} {'seconds':>9s}")
    for name, f in (("gridmap", ours_fig), ("spopt", sp)):
        print(f"  {name:10s} {f['grids']:6d} {f['in_band_pct']:10.1f} {f['mean_pp']:8.3f} {f['seconds']:9.2f}")
    over = int(np.sum(np.concatenate(hh_all) > HI))
    print(f"  spopt regions above {HI}: {over}; below {LO}: {int(np.sum(np.concatenate(hh_all) < LO))}")
    ratio_band = ours_fig["in_band_pct"] / sp["in_band_pct"] if sp["in_band_pct"] else float("inf")
    ratio_pp = ours_fig["mean_pp"] / sp["mean_pp"] if sp["mean_pp"] else float("inf")
    print(f"ratios gridmap/spopt on the subset: in band ×{ratio_band:.3f}, Polsby-Popper ×{ratio_pp:.3f}, "
          f"speed ×{sp['seconds'] / ours_fig['seconds']:.0f} (spopt s / gridmap s)")
    print(f"  CPU seconds: spopt {cpu_sp:.1f} (incl. atoms) on {len(sub)} communities; gridmap whole city {cpu:.2f}")
    print(f"whole city: spopt extrapolated {sp_city:.0f} s ({per_comm:.2f} s/community × {len(comms)}) vs gridmap "
          f"{full['seconds']:.2f} s → ×{sp_city / full['seconds']:.0f} faster")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--subset", type=int, default=3, help="communities solved by spopt per size")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for n in args.sizes:
        bench_size(n, args.subset, args.seed)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
