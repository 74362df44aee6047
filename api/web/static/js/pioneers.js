/*
 * 先锋地图 (/pioneers): service posts as red dots and the grids they serve, from /pioneers/map.geojson.
 * Drawn with the shared map client (GridmapMap, no tile layers); on an Amap base map every coordinate is
 * shifted to GCJ-02. Text from the service is inserted with textContent, never as HTML.
 */
(function () {
  "use strict";

  function shiftCoords(coords, shift) {
    if (typeof coords[0] === "number") { return shift(coords[0], coords[1]); }
    return coords.map(function (c) { return shiftCoords(c, shift); });
  }

  function shifted(data, basemap) {
    if (basemap !== "amap") { return data; }
    var shift = function (lon, lat) { return window.GridmapMap.wgs84ToGcj02(lon, lat); };
    data.features.forEach(function (f) { f.geometry.coordinates = shiftCoords(f.geometry.coordinates, shift); });
    return data;
  }

  function popupBody(p) {
    var box = document.createElement("div");
    box.className = "pioneers-popup";
    var title = document.createElement("strong");
    title.textContent = p.title;
    box.appendChild(title);
    var lines = [p.kind, p.name ? "党员 " + p.name : "", p.skills ? "技能：" + JSON.parse(p.skills).join("、") : "",
                 p.grid_name ? "服务网格：" + p.grid_name : ""];
    lines.filter(Boolean).forEach(function (t) {
      var line = document.createElement("div");
      line.textContent = t;
      box.appendChild(line);
    });
    return box;
  }

  function highlight(postId) {
    document.querySelectorAll(".post.active").forEach(function (el) { el.classList.remove("active"); });
    var card = document.getElementById("post-" + postId);
    if (card) { card.classList.add("active"); }
  }

  function addLayers(map, data) {
    map.addSource("pioneers", {type: "geojson", data: data});
    map.addLayer({id: "served-grids", type: "fill", source: "pioneers", filter: ["==", ["get", "layer"], "grid"],
                  paint: {"fill-color": "#c8102e", "fill-opacity": 0.08}});
    map.addLayer({id: "served-grid-lines", type: "line", source: "pioneers", filter: ["==", ["get", "layer"], "grid"],
                  paint: {"line-color": "#c8102e", "line-width": 1.5}});
    map.addLayer({id: "posts", type: "circle", source: "pioneers", filter: ["==", ["get", "layer"], "post"],
                  paint: {"circle-radius": 8, "circle-color": "#c8102e", "circle-stroke-color": "#fff",
                          "circle-stroke-width": 2}});
    map.on("click", "posts", function (e) {
      var f = e.features && e.features[0];
      if (!f) { return; }
      new window.maplibregl.Popup({closeButton: true}).setLngLat(e.lngLat).setDOMContent(popupBody(f.properties))
        .addTo(map);
      highlight(f.properties.post_id);
    });
    map.on("mouseenter", "posts", function () { map.getCanvas().style.cursor = "pointer"; });
    map.on("mouseleave", "posts", function () { map.getCanvas().style.cursor = ""; });
  }

  function mount() {
    var el = document.getElementById("pioneers-map");
    if (!el || !window.GridmapMap) { return; }
    var bounds = el.dataset.bounds ? el.dataset.bounds.split(",").map(Number) : null;
    var handle = window.GridmapMap.mount(el, {layers: [], basemap: el.dataset.basemap, bounds: bounds,
                                               tiandituKey: el.dataset.tiandituKey});
    window.pioneersMap = handle.map;
    fetch(el.dataset.src, {credentials: "omit"}).then(function (r) { return r.json(); }).then(function (data) {
      var draw = function () { addLayers(handle.map, shifted(data, el.dataset.basemap)); el.dataset.ready = "1"; };
      if (handle.map.loaded()) { draw(); } else { handle.map.on("load", draw); }
    });
  }

  document.addEventListener("DOMContentLoaded", mount);
}());
