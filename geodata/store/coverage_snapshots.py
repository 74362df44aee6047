"""Coverage snapshots: a region's coverage layers kept in PostGIS, never older than the last committed write.

Computing a street's coverage (:func:`gridmap.coverage.coverage_gaps` over its households, members, links
and service centres) takes a second or more; it changes only when someone writes those tables.
Statement-level triggers on ``grids``, ``communities``, ``households``, ``members``, ``links``, ``link_runs``
and ``service_centres`` mark the cache :data:`geodata.store.epochs.COVERAGE` (a row in ``coverage_dirty``)
inside the writer's own transaction (migrations 0015, 0019); an update of members that changes only
``available`` (在岗/离岗) marks nothing.

Freshness rests on an *epoch* that only readers advance (:func:`geodata.store.epochs.current_epoch`):

1. :func:`current_epoch` looks for marks. A mark is visible only once its write has committed; the
   reader then deletes the marks, advances the epoch and drops the snapshots of earlier epochs, all in one
   transaction under an advisory lock.
2. A snapshot is served only while its epoch is the current one.
3. A snapshot is computed after the epoch was read, so its statements see every write whose mark advanced
   the epoch to that value. A write that commits while it is being computed leaves a mark; the next reader
   advances the epoch past it, so the snapshot is never served. A snapshot is stored only while its epoch
   is still current.

So a figure read from a snapshot is never older than the last committed write, all workers share the
snapshots, and they survive a restart. Invalidation is global (any watched write drops every region's
snapshot): those tables are written by imports, link runs and grid edits, not on every page view.

Layers are stored as GeoParquet (WGS84) — exact floats and geometries, no pickles; the summary as JSONB.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import geopandas as gpd
import orjson
import pandas as pd
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from geodata.store import epochs

#: The layers a snapshot holds (the keys of :func:`gridmap.coverage.coverage_gaps`' first result).
LAYERS = ("grid_status", "unlinked_households", "service_areas", "gap_cells")


@dataclass(frozen=True)
class SnapshotKey:
    """What a snapshot is of: a street/community/grid ``region``, the straight-line service radius in
    metres (``radius_m``) and the H3 resolution of the gap cells (``gap_res``)."""

    region: str
    radius_m: float
    gap_res: int

    def params(self) -> dict:
        return {"region": self.region, "radius_m": float(self.radius_m), "gap_res": int(self.gap_res)}


def current_epoch(engine: Engine) -> int:
    """The epoch snapshots are valid in, after consuming the marks of every committed write (see above)."""
    return epochs.current_epoch(engine, epochs.COVERAGE, _drop_older).n


def _drop_older(conn: Connection, epoch: int) -> None:
    conn.execute(text("DELETE FROM coverage_snapshots WHERE epoch <> :e"), {"e": epoch})


@dataclass
class Snapshot:
    """A region's coverage: ``layers`` (only those asked for; WGS84 GeoDataFrames), ``summary`` and
    ``derived`` (what :func:`cached`'s ``derive`` made of them, plain JSON values)."""

    layers: dict[str, gpd.GeoDataFrame]
    summary: dict
    derived: dict


def read(conn: Connection, key: SnapshotKey, epoch: int, layers: Iterable[str] = LAYERS) -> Snapshot | None:
    """The snapshot of ``key`` in ``epoch`` with only the named ``layers``; None when there is none."""
    names = [name for name in layers if name in LAYERS]
    cols = "".join(f", {name}" for name in names)
    row = conn.execute(text(f"SELECT summary, derived{cols} FROM coverage_snapshots WHERE region = :region "
                            "AND radius_m = :radius_m AND gap_res = :gap_res AND epoch = :epoch"),
                       {**key.params(), "epoch": epoch}).first()
    if row is None:
        return None
    return Snapshot({name: _from_parquet(row[i + 2]) for i, name in enumerate(names)}, dict(row[0]),
                    orjson.loads(row[1]) if row[1] is not None else {})


def write(conn: Connection, key: SnapshotKey, epoch: int, snap: Snapshot, build_ms: int) -> bool:
    """Store ``snap`` (every layer) as the snapshot of ``key`` in ``epoch`` unless the epoch has moved on
    (a write committed while it was computed); returns whether it was stored."""
    from geodata.jsonenc import dumps, dumps_bytes

    blobs = {name: _to_parquet(snap.layers[name]) for name in LAYERS}
    stored = conn.execute(text(f"""
        INSERT INTO coverage_snapshots (region, radius_m, gap_res, epoch, summary, derived, build_ms, {", ".join(LAYERS)})
        SELECT :region, :radius_m, :gap_res, :epoch, CAST(:summary AS jsonb), :derived, :build_ms,
               {", ".join(f":{n}" for n in LAYERS)}
        WHERE {epochs.epoch_sql(epochs.COVERAGE)} = :epoch
        ON CONFLICT (region, radius_m, gap_res) DO UPDATE SET epoch = EXCLUDED.epoch, summary = EXCLUDED.summary,
            derived = EXCLUDED.derived, build_ms = EXCLUDED.build_ms, built_at = now(),
            {", ".join(f"{n} = EXCLUDED.{n}" for n in LAYERS)}
        RETURNING 1"""), {**key.params(), "epoch": epoch, "summary": dumps(snap.summary),
                           "derived": dumps_bytes(snap.derived), "build_ms": build_ms, **blobs})
    return stored.first() is not None


def cached(engine: Engine, key: SnapshotKey, compute: Callable[[], tuple[dict, dict]],
           layers: Iterable[str] = LAYERS, derive: Callable[[dict, dict], dict] | None = None) -> Snapshot:
    """The coverage of ``key``: from its snapshot when current, else ``compute()``d (``(layers, summary)``)
    and stored with ``derive(layers, summary)`` (plain JSON values the pages read instead of the layers).
    Two requests missing the same key at once compute it once: the second waits on the first's advisory
    lock and then reads its snapshot. Only the named ``layers`` are read back."""
    layers = tuple(layers)
    epoch = current_epoch(engine)
    with engine.connect() as conn:
        hit = read(conn, key, epoch, layers)
    if hit is not None:
        return hit
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                     {"k": f"coverage:{key.region}:{key.radius_m!r}:{key.gap_res}"})
        hit = read(conn, key, epoch, layers)
        if hit is not None:
            return hit
        t0 = time.perf_counter()
        out, summary = compute()
        # what is served is what a later read gives back: the summary and derived values through JSON
        snap = Snapshot(out, orjson.loads(_dumps(summary)), orjson.loads(_dumps(derive(out, summary) if derive else {})))
        write(conn, key, epoch, snap, int((time.perf_counter() - t0) * 1000))
    return Snapshot({name: out[name] for name in layers if name in out}, snap.summary, snap.derived)


def _dumps(value) -> bytes:
    from geodata.jsonenc import dumps_bytes

    return dumps_bytes(value)


def _to_parquet(frame: pd.DataFrame) -> bytes:
    """GeoParquet (or Parquet) bytes of ``frame``, after a JSON header naming its ``object`` columns: Parquet
    reads text back as pandas' ``str`` dtype, and the snapshot must give back what the computation gave."""
    buf = io.BytesIO()
    if isinstance(frame, gpd.GeoDataFrame):
        frame.to_parquet(buf, index=False)
    else:
        pd.DataFrame(frame).to_parquet(buf, index=False)
    geometry = frame.geometry.name if isinstance(frame, gpd.GeoDataFrame) else None
    header = json.dumps([c for c in frame.columns if frame[c].dtype == object and c != geometry]).encode()
    return len(header).to_bytes(4, "big") + header + buf.getvalue()


def _from_parquet(blob: bytes) -> pd.DataFrame:
    data = bytes(blob)
    size = int.from_bytes(data[:4], "big")
    objects = json.loads(data[4:4 + size])
    buf = io.BytesIO(data[4 + size:])
    try:
        frame = gpd.read_parquet(buf)
    except ValueError:  # a plain table (no geometry column)
        buf.seek(0)
        frame = pd.read_parquet(buf)
    for c in objects:
        values = frame[c].astype(object)
        frame[c] = values.where(values.notna(), None)
    return frame
