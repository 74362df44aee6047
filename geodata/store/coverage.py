"""Read one region's inputs for the coverage figures (``GET /coverage``, ``GET /gaps``) from PostGIS.

A region is a street (街道), community (社区) or grid (网格) code, expanded down the hierarchy by
:func:`geodata.store.maps.load_region`. Residents' personal data is never read here: households
come back as id, grid, size and point only.
"""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
from sqlalchemy.engine import Engine

from geodata.store.maps import CENTRE_MARGIN_M, load_region

_INPUTS = ("grids", "communities", "households", "members", "service_centres", "links")


def load_coverage_inputs(engine: Engine, region: str, *, centre_margin_m: float = CENTRE_MARGIN_M
                         ) -> dict[str, gpd.GeoDataFrame | pd.DataFrame]:
    """Grids (with ``street_code`` from their community), households, members, nearby service
    centres and the current links of ``region`` (WGS84; ``links`` a plain DataFrame).

    ``grids`` is empty when the region is unknown. Centres up to ``centre_margin_m`` metres outside
    the region's grids are included because they serve households inside.
    """
    layers = load_region(engine, region, _INPUTS, with_names=False, centre_margin_m=centre_margin_m)
    grids = layers["grids"]
    comms = layers.get("communities")
    if comms is not None and len(comms):
        street = comms.set_index("code")["street_code"]
        grids["street_code"] = grids["community_code"].map(street)
    else:
        grids["street_code"] = None
    layers["grids"] = grids
    return layers
