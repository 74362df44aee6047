"""The canvas every map draws on: base tiles, the coordinate shift they need, offline assets, legend.

Base tiles (底图):

* ``osm`` — OpenStreetMap (WGS84 web-mercator tiles; data drawn as stored).
* ``amap`` — 高德 Amap road tiles. Amap tiles are drawn in GCJ-02, so *everything* placed on them
  (polygons, lines, markers, heat points, the initial view) is shifted from WGS84 to GCJ-02 with
  :func:`geodata.crs.geodataframe_from_wgs84`; without the shift data sits 300–500 m off in Chinese
  cities.
* ``tianditu`` — 天地图 vector tiles plus labels; needs a browser key, passed in as ``tianditu_key``
  (the faces take it from the ``tianditu_key`` setting, ``GRIDMAP_TIANDITU_KEY``). Tianditu is
  CGCS2000, which is WGS84 to a few centimetres at city scale: no shift.
* ``none`` — no tiles, a plain background; the page then needs no network at all.

Leaflet (BSD-2, ``maps/vendor/``) and Leaflet.heat are inlined into every page instead of loaded
from a CDN, so the ``none`` maps work offline (printed reports, air-gapped offices) and no map
depends on a third-party CDN being reachable from inside China.

Every data text shown in a tooltip or popup goes through :func:`esc` (HTML escaping) before it is
placed in the page; the JavaScript only ever inserts strings built here.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from branca.element import Element, Figure

from folium.template import Template
from geodata.crs import geodataframe_from_wgs84, wgs84_to_gcj02
from gridmap.contract import WGS84
from gridmap.metric import to_metric

TILES = ("osm", "amap", "tianditu", "none")

_VENDOR = Path(__file__).resolve().parent / "vendor"

#: Background of a tile-less map: a light paper colour so thin outlines stay readable in print.
NONE_BACKGROUND = "#f3f1ea"

#: Decimal places kept for drawn coordinates: 6 → 0.11 m, 5 → 1.1 m (degrees of latitude).
COORD_DECIMALS = 6

_OSM_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
_AMAP_URL = "https://webrd0{s}.is.autonavi.com/appmaptile?lang=zh_cn&size=1&scale=1&style=8&x={x}&y={y}&z={z}"
_TDT_URL = ("https://t{{s}}.tianditu.gov.cn/{layer}_w/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER={layer}"
            "&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles&TILEMATRIX={{z}}&TILEROW={{y}}&TILECOL={{x}}&tk={key}")


class MapError(ValueError):
    """A map cannot be built as asked (unknown tiles, missing Tianditu key, nothing to draw)."""


def check_tiles(tiles: str | None) -> str:
    """Normalise a tile-set name (``osm|amap|tianditu|none``); raise :class:`MapError` otherwise."""
    t = (tiles or "osm").strip().lower()
    aliases = {"openstreetmap": "osm", "gaode": "amap", "高德": "amap", "tdt": "tianditu", "天地图": "tianditu",
               "offline": "none", "blank": "none"}
    t = aliases.get(t, t)
    if t not in TILES:
        raise MapError(f"unknown tiles {tiles!r}: use one of {', '.join(TILES)}")
    return t


def display_coords(tiles: str) -> str:
    """Coordinate system the tiles are drawn in: ``gcj02`` for Amap, ``wgs84`` otherwise."""
    return "gcj02" if check_tiles(tiles) == "amap" else "wgs84"


def esc(value) -> str:
    """HTML-escaped text of a data value for a tooltip or popup; missing values become ``—``."""
    if value is None:
        return "—"
    if isinstance(value, float) and math.isnan(value):
        return "—"
    if value is pd.NA or value is pd.NaT:
        return "—"
    if isinstance(value, (list, tuple, np.ndarray)):
        value = "、".join(str(v) for v in value)
    return html.escape(str(value), quote=True)


def table_html(title: str | None, rows) -> str:
    """A small popup table: ``title`` and ``(label, value)`` rows; labels are ours, values are escaped here.

    ``title`` is escaped too (it usually carries a data value such as a grid name).
    """
    head = f"<b>{esc(title)}</b>" if title is not None else ""
    body = "".join(f"<tr><th>{html.escape(label)}</th><td>{esc(v)}</td></tr>" for label, v in rows)
    return f'<div class="gm-pop">{head}<table>{body}</table></div>'


def fmt_int(v) -> str | None:
    """Integer with thousands separators, or None for a missing value."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return f"{int(v):,}"


def fmt_pct(v, digits: int = 1) -> str | None:
    """A percentage (0–100) as text, or None when missing."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return f"{float(v):.{digits}f}%"


def simplify_m(gdf: gpd.GeoDataFrame, tolerance_m: float) -> gpd.GeoDataFrame:
    """Copy of a WGS84 layer with geometries simplified to ``tolerance_m`` metres (in its UTM zone).

    Topology of each shape is preserved; shared edges between neighbours may drift by up to the
    tolerance, which is invisible at the zoom levels a city map opens at.
    """
    if len(gdf) == 0 or tolerance_m <= 0:
        return gdf
    projected, _ = to_metric(gdf)
    simple = shapely.simplify(projected.geometry.values, tolerance_m, preserve_topology=True)
    out = gdf.copy()
    out.geometry.values[:] = gpd.GeoSeries(simple, crs=projected.crs).to_crs(WGS84).values
    return out


def _json(obj) -> str:
    """JSON for inlining inside ``<script>``: ``</`` and ``<!--`` cannot end or confuse the script block."""
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return s.replace("</", "<\\/").replace("<!--", "<\\!--").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _round_geoms(geoms, decimals: int):
    return shapely.transform(geoms, lambda xy: np.round(xy, decimals))


def _object_column(values, n: int) -> pd.Series:
    """One property per feature as an object column (Python ints stay ints; None = no such key)."""
    return pd.Series(list(values) if values is not None else [None] * n, dtype=object)


def _feature_properties(n: int, style_keys, tooltips, popups, popup_labels, radii_m, numbers) -> pd.DataFrame:
    """The short property keys of :class:`DataLayer` features, one row per feature (see its docstring)."""
    props = pd.DataFrame({"s": [str(k) for k in style_keys]})
    props["t"] = _object_column(tooltips, n).map(lambda tip: tip or None)
    pops = _object_column(popups, n).map(lambda pop: pop or None)
    if popup_labels:
        props["pt"] = pops.map(lambda pop: None if pop is None else esc(pop[0]))
        props["v"] = pops.map(lambda pop: None if pop is None else [None if v is None else esc(v) for v in pop[1]])
    else:
        props["p"] = pops
    if radii_m is not None:
        props["r"] = _object_column(radii_m, n).map(
            lambda r: round(float(r), 1) if r is not None and np.isfinite(r) else None)
    if numbers is not None:
        props["n"] = _object_column(numbers, n).map(lambda num: None if num is None else int(num))
    return props


@dataclass
class Style:
    """Leaflet path options of one legend class (colours are CSS colours, weights pixels)."""

    color: str = "#333333"
    fill_color: str | None = None
    weight: float = 1.0
    opacity: float = 1.0
    fill_opacity: float = 0.5
    fill: bool = True
    dash: str | None = None
    radius: float = 5.0

    def options(self) -> dict:
        o = {"color": self.color, "weight": self.weight, "opacity": self.opacity, "fill": self.fill,
             "fillColor": self.fill_color or self.color, "fillOpacity": self.fill_opacity, "radius": self.radius}
        if self.dash:
            o["dashArray"] = self.dash
        return o


class DataLayer(folium.map.Layer):
    """One GeoJSON layer drawn by Leaflet with a style table, escaped tooltips and popups.

    Features carry only ``s`` (style key), ``t`` (tooltip HTML), ``p`` (popup HTML) or ``pt``/``v``
    (a popup table: escaped title and escaped values, one per label of the layer's shared
    ``labels`` — far smaller than a table per feature), ``r`` (circle radius in metres, for points
    drawn as true-size circles) and ``n`` (a number label): all strings were built and escaped in
    Python, so the page never interprets raw data.
    """

    _template = Template("""
        {% macro script(this, kwargs) %}
        {%- if this.pane %}
        if (!{{ this._parent.get_name() }}.getPane({{ this.pane|tojson }})) {
            {{ this._parent.get_name() }}.createPane({{ this.pane|tojson }}).style.zIndex = {{ this.pane_z }};
        }
        {%- endif %}
        var {{ this.get_name() }} = L.geoJSON({{ this.data_js }}, {
            style: function (f) { return {{ this.styles_js }}[f.properties.s]; },
            pointToLayer: function (f, ll) {
                var st = {{ this.styles_js }}[f.properties.s];
                if (f.properties.n !== undefined) {
                    return L.marker(ll, {icon: L.divIcon({className: "gm-num", iconSize: [18, 18],
                        html: "<span style=\\"background:" + st.fillColor + "\\">" + f.properties.n + "</span>"})});
                }
                if (f.properties.r !== undefined) { return L.circle(ll, Object.assign({}, st, {radius: f.properties.r})); }
                return L.circleMarker(ll, st);
            }
        });
        {%- if this.has_tooltips %}
        // one tooltip and one popup for the whole layer, filled from the feature under the pointer:
        // thousands of features then cost no Tooltip/Popup objects until one is shown
        {{ this.get_name() }}.bindTooltip(function (l) { return l.feature.properties.t || ""; }, {sticky: true});
        {%- endif %}
        {%- if this.has_popups %}
        {{ this.get_name() }}.bindPopup(function (l) {
            var p = l.feature.properties;
            if (p.p) { return p.p; }
            {%- if this.labels_js != "null" %}
            // rows of one shared label list; title and values were escaped in Python
            var labels = {{ this.labels_js }}, h = '<div class="gm-pop"><b>' + (p.pt || '') + '</b><table>';
            for (var i = 0; i < (p.v || []).length; i++) {
                if (p.v[i] !== null) { h += '<tr><th>' + labels[i] + '</th><td>' + p.v[i] + '</td></tr>'; }
            }
            return h + '</table></div>';
            {%- else %}
            return "";
            {%- endif %}
        }, {maxWidth: 360});
        {%- endif %}
        {% endmacro %}
    """)

    def __init__(self, data: dict, styles: dict, name: str, show: bool = True, control: bool = True,
                 pane: str | None = None, pane_z: int = 450, labels: list[str] | None = None):
        super().__init__(name=name, overlay=True, control=control, show=show)
        self._name = "DataLayer"
        self.labels_js = _json([html.escape(x) for x in labels]) if labels else "null"
        feats = data.get("features", [])
        self.has_tooltips = any("t" in f["properties"] for f in feats)
        self.has_popups = any("p" in f["properties"] or "v" in f["properties"] for f in feats)
        self.pane = pane
        self.pane_z = int(pane_z)
        if pane:
            styles = {k: {**v, "pane": pane} for k, v in styles.items()}
        self.data_js = _json(data)
        self.styles_js = _json(styles)


class HeatLayer(folium.map.Layer):
    """Leaflet.heat layer from ``[lat, lon, weight]`` triples (display coordinates)."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = L.heatLayer({{ this.data_js }}, {{ this.options_js }});
        {% endmacro %}
    """)

    def __init__(self, points: list, name: str, radius: int = 18, blur: int = 15, max_value: float = 1.0,
                 show: bool = True):
        super().__init__(name=name, overlay=True, control=True, show=show)
        self._name = "HeatLayer"
        self.data_js = _json(points)
        self.options_js = _json({"radius": radius, "blur": blur, "max": max_value, "minOpacity": 0.3})


class _FitBounds(folium.MacroElement):
    """Open the map on the data's bounds at once (no zoom animation: the first paint is the final one)."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        {{ this._parent.get_name() }}.fitBounds({{ this.bounds_js }}, {padding: [12, 12], animate: false});
        {% endmacro %}
    """)

    def __init__(self, bounds):
        super().__init__()
        self._name = "FitBounds"
        self.bounds_js = _json(bounds)


_ASSETS_CACHE: dict[str, str] = {}


def _assets() -> str:
    """Inline ``<style>``/``<script>`` of Leaflet, Leaflet.heat and our own CSS (read once)."""
    if "html" in _ASSETS_CACHE:
        return _ASSETS_CACHE["html"]
    css = (_VENDOR / "leaflet.css").read_text(encoding="utf-8")
    for img in ("layers-2x.png", "layers.png"):
        data = base64.b64encode((_VENDOR / img).read_bytes()).decode("ascii")
        css = css.replace(f"url(images/{img})", f"url(data:image/png;base64,{data})")
    js = (_VENDOR / "leaflet.js").read_text(encoding="utf-8")
    heat = (Path(folium.__file__).resolve().parent / "templates" / "leaflet_heat.min.js").read_text(encoding="utf-8")
    own_css = """
        .leaflet-container { font-family: "Noto Sans CJK SC", "Noto Sans SC", "Microsoft YaHei", "PingFang SC", sans-serif; }
        .gm-pop table { border-collapse: collapse; margin-top: 4px; }
        .gm-pop th { text-align: left; font-weight: normal; color: #555; padding: 1px 8px 1px 0; white-space: nowrap; }
        .gm-pop td { padding: 1px 0; }
        .gm-legend { position: absolute; z-index: 1000; bottom: 24px; right: 10px; background: rgba(255,255,255,.93);
            padding: 8px 10px; border-radius: 4px; box-shadow: 0 1px 4px rgba(0,0,0,.35); font-size: 13px; line-height: 1.45;
            max-width: 280px; }
        .gm-legend .gm-sw { display: inline-block; width: 14px; height: 12px; margin-right: 6px; vertical-align: -1px;
            border: 1px solid rgba(0,0,0,.35); }
        .gm-legend .gm-note { color: #555; font-size: 12px; margin-top: 4px; }
        .gm-title { position: absolute; z-index: 1000; top: 10px; left: 54px; background: rgba(255,255,255,.93);
            padding: 6px 12px; border-radius: 4px; box-shadow: 0 1px 4px rgba(0,0,0,.35); font-size: 16px; font-weight: bold; }
        .gm-num span { display: block; width: 18px; height: 18px; border-radius: 9px; color: #fff; font-size: 11px;
            line-height: 18px; text-align: center; border: 1px solid #fff; box-shadow: 0 0 2px #000; }
    """
    # A JS error anywhere on the page is written into the DOM too, so a screenshot check can see it.
    guard = ("window.addEventListener('error', function (e) { document.documentElement.setAttribute("
             "'data-gridmap-error', String(e.message || e.type)); }, true);")
    out = (f"<style>{css}</style>\n<style>{own_css}</style>\n<script>{guard}</script>\n"
           f"<script>{js}</script>\n<script>{heat}</script>")
    _ASSETS_CACHE["html"] = out
    return out


#: Marks the page as drawn two animation frames after the DOM is ready (the map scripts have run by
#: then; Leaflet's canvas renderer paints on an animation frame): ``data-gridmap-drawn`` holds
#: milliseconds since navigation start. Not ``load``: that also waits for every base-map tile.
_DRAWN_SCRIPT = """<script>
document.addEventListener('DOMContentLoaded', function () {
  requestAnimationFrame(function () { requestAnimationFrame(function () {
    document.documentElement.setAttribute('data-gridmap-drawn', String(Math.round(performance.now())));
  }); });
});
</script>"""


def _install_assets(figure: Figure) -> None:
    if "gridmap_assets" not in figure.header._children:
        figure.header.add_child(Element(_assets()), name="gridmap_assets")
        figure.html.add_child(Element(_DRAWN_SCRIPT), name="gridmap_drawn")


@dataclass
class MapCanvas:
    """A folium map with tiles, the display shift (GCJ-02 on Amap) and helpers to draw layers.

    Attributes
    ----------
    map : folium.Map (``prefer_canvas``; Leaflet inlined).
    tiles : ``osm|amap|tianditu|none``.
    coords : display coordinate system (``gcj02`` for Amap, else ``wgs84``).
    """

    map: folium.Map
    tiles: str
    coords: str
    legend_items: list = field(default_factory=list)

    # --- coordinates ---------------------------------------------------------------------------
    def to_display(self, gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        """A WGS84 layer in the tiles' coordinate system (GCJ-02 on Amap; unchanged otherwise)."""
        if self.coords == "wgs84" or len(gdf) == 0:
            return gdf
        return geodataframe_from_wgs84(gdf, self.coords)

    def lonlat_to_display(self, lon, lat):
        """Arrays of WGS84 lon/lat (degrees) → display lon/lat."""
        lon = np.asarray(lon, dtype=float)
        lat = np.asarray(lat, dtype=float)
        if self.coords == "gcj02":
            return wgs84_to_gcj02(lon, lat)
        return lon, lat

    # --- drawing -------------------------------------------------------------------------------
    # More than ten arguments on purpose: one folium layer's drawing options, by keyword.
    def add_features(self, gdf: gpd.GeoDataFrame, *, name: str, style_keys, styles: dict[str, Style],  # noqa: PLR0913
                     tooltips=None, popups=None, radii_m=None, numbers=None, show: bool = True,
                     decimals: int = COORD_DECIMALS, control: bool = True, pane: str | None = None,
                     pane_z: int = 450, popup_labels: list[str] | None = None) -> DataLayer | None:
        """Draw a WGS84 layer (shifted for the tiles) with one legend class per feature.

        Parameters
        ----------
        gdf : WGS84 GeoDataFrame (polygons, lines or points).
        name : layer name shown in the layer switcher.
        style_keys : one key of ``styles`` per row.
        styles : key → :class:`Style`.
        tooltips, popups : one HTML string (already escaped, see :func:`table_html`) or None per row.
            With ``popup_labels`` (our own row labels), each popup is instead ``(title, values)``:
            raw data values, one per label (None = row left out), escaped here.
        radii_m : for points, a circle radius in metres per row (true-size circles) instead of a dot.
        numbers : for points, an integer label per row (e.g. visiting order) drawn in a badge.
        decimals : coordinate decimals kept (6 ≈ 0.1 m).
        pane : a Leaflet pane of its own (z-index ``pane_z``), to stay above heat or other canvases.
        """
        if gdf is None or len(gdf) == 0:
            return None
        shown = self.to_display(gdf)
        geoms = _round_geoms(shown.geometry.values, decimals)
        props = _feature_properties(len(gdf), style_keys, tooltips, popups, popup_labels, radii_m, numbers)
        drawn = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
        features = gpd.GeoDataFrame(props[drawn], geometry=geoms[drawn], crs=WGS84)
        # na="drop": a feature carries only the keys it has (no null tooltips or radii in the page)
        data = features.to_geo_dict(na="drop", drop_id=True)
        layer = DataLayer(data,
                          {k: s.options() for k, s in styles.items()}, name=name, show=show, control=control,
                          pane=pane, pane_z=pane_z, labels=popup_labels)
        layer.add_to(self.map)
        return layer

    def add_heat(self, lon, lat, weight=None, *, name: str, radius: int = 18, blur: int = 15,
                 show: bool = True) -> HeatLayer | None:
        """Heat layer from WGS84 points (degrees) and optional weights (shifted for the tiles)."""
        lon = np.asarray(lon, dtype=float)
        lat = np.asarray(lat, dtype=float)
        if lon.size == 0:
            return None
        w = np.ones(lon.size) if weight is None else np.asarray(weight, dtype=float)
        dx, dy = self.lonlat_to_display(lon, lat)
        pts = np.column_stack([np.round(dy, 5), np.round(dx, 5), np.round(w / w.max(), 3)]).tolist()
        layer = HeatLayer(pts, name=name, radius=radius, blur=blur, max_value=1.0, show=show)
        layer.add_to(self.map)
        return layer

    def add_legend(self, title: str, items, note: str | None = None, css: str = "") -> None:
        """A legend box (bottom right): ``items`` are ``(css colour, label)``; labels are escaped.

        ``css`` adds our own placement rules (e.g. for the left map of a side-by-side page).
        """
        rows = "".join(f'<div><span class="gm-sw" style="background:{html.escape(c)}"></span>{esc(label)}</div>'
                       for c, label in items)
        extra = f'<div class="gm-note">{esc(note)}</div>' if note else ""
        box = f'<div class="gm-legend" style="{html.escape(css)}"><b>{esc(title)}</b>{rows}{extra}</div>'
        self.map.get_root().html.add_child(Element(box))

    def add_title(self, text: str, css: str = "") -> None:
        """A title box at the top left of the map (escaped); ``css`` adds placement rules."""
        self.map.get_root().html.add_child(Element(f'<div class="gm-title" style="{html.escape(css)}">{esc(text)}</div>'))

    def finish(self, layer_control: bool = True) -> folium.Map:
        """Add the layer switcher (collapsed) and return the folium map."""
        if layer_control:
            folium.LayerControl(collapsed=True).add_to(self.map)
        return self.map


def _tile_layers(tiles: str, tianditu_key: str = "") -> list[folium.TileLayer]:
    if tiles == "osm":
        return [folium.TileLayer(_OSM_URL, attr="© OpenStreetMap contributors", name="OpenStreetMap", max_zoom=19,
                                 control=False)]
    if tiles == "amap":
        return [folium.TileLayer(_AMAP_URL, attr="© 高德地图 AutoNavi (GCJ-02)", name="高德地图", subdomains="1234",
                                 max_zoom=18, control=False)]
    if tiles == "tianditu":
        key = (tianditu_key or "").strip()
        if not key:
            raise MapError("Tianditu tiles need a key: set GRIDMAP_TIANDITU_KEY (free browser key from "
                           "https://console.tianditu.gov.cn)")
        return [folium.TileLayer(_TDT_URL.format(layer=layer, key=quote(key, safe="")), attr="© 天地图 Tianditu", name=label,
                                 subdomains="01234567", max_zoom=18, control=False, overlay=layer == "cva")
                for layer, label in (("vec", "天地图"), ("cva", "天地图注记"))]
    return []


def bounds_of(*layers) -> tuple[float, float, float, float]:
    """Total WGS84 bounds ``(minx, miny, maxx, maxy)`` of the non-empty layers."""
    boxes = [np.asarray(g.total_bounds) for g in layers if g is not None and len(g)]
    boxes = [b for b in boxes if np.all(np.isfinite(b))]
    if not boxes:
        raise MapError("nothing to draw: every layer is empty")
    arr = np.vstack(boxes)
    return float(arr[:, 0].min()), float(arr[:, 1].min()), float(arr[:, 2].max()), float(arr[:, 3].max())


def new_canvas(bounds: tuple[float, float, float, float], tiles: str = "osm", *, tianditu_key: str = "",
               figure: Figure | None = None, width: str = "100%", left: str = "0%") -> MapCanvas:
    """A map fitted to WGS84 ``bounds`` on ``tiles`` (``osm|amap|tianditu|none``), canvas-rendered.

    ``tianditu_key`` is the Tianditu browser key (only ``tianditu`` tiles need one).

    ``figure``/``width``/``left`` place several maps side by side on one page (see the redraw map).
    """
    tiles = check_tiles(tiles)
    coords = display_coords(tiles)
    minx, miny, maxx, maxy = bounds
    if coords == "gcj02":
        (x0, x1), (y0, y1) = wgs84_to_gcj02(np.array([minx, maxx]), np.array([miny, maxy]))
    else:
        x0, x1, y0, y1 = minx, maxx, miny, maxy
    m = folium.Map(location=[(y0 + y1) / 2, (x0 + x1) / 2], tiles=None, prefer_canvas=True, control_scale=True, zoom_snap=0.25,
                   zoom_start=13, width=width, height="100%", left=left, top="0%",
                   position="absolute" if figure is not None else "relative")
    # Leaflet comes inlined (see _assets): no CDN links, no jQuery/Bootstrap the maps do not use.
    m.default_js = []
    m.default_css = []
    if figure is not None:
        figure.add_child(m)
    _install_assets(m.get_root())
    for layer in _tile_layers(tiles, tianditu_key):
        layer.add_to(m)
    if tiles == "none":
        m.get_root().header.add_child(Element(f"<style>#{m.get_name()} {{ background: {NONE_BACKGROUND}; }}</style>"))
    m.add_child(_FitBounds([[float(y0), float(x0)], [float(y1), float(x1)]]))
    return MapCanvas(map=m, tiles=tiles, coords=coords)


def save_html(m: folium.Map | Figure, path) -> Path:
    """Write the page (UTF-8) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = m.get_root() if hasattr(m, "get_root") else m
    path.write_text(root.render(), encoding="utf-8")
    return path


def page_html(m: folium.Map | Figure) -> str:
    """The whole HTML page of a map (or a figure of maps)."""
    root = m.get_root() if hasattr(m, "get_root") else m
    return root.render()


def _names(gdf: gpd.GeoDataFrame, id_col: str):
    names = gdf["name"] if "name" in gdf.columns else gdf[id_col]
    return [n if isinstance(n, str) and n.strip() else c for n, c in zip(names, gdf[id_col])]


def add_outlines(canvas: MapCanvas, communities: gpd.GeoDataFrame | None = None,
                 streets: gpd.GeoDataFrame | None = None, tolerance_m: float = 3.0) -> None:
    """Community (社区) and street (街道) boundaries as unfilled outlines with their names as tooltips."""
    for gdf, label, style in ((communities, "社区边界", Style(color="#404040", weight=1.6, fill=False, fill_opacity=0)),
                              (streets, "街道边界", Style(color="#111111", weight=3.2, fill=False, fill_opacity=0,
                                                         dash="8 4"))):
        if gdf is None or len(gdf) == 0:
            continue
        g = simplify_m(gdf, tolerance_m)
        id_col = "code" if "code" in g.columns else g.columns[0]
        tips = [f"{label[:2]}：{esc(n)}" for n in _names(g, id_col)]
        canvas.add_features(g, name=label, style_keys=["o"] * len(g), styles={"o": style}, tooltips=tips)


def records(gdf) -> list[dict]:
    """Rows of a (Geo)DataFrame as plain dicts without the geometry (far faster than ``iterrows``)."""
    df = pd.DataFrame(gdf)
    geom = gdf.geometry.name if isinstance(gdf, gpd.GeoDataFrame) else None
    if geom is not None:
        df = df.drop(columns=[geom])
    return df.to_dict("records")


def count_cells(points: gpd.GeoDataFrame, res: int = 10, max_cells: int = 2_000) -> gpd.GeoDataFrame:
    """Points counted per H3 cell: WGS84 cell-centre points with ``count`` and ``res``.

    Starts at resolution ``res`` (10: edge ~66 m) and coarsens one level at a time while more than
    ``max_cells`` cells hold points — how a city's worth of points stays light on a map.
    """
    import h3

    from gridmap.cells import points_to_cells

    cells = points_to_cells(points.geometry.x.to_numpy(), points.geometry.y.to_numpy(), res)
    uniq, cnt = np.unique(cells, return_counts=True)
    while len(uniq) > max_cells and res > 0:
        res -= 1
        parents = np.array([h3.str_to_int(h3.cell_to_parent(h3.int_to_str(int(c)), res)) for c in uniq],
                           dtype=np.uint64)
        uniq, inv = np.unique(parents, return_inverse=True)
        cnt = np.bincount(inv, weights=cnt).astype(int)
    pts = np.array([h3.cell_to_latlng(h3.int_to_str(int(c))) for c in uniq], dtype=float).reshape(-1, 2)
    return gpd.GeoDataFrame({"count": cnt.astype(int), "res": res}, geometry=gpd.points_from_xy(pts[:, 1], pts[:, 0]),
                            crs=WGS84)


#: Mean H3 edge length in metres by resolution (for sizing count circles).
H3_EDGE_M = {7: 1406.0, 8: 531.0, 9: 201.0, 10: 76.0, 11: 29.0}
