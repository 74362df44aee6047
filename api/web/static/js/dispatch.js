// Dispatchers' desk (/dispatch): the list's quiet refresh (a fragment every data-refresh seconds while the
// tab is visible, and on 刷新), and the detail's map with the incident and the numbered responders.
// No inline scripts (the CSP); text from the service is inserted by parsing the server-escaped fragment
// or with textContent. Coordinates are WGS84; shifted to GCJ-02 only on the Amap base map.
(function () {
  "use strict";

  function refreshList(box) {
    return fetch(box.dataset.fragment, {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        // Parse as a document (no script runs) and take the one list: the server escaped every value.
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector(".desk-list");
        if (fresh) { box.replaceChildren(document.importNode(fresh, true)); }
      });
  }

  function wireList() {
    var box = document.getElementById("desk-list");
    if (!box) { return; }
    var every = Math.max(30, Number(box.dataset.refresh) || 45) * 1000;
    setInterval(function () { if (!document.hidden) { refreshList(box).catch(function () {}); } }, every);
    var button = document.getElementById("desk-refresh");
    if (button) {
      button.addEventListener("click", function (e) {
        e.preventDefault();
        button.textContent = "刷新中…";
        refreshList(box).then(function () { button.textContent = "刷新"; },
          function () { window.location.reload(); });
      });
    }
  }

  function marker(text, className, title) {
    var node = document.createElement("div");
    node.className = className;
    node.textContent = text;
    node.title = title;
    node.setAttribute("aria-label", title);
    return node;
  }

  function mountMap() {
    var host = document.getElementById("desk-map");
    var data = document.getElementById("desk-data");
    if (!host || !data || !window.GridmapMap || !window.maplibregl) { return; }
    var d = JSON.parse(data.textContent);
    var points = [d.incident].concat(d.responders);
    var lons = points.map(function (p) { return p.lon; });
    var lats = points.map(function (p) { return p.lat; });
    var pad = 0.002;  // degrees, about 200 m: nothing sits on the map's edge
    var basemap = host.dataset.basemap || "none";
    var mounted = window.GridmapMap.mount(host, {
      layers: ["grids"], basemap: basemap, tiandituKey: host.dataset.tiandituKey || "",
      bounds: [Math.min.apply(null, lons) - pad, Math.min.apply(null, lats) - pad,
               Math.max.apply(null, lons) + pad, Math.max.apply(null, lats) + pad]
    });
    host.classList.add("mounted");
    var place = function (p) { return basemap === "amap" ? window.GridmapMap.wgs84ToGcj02(p.lon, p.lat) : [p.lon, p.lat]; };
    d.responders.slice().reverse().forEach(function (r) {
      new window.maplibregl.Marker({element: marker(String(r.number), "desk-marker", r.number + " 号推荐人员")})
        .setLngLat(place(r)).addTo(mounted.map);
    });
    new window.maplibregl.Marker({element: marker("事", "desk-marker incident", "事件地点")})
      .setLngLat(place(d.incident)).addTo(mounted.map);
  }

  document.addEventListener("DOMContentLoaded", function () {
    wireList();
    mountMap();
  });
})();
