// Residents' report page: the phone's position (WGS84, W3C Geolocation) or a pin on the base map
// (GCJ-02 on an Amap base map), the 求助服务 skill row, and the three-photo limit. No inline scripts.
(function () {
  "use strict";

  function setPlace(lon, lat, coords, how) {
    document.getElementById("lon").value = lon.toFixed(6);
    document.getElementById("lat").value = lat.toFixed(6);
    document.getElementById("coords").value = coords;
    document.getElementById("place-status").textContent = "已选位置（" + how + "）";
  }

  function locate() {
    var status = document.getElementById("place-status");
    if (!navigator.geolocation) { status.textContent = "此浏览器不能定位，请在地图上点选或填写地址。"; return; }
    status.textContent = "正在定位…";
    navigator.geolocation.getCurrentPosition(function (p) {
      setPlace(p.coords.longitude, p.coords.latitude, "wgs84", "我的位置");
    }, function () {
      status.textContent = "定位失败：请允许定位，或在地图上点选位置。";
    }, {enableHighAccuracy: true, timeout: 15000});
  }

  function mountPinMap() {
    var el = document.getElementById("report-map");
    // Without a base map there is nothing to recognise a place by: the phone's position is used.
    if (!el || el.dataset.basemap === "none" || !window.GridmapMap) return;
    el.hidden = false;
    var handle = window.GridmapMap.mount(el, {layers: [], basemap: el.dataset.basemap,
                                               tiandituKey: el.dataset.tiandituKey});
    var marker = null;
    handle.map.on("click", function (e) {
      if (marker) marker.remove();
      marker = new window.maplibregl.Marker({color: "#c8102e"}).setLngLat(e.lngLat).addTo(handle.map);
      setPlace(e.lngLat.lng, e.lngLat.lat, el.dataset.pinCoords || "wgs84", "地图点选");
    });
  }

  function skillRow() {
    var row = document.getElementById("skill-row");
    if (!row) return;
    var update = function () {
      var checked = document.querySelector("input[name=category]:checked");
      row.hidden = !(checked && checked.value === "求助服务");
    };
    document.querySelectorAll("input[name=category]").forEach(function (r) { r.addEventListener("change", update); });
    update();
  }

  function photoLimit() {
    var input = document.getElementById("photos");
    if (!input) return;
    input.addEventListener("change", function () {
      input.setCustomValidity(input.files.length > 3 ? "最多上传 3 张照片" : "");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("locate");
    if (button) button.addEventListener("click", locate);
    skillRow();
    photoLimit();
    mountPinMap();
  });
})();
