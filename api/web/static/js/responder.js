// Responders' phone page: the phone's position for 签到走访, and one map marker per building with a
// numbered list of its households (never stacked markers). Text from the service is inserted with
// textContent only. Browser geolocation is WGS84 (coords=wgs84); the server converts other systems.
(function () {
  "use strict";

  function fillPosition(form) {
    var status = form.querySelector(".geo");
    if (!navigator.geolocation) { status.textContent = "此浏览器不能定位，仍可签到（不记录位置）。"; return; }
    status.textContent = "正在获取位置…";
    navigator.geolocation.getCurrentPosition(function (pos) {
      form.elements.lon.value = pos.coords.longitude;
      form.elements.lat.value = pos.coords.latitude;
      form.elements.accuracy_m.value = Math.round(pos.coords.accuracy);
      status.textContent = "已定位，精度约 " + Math.round(pos.coords.accuracy) + " 米。";
    }, function () {
      status.textContent = "未能获取位置（可在浏览器设置中允许定位），仍可签到，不记录位置。";
    }, {enableHighAccuracy: true, timeout: 15000, maximumAge: 60000});
  }

  function wireCheckins() {
    document.querySelectorAll("details.checkin").forEach(function (box) {
      box.addEventListener("toggle", function () {
        if (box.open) { fillPosition(box.querySelector("form")); }
      });
    });
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function buildingList(building) {
    var box = el("div", "bld-pop");
    box.appendChild(el("strong", null, building.label + " · " + building.households.length + " 户"));
    var list = el("ol", "bld-list");
    building.households.forEach(function (h) {
      var item = el("li");
      item.value = h.number;
      var link = el("a", null, (h.name || "（未登记姓名）") + (h.address ? " " + h.address : ""));
      link.href = "#hh-" + h.number;
      item.appendChild(link);
      list.appendChild(item);
    });
    box.appendChild(list);
    return box;
  }

  function buildingMarker(building) {
    var node = el("button", "bld-marker", building.households.map(function (h) { return h.number; }).join("·"));
    node.type = "button";
    node.title = building.label + "，" + building.households.length + " 户";
    node.setAttribute("aria-label", node.title);
    return node;
  }

  function mountMap() {
    var host = document.getElementById("responder-map");
    var data = document.getElementById("buildings-data");
    if (!host || !data || !window.GridmapMap || !window.maplibregl) { return; }
    var buildings = JSON.parse(data.textContent);
    if (!buildings.length) { return; }
    var lons = buildings.map(function (b) { return b.lon; });
    var lats = buildings.map(function (b) { return b.lat; });
    var pad = 0.0015;  // degrees, about 150 m: the buildings never sit on the map's edge
    var basemap = host.dataset.basemap || "none";
    var mounted = window.GridmapMap.mount(host, {
      layers: ["grids"], basemap: basemap, tiandituKey: host.dataset.tiandituKey || "",
      bounds: [Math.min.apply(null, lons) - pad, Math.min.apply(null, lats) - pad,
               Math.max.apply(null, lons) + pad, Math.max.apply(null, lats) + pad]
    });
    host.classList.add("mounted");
    buildings.forEach(function (b) {
      var at = basemap === "amap" ? window.GridmapMap.wgs84ToGcj02(b.lon, b.lat) : [b.lon, b.lat];
      var popup = new window.maplibregl.Popup({offset: 14, maxWidth: "280px"}).setDOMContent(buildingList(b));
      new window.maplibregl.Marker({element: buildingMarker(b)}).setLngLat(at).setPopup(popup).addTo(mounted.map);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    wireCheckins();
    mountMap();
  });
})();
