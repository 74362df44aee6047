// gridmap pages: China-time clock, map mount (when the map client is installed), job progress polling.
// No inline scripts anywhere (the CSP forbids them); everything here is served locally.
(function () {
  "use strict";

  function chinaTime() {
    var parts = new Intl.DateTimeFormat("zh-CN", {
      timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", hour12: false
    }).formatToParts(new Date());
    var v = {};
    parts.forEach(function (p) { v[p.type] = p.value; });
    return v.year + "-" + v.month + "-" + v.day + " " + v.hour + ":" + v.minute;
  }

  function startClock() {
    var el = document.getElementById("clock");
    if (!el) return;
    var tick = function () { el.textContent = "北京时间 " + chinaTime(); };
    tick();
    setInterval(tick, 15000);
  }

  function mountMap() {
    var el = document.getElementById("map");
    if (!el || !window.GridmapMap || typeof window.GridmapMap.mount !== "function") return;
    var bounds = (el.dataset.bounds || "").split(",").filter(Boolean).map(Number);
    window.GridmapMap.mount(el, {
      layers: (el.dataset.layers || "").split(",").filter(Boolean),
      basemap: el.dataset.basemap || "none",
      tiandituKey: el.dataset.tiandituKey || "",
      bounds: bounds.length === 4 ? bounds : undefined
    });
    el.classList.add("mounted");
  }

  function pollJob() {
    var box = document.getElementById("job");
    if (!box) return;
    var url = box.dataset.fragment;
    var refresh = function () {
      var card = box.querySelector("[data-state]");
      var state = card ? card.dataset.state : "";
      if (state === "done" || state === "failed") return;
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) {
          // Parse as a document (no script runs) and take the one card: the server escaped every value.
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.querySelector("[data-state]");
          if (fresh) box.replaceChildren(document.importNode(fresh, true));
          setTimeout(refresh, 2000);
        })
        .catch(function () { setTimeout(refresh, 5000); });
    };
    setTimeout(refresh, 1500);
  }

  document.addEventListener("DOMContentLoaded", function () {
    startClock();
    mountMap();
    pollJob();
  });
})();
