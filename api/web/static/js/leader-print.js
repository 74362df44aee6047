// Leaders' printout: mounts the map for print (scale bar, grid names as labels at any zoom) and marks
// <body data-map-ready> once the map is drawn, so the PDF is printed only after it.
(function () {
  "use strict";

  // Grid names as printed: the part after the community's name ("…社区第四网格" → "第四网格"), and only
  // where the grid is wide enough on paper to hold it — full names at street scale overprint each other.
  function shortName(name) {
    var cut = name.lastIndexOf("社区");
    var rest = cut >= 0 ? name.slice(cut + 2) : name;
    return rest.length ? rest : name;
  }

  function labelAll(map, markers) {
    markers.splice(0).forEach(function (m) { m.remove(); });
    var seen = {};
    map.querySourceFeatures("grids", {sourceLayer: "grids"}).forEach(function (f) {
      var code = f.properties.code;
      if (seen[code] || !f.properties.name) return;
      var ring = f.geometry.type === "Polygon" ? f.geometry.coordinates[0] : f.geometry.coordinates[0][0];
      var sx = 0, sy = 0, minX = Infinity, maxX = -Infinity;
      ring.forEach(function (p) {
        sx += p[0]; sy += p[1];
        var px = map.project(p).x;
        minX = Math.min(minX, px); maxX = Math.max(maxX, px);
      });
      seen[code] = true;
      var text = shortName(f.properties.name);
      if (maxX - minX < text.length * 10) return;  // ~10 px per character at the print label size
      var label = document.createElement("div");
      label.className = "print-label";
      label.textContent = text;
      markers.push(new window.maplibregl.Marker({element: label}).setLngLat([sx / ring.length, sy / ring.length]).addTo(map));
    });
  }

  function snapshot(canvas) {
    var img = document.createElement("img");
    img.className = "map-snapshot";
    img.alt = "地图";
    img.src = canvas.toDataURL("image/png");
    img.style.cssText = "position:absolute;left:0;top:0;width:" + canvas.style.width + ";height:" + canvas.style.height;
    canvas.insertAdjacentElement("afterend", img);
    canvas.style.visibility = "hidden";
  }

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

  function mountPrintMap() {
    var el = document.getElementById("print-map");
    if (!el || !window.GridmapMap) { document.body.dataset.mapReady = "none"; return; }
    var bounds = (el.dataset.bounds || "").split(",").filter(Boolean).map(Number);
    var handle = window.GridmapMap.mount(el, {
      layers: (el.dataset.layers || "").split(",").filter(Boolean), basemap: "none",
      bounds: bounds.length === 4 ? bounds : undefined
    });
    var map = handle.map;
    map.addControl(new window.maplibregl.ScaleControl({unit: "metric", maxWidth: 160}), "bottom-right");
    var markers = [];
    labelCommunities(handle.map, el);
    map.once("idle", function () {
      labelAll(map, markers);
      // A WebGL canvas keeps no picture for printing: copy it to an <img> while a frame is still drawn.
      map.once("render", function () { snapshot(map.getCanvas()); document.body.dataset.mapReady = "1"; });
      map.triggerRepaint();
    });
  }

  document.addEventListener("DOMContentLoaded", mountPrintMap);
})();
