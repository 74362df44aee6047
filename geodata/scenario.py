"""A scenario: the layers of one place, from a folder of layer files or one GeoPackage.

A folder holds files named after the contract layers (``households.geojson``, ``members.csv``,
``grids.shp`` …); a GeoPackage holds layers with those names. Extra layers used by engines
(``roads``, ``buildings``, ``candidates``, ``barriers``, ``links``) are read as plain GeoDataFrames, and so
is every other layer of a GeoPackage (e.g. a plan's ``grid_status``), so a plan's output can be mapped.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio

from gridmap.contract import LAYERS
from geodata.errors import InputError
from geodata.io import read_layer

EXTRA_LAYERS = ("roads", "buildings", "candidates", "barriers", "links")
_EXTS = (".gpkg", ".geojson", ".json", ".shp", ".csv", ".xlsx")
#: The scenario folder's manifest: which coordinate system each layer file is in.
MANIFEST = "scenario.toml"


def read_manifest(folder: Path) -> dict[str, str]:
    """``{layer: coords}`` from the folder's ``scenario.toml`` (``[coords]`` table; ``default`` for the rest).

    Each system is checked (``wgs84``, ``gcj02``, ``bd09``, ``cgcs2000``) and each key must be a layer
    or ``default``: a typo is refused naming the file, never read silently as WGS84.
    """
    import tomllib

    from geodata.crs import check_coords

    path = Path(folder) / MANIFEST
    if not path.is_file():
        return {}
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("coords", {})
        unknown = sorted(set(table) - set(LAYERS) - {"default"})
        if unknown:
            raise ValueError(f"[coords] names {', '.join(unknown)}: not layers ({', '.join(LAYERS)}, or default)")
        return {layer: check_coords(str(value)) for layer, value in table.items()}
    except (tomllib.TOMLDecodeError, ValueError) as e:
        raise InputError(f"{MANIFEST}: {e}", source=str(path)) from None


def find_layer_files(folder: Path) -> dict[str, Path]:
    """Files in ``folder`` whose stem names a contract or extra layer.

    Raises
    ------
    InputError
        When one layer has two files (``households.xlsx`` and ``households.geojson``): which one
        is meant cannot be guessed, so both are named and the scenario is refused.
    """
    found: dict[str, Path] = {}
    problems = []
    for name in LAYERS + EXTRA_LAYERS:
        files = [folder / f"{name}{ext}" for ext in _EXTS if (folder / f"{name}{ext}").exists()]
        if len(files) > 1:
            problems.append(f"layer {name} has {len(files)} files: {', '.join(f.name for f in files)}; "
                            "keep one (move or rename the others)")
        elif files:
            found[name] = files[0]
    if problems:
        raise InputError(problems, source=str(folder))
    return found


def load_scenario(path, coords: str = "wgs84", fix: bool = True,
                  notes: list | None = None) -> dict[str, gpd.GeoDataFrame | pd.DataFrame]:
    """Read every layer of a scenario; contract layers are validated (``read_layer``), WGS84.

    ``fix`` repairs invalid polygons (noted in ``notes``) — the planning job should run on real,
    slightly broken municipal data and say what it repaired rather than stop.
    """
    path = Path(path)
    notes = notes if notes is not None else []
    layers: dict[str, gpd.GeoDataFrame] = {}
    if path.is_file() and path.suffix.lower() == ".gpkg":
        names = [n for n, _ in pyogrio.list_layers(path)]
        for name in names:
            if name in LAYERS:
                layers[name] = read_layer(path, name, layer=name, coords=coords, fix=fix, report=notes,
                                          make_ids=name == "incidents")
            else:  # extra inputs (roads …) and a plan's own result layers (grid_status, gap_cells …)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Several features with id")
                    layers[name] = pyogrio.read_dataframe(path, layer=name).to_crs("EPSG:4326")
    elif path.is_dir():
        manifest = read_manifest(path)
        for name, file in find_layer_files(path).items():
            if name in LAYERS:
                layers[name] = read_layer(file, name, coords=manifest.get(name, manifest.get("default", coords)), fix=fix,
                                          report=notes, make_ids=name == "incidents")
            else:
                if file.suffix.lower() in (".csv", ".xlsx"):
                    # a table without geometry (e.g. last year's links.csv): ids stay text
                    layers[name] = (pd.read_csv(file, dtype=str, encoding="utf-8-sig") if file.suffix.lower() == ".csv"
                                    else pd.read_excel(file, dtype=str))
                    continue
                with warnings.catch_warnings():
                    # OSM extracts repeat feature ids across tile cuts; GDAL renumbers them, which is fine here
                    warnings.filterwarnings("ignore", message="Several features with id")
                    gdf = pyogrio.read_dataframe(file)
                if not hasattr(gdf, "crs"):
                    layers[name] = gdf
                    continue
                layers[name] = gdf.to_crs("EPSG:4326") if gdf.crs is not None else gdf.set_crs("EPSG:4326")
    else:
        raise InputError(f"scenario {path} is neither a folder of layer files nor a GeoPackage")
    if "households" not in layers:
        raise InputError(f"scenario {path} has no households layer (households.geojson/.gpkg/.csv/.xlsx …)")
    return layers
