"""Benchmark: 包片联户 linkage engine against a global min-cost-flow anchor and a greedy baseline.

Seeded synthetic cities (``geodata.synth.synth_city``: grids of ~400 households, members 8 %) at
50k and 500k households. In one run, on the same data:

* **engine** — ``gridmap.linkage.solve_arrays`` (exact, decomposed by grid; each dense block solved
  whole by compiled successive shortest paths and certified by Bellman–Ford potentials of its full
  residual network), in one process with its CPU time per stage (blocks, pairs = distance
  matrices, candidates = cost matrices, flow = the solves, certificate); the same engine with its
  previous block solver (OR-Tools on pruned arcs, certified, re-solved: ``DENSE_SOLVER =
  "pruned"``) beside it; again with the special-group
  priority (households tagged ``gridmap.contract.SPECIAL_TAGS`` linked first, ~10 % of them here);
  also with its blocks on 2 worker processes (CPU of both counted), and the whole
  ``link_households`` call (report and visiting order included);
* **(a) anchor** — one global OR-Tools ``SimpleMinCostFlow`` over the 30 nearest in-grid candidates
  of every household, with the same tiered objective (linked, minimum shortfall, distance);
* **(b) greedy** — nearest-with-capacity over the same candidates, shortest arcs first.

Each method runs in a forked child so its peak RSS (``getrusage``) is its own; the parent's RSS
before the fork (data already loaded) is printed so the difference is the method's memory. The
compiled solver (numba, cached on disk) is loaded in the parent first and that one-off time is
printed apart. ``uptime`` is printed beside the figures: the machine is shared.

Usage::

    .venv/bin/python bench/linkage.py                # 50k and 500k
    .venv/bin/python bench/linkage.py --sizes 50000  # one size
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ortools.graph.python import min_cost_flow  # noqa: E402

from geodata.synth import synth_city  # noqa: E402
from gridmap.contract import MAX_LINKS, MIN_LINKS  # noqa: E402
from gridmap.linkage import COST_SCALE, link_households, problem, solve_arrays  # noqa: E402
from gridmap.linkage.frame import special_households  # noqa: E402
from gridmap.metric import metric_crs, point_xy  # noqa: E402

K_ANCHOR = 30


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def nearest_in_grid(h_xy, m_xy, h_grid, m_grid, k=K_ANCHOR):
    """Arcs (h, m, metres) to the ``k`` nearest members of the household's own grid."""
    hs_order = np.argsort(h_grid, kind="stable")
    ms_order = np.argsort(m_grid, kind="stable")
    G = int(max(h_grid.max(), m_grid.max())) + 1
    hb = np.searchsorted(h_grid[hs_order], np.arange(G + 1))
    mb = np.searchsorted(m_grid[ms_order], np.arange(G + 1))
    out_h, out_m, out_d = [], [], []
    for g in range(G):
        hs = hs_order[hb[g]:hb[g + 1]]
        ms = ms_order[mb[g]:mb[g + 1]]
        if len(hs) == 0 or len(ms) == 0:
            continue
        d = np.sqrt(((h_xy[hs][:, None, :] - m_xy[ms][None, :, :]) ** 2).sum(axis=2))
        kk = min(k, len(ms))
        top = np.argpartition(d, kk - 1, axis=1)[:, :kk] if kk < len(ms) else np.broadcast_to(np.arange(len(ms)), d.shape)
        rows = np.repeat(np.arange(len(hs)), kk)
        out_h.append(hs[rows])
        out_m.append(ms[top.ravel()])
        out_d.append(d[rows, top.ravel()])
    return np.concatenate(out_h), np.concatenate(out_m), np.concatenate(out_d)


def anchor_global_flow(h_xy, m_xy, h_grid, m_grid, m_min, m_max):
    """(a) One global SimpleMinCostFlow on the 30 nearest in-grid candidates, tiered objective."""
    a_h, a_m, a_d = nearest_in_grid(h_xy, m_xy, h_grid, m_grid)
    n, m = len(h_xy), len(m_xy)
    cost = np.rint(a_d * COST_SCALE).astype(np.int64)
    W = n * int(cost.max()) + 1
    s, t = 0, n + m + 1
    mid = np.arange(m)
    tails = np.concatenate([np.zeros(n, np.int64), a_h + 1, mid + n + 1, mid + n + 1, [s]])
    heads = np.concatenate([np.arange(n) + 1, a_m + n + 1, np.full(m, t), np.full(m, t), [t]])
    caps = np.concatenate([np.ones(n, np.int64), np.ones(len(a_h), np.int64), m_min, m_max - m_min, [n]])
    costs = np.concatenate([np.zeros(n, np.int64), cost, np.full(m, -W, np.int64), np.zeros(m, np.int64), [W]])
    smcf = min_cost_flow.SimpleMinCostFlow()
    arcs = smcf.add_arcs_with_capacity_and_unit_cost(tails, heads, caps.astype(np.int64), costs)
    smcf.set_nodes_supplies(np.array([s, t]), np.array([n, -n]))
    status = smcf.solve()
    assert status == smcf.OPTIMAL, status
    flows = smcf.flows(arcs)[n:n + len(a_h)]
    member_of = np.full(n, -1, dtype=np.int64)
    member_of[a_h[flows > 0]] = a_m[flows > 0]
    return member_of


def greedy_nearest(h_xy, m_xy, h_grid, m_grid, m_min, m_max):
    """(b) Greedy: shortest candidate arcs first, while the member has capacity."""
    a_h, a_m, a_d = nearest_in_grid(h_xy, m_xy, h_grid, m_grid)
    order = np.argsort(a_d, kind="stable")
    member_of = [-1] * len(h_xy)
    room = m_max.tolist()
    left = len(h_xy)
    for h, j in zip(a_h[order].tolist(), a_m[order].tolist()):
        if member_of[h] < 0 and room[j] > 0:
            member_of[h] = j
            room[j] -= 1
            left -= 1
            if left == 0:
                break
    return np.asarray(member_of, dtype=np.int64)


def engine(h_xy, m_xy, h_grid, m_grid, m_min, m_max, special=None):
    """The engine in one process; also hands back its CPU seconds per stage."""
    sol = solve_arrays(h_xy, m_xy, h_grid, m_grid, m_min, m_max, special=special)
    return sol.member_of, sol.seconds


def engine_pruned(h_xy, m_xy, h_grid, m_grid, m_min, m_max):
    """The engine with its previous dense-block solver: OR-Tools on pruned arcs, certified, re-solved."""
    problem.DENSE_SOLVER = "pruned"  # in the forked child only
    sol = solve_arrays(h_xy, m_xy, h_grid, m_grid, m_min, m_max)
    return sol.member_of, sol.seconds


def load_compiled() -> float:
    """Load (or compile, the first time on a machine) the numba solver; CPU seconds."""
    from gridmap.linkage.transport import successive_shortest_paths

    c0 = time.process_time()
    successive_shortest_paths(np.zeros((3, 2), np.int64), np.zeros(2, np.int64), np.ones(2, np.int64), 10, False, 10,
                              np.arange(3))
    return time.process_time() - c0


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def engine_two_workers(h_xy, m_xy, h_grid, m_grid, m_min, m_max):
    """The engine with its blocks spread over 2 worker processes (CPU below counts both)."""
    return solve_arrays(h_xy, m_xy, h_grid, m_grid, m_min, m_max, n_jobs=2).member_of


def _cpu_with_children() -> float:
    """CPU seconds of this process plus its waited-for children (e.g. a worker pool)."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime


def _child(conn, fn, args):
    t0, c0 = time.perf_counter(), _cpu_with_children()
    out = fn(*args)
    secs, cpu = time.perf_counter() - t0, _cpu_with_children() - c0
    conn.send((out, (secs, cpu), _rss_mb()))
    conn.close()


def run_forked(fn, *args):
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(child, fn, args))
    p.start()
    out, secs, rss = parent.recv()
    p.join()
    return out, secs, rss


def evaluate(member_of, h_xy, m_xy, m_min, m_max):
    li = np.flatnonzero(member_of >= 0)
    mj = member_of[li]
    load = np.bincount(mj, minlength=len(m_xy))
    km = float(np.linalg.norm(h_xy[li] - m_xy[mj], axis=1).sum()) / 1000.0
    out_of_band = int(((load < m_min) | (load > m_max)).sum())
    return km, len(member_of) - len(li), out_of_band


def cm_objective(member_of, h_xy, m_xy):
    """(linked, total centimetres as the solvers price them): equal for two exact answers (ties may differ)."""
    li = np.flatnonzero(member_of >= 0)
    return len(li), int(np.rint(np.linalg.norm(h_xy[li] - m_xy[member_of[li]], axis=1) * COST_SCALE).sum())


def full_link(households, members):
    res = link_households(households, members)
    return res.summary


def bench(n: int, seed: int) -> None:
    t0 = time.perf_counter()
    city = synth_city(n, seed=seed, households_per_grid=400, member_rate=0.08, with_people=True)
    hh, mm = city["households"], city["members"]
    crs = metric_crs(hh)
    h_xy, m_xy = point_xy(hh, crs), point_xy(mm, crs)
    codes = {c: i for i, c in enumerate(sorted(set(hh["grid_code"]) | set(mm["grid_code"])))}
    h_grid = hh["grid_code"].map(codes).to_numpy(np.int64)
    m_grid = mm["grid_code"].map(codes).to_numpy(np.int64)
    m_min = np.full(len(mm), MIN_LINKS, np.int64)
    m_max = np.full(len(mm), MAX_LINKS, np.int64)
    print(f"\n== {len(hh):,} households, {len(mm):,} members, {len(codes):,} grids "
          f"(seed {seed}, synthesised in {time.perf_counter() - t0:.1f} s; parent RSS {_rss_mb():.0f} MB)")
    rows = {}
    stage_seconds: dict = {}
    special_linked: dict = {}
    rows_member_of: dict = {}
    special = special_households(hh)
    special_stages = {}
    pruned_stages: dict = {}
    print(f"compiled solver loaded in {load_compiled():.2f} CPU s (once per process, not in the figures below)")
    print("uptime before:", uptime())
    for name, fn, extra in (("engine", engine, ()), ("engine, OR-Tools pruned", engine_pruned, ()),
                            ("engine, special first", engine, (special,)),
                            ("engine, 2 workers", engine_two_workers, ()),
                            ("(a) global MCF k=30", anchor_global_flow, ()), ("(b) greedy", greedy_nearest, ())):
        member_of, (secs, cpu), rss = run_forked(fn, h_xy, m_xy, h_grid, m_grid, m_min, m_max, *extra)
        if isinstance(member_of, tuple):
            member_of, stages = member_of
            if extra:
                special_stages = stages
            elif fn is engine_pruned:
                pruned_stages = stages
            else:
                stage_seconds = stages
        if extra:
            special_linked[name] = int((special & (member_of >= 0)).sum())
        km, unlinked, oob = evaluate(member_of, h_xy, m_xy, m_min, m_max)
        rows[name] = (secs, cpu, km, unlinked, oob, rss)
        rows_member_of[name] = member_of
    # The whole public call on the same city (members all available here, like the arrays above).
    mm_all = mm.drop(columns=[c for c in ("available", "min_links", "max_links") if c in mm.columns])
    summary, (secs_full, cpu_full), rss_full = run_forked(full_link, hh, mm_all)
    print(f"{'method':<24}{'wall s':>8}{'CPU s':>8}{'total km':>12}{'unlinked':>10}{'out of band':>13}{'peak RSS MB':>13}")
    for name, (secs, cpu, km, unlinked, oob, rss) in rows.items():
        print(f"{name:<24}{secs:>8.2f}{cpu:>8.2f}{km:>12.3f}{unlinked:>10,}{oob:>13,}{rss:>13.0f}")
    print(f"{'engine, link_households':<24}{secs_full:>8.2f}{cpu_full:>8.2f}{summary['total_distance_m'] / 1000:>12.3f}"
          f"{summary['unlinked']:>10,}{summary['members'] - summary['members_in_band']:>13,}{rss_full:>13.0f}"
          "   (projection, report and visiting order included)")
    e, e2, a, g = rows["engine"], rows["engine, 2 workers"], rows["(a) global MCF k=30"], rows["(b) greedy"]
    print(f"ratios: distance engine/(a) = {e[2] / a[2]:.6f} (target <= 1.001)   "
          f"speed (a)/engine = {a[0] / e[0]:.1f}x wall, {a[1] / e[1]:.1f}x CPU (target >= 10x)   "
          f"distance (b)/engine = {g[2] / e[2]:.4f}   unlinked engine-(a) = {e[3] - a[3]}")
    print(f"single process: engine {e[0]:.2f} s wall beside the anchor's {a[0]:.2f} s = {a[0] / e[0]:.1f}x "
          f"(CPU {e[1]:.2f} s vs {a[1]:.2f} s = {a[1] / e[1]:.1f}x; target >= 10x)   "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print("engine stages (CPU s): " + "   ".join(f"{k} {v:.2f}" for k, v in stage_seconds.items())
          + f"   other {e[1] - sum(stage_seconds.values()):.2f}")
    p = rows["engine, OR-Tools pruned"]
    same = cm_objective(rows_member_of["engine, OR-Tools pruned"], h_xy, m_xy) == cm_objective(
        rows_member_of["engine"], h_xy, m_xy)
    print(f"previous block solver (OR-Tools, pruned): {p[1]:.2f} CPU s = (a)/it {a[1] / p[1]:.1f}x CPU, "
          f"{a[0] / p[0]:.1f}x wall; engine is {p[1] / e[1]:.1f}x faster in CPU; same objective (linked, integer cm): "
          f"{same}; stages (CPU s): "
          + "   ".join(f"{k} {v:.2f}" for k, v in pruned_stages.items()) + f"   other {p[1] - sum(pruned_stages.values()):.2f}")
    print("uptime after:", uptime())
    s = rows["engine, special first"]
    plain_special = int((special & (rows_member_of["engine"] >= 0)).sum())
    print(f"special first: {special_linked['engine, special first']:,} of {int(special.sum()):,} special-group "
          f"households linked (distance alone: {plain_special:,}), total {s[2] - e[2]:+.3f} km, "
          f"(a)/engine = {a[1] / s[1]:.1f}x CPU; stages (CPU s): "
          + "   ".join(f"{k} {v:.2f}" for k, v in special_stages.items()))
    print(f"        2 workers: (a)/engine = {a[0] / e2[0]:.1f}x wall, {a[1] / e2[1]:.1f}x CPU (both workers' CPU "
          f"counted); same answer as 1 process: {abs(e2[2] - e[2]) < 1e-6 and e2[3] == e[3]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[50_000, 500_000])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    for n in args.sizes:
        bench(n, args.seed)


if __name__ == "__main__":
    main()
