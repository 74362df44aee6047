// Leaders' page: mounts the live map (GridmapMap) and wires the layer switches and the grid colouring.
// Served locally; no inline script (the CSP forbids it).
(function () {
  "use strict";

  // Grid fill by the chosen measure; tile properties: status, link_coverage_pct (0-100), households.
  var GRID_FILL = {
    status: ['match', ['get', 'status'], 'blank', '#d7301f', 'over-size', '#fc8d59', 'under-size', '#fdd49e', '#a6d96a'],
    coverage: ['case', ['!', ['has', 'link_coverage_pct']], '#cccccc',
      ['interpolate', ['linear'], ['get', 'link_coverage_pct'], 0, '#d7301f', 80, '#fdae61', 95, '#a6d96a', 100, '#1a9641']],
    size: ['interpolate', ['linear'], ['get', 'households'], 0, '#f7fbff', 300, '#9ecae1', 500, '#3182bd', 800, '#08306b']
  };
  var STYLE_LAYERS = {grids: ['grids-0', 'grids-1'], gaps: ['gaps-0'], centres: ['centres-0'], incidents: ['incidents-0']};

  // Community names at their label points (server-computed, WGS84), drawn at every zoom.
  function labelCommunities(map, el) {
    var points = [];
    try { points = JSON.parse(el.dataset.labels || "[]"); } catch (e) { points = []; }
    points.forEach(function (p) {
      var label = document.createElement("div");
      label.className = "community-label";
      label.textContent = p.name;
      var at = el.dataset.basemap === "amap" ? window.GridmapMap.wgs84ToGcj02(p.lon, p.lat) : [p.lon, p.lat];
      new window.maplibregl.Marker({element: label}).setLngLat(at).addTo(map);
    });
  }

  function mountLeaderMap() {
    var el = document.getElementById("leader-map");
    if (!el || !window.GridmapMap || typeof window.GridmapMap.mount !== "function") return;
    var bounds = (el.dataset.bounds || "").split(",").filter(Boolean).map(Number);
    var handle = window.GridmapMap.mount(el, {
      layers: (el.dataset.layers || "").split(",").filter(Boolean),
      basemap: el.dataset.basemap || "none",
      tiandituKey: el.dataset.tiandituKey || "",
      bounds: bounds.length === 4 ? bounds : undefined,
      deferLayers: true  // grids first; the other layers once the grids are drawn
    });
    el.classList.add("mounted");
    wireSwitches(handle.map);
    labelCommunities(handle.map, el);
  }

  function wireSwitches(map) {
    var form = document.getElementById("map-layers");
    if (!form) return;
    form.addEventListener("submit", function (e) { e.preventDefault(); });
    form.querySelectorAll("input[type=checkbox]").forEach(function (box) {
      box.addEventListener("change", function () {
        (STYLE_LAYERS[box.value] || []).forEach(function (id) {
          if (map.getLayer(id)) map.setLayoutProperty(id, "visibility", box.checked ? "visible" : "none");
        });
      });
    });
    var colour = document.getElementById("grid-colour");
    if (colour) {
      colour.addEventListener("change", function () {
        if (map.getLayer("grids-0")) map.setPaintProperty("grids-0", "fill-color", GRID_FILL[colour.value]);
      });
    }
  }

  document.addEventListener("DOMContentLoaded", mountLeaderMap);
})();
