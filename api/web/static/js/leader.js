// Leaders' page: mounts the live map (GridmapMap) and wires the layer switches and the grid colouring,
// then adds the page's own GeoJSON layers: incident heat of the chosen window, service centres with their
// 1,000 m circles, proposed new sites. Served locally; no inline script (the CSP forbids it).
(function () {
  "use strict";

  // Grid fill by the chosen measure; tile properties: status, link_coverage_pct (0-100), households.
  var GRID_FILL = {
    status: ['match', ['get', 'status'], 'blank', '#d7301f', 'over-size', '#fc8d59', 'under-size', '#fdd49e', '#a6d96a'],
    coverage: ['case', ['!', ['has', 'link_coverage_pct']], '#cccccc',
      ['interpolate', ['linear'], ['get', 'link_coverage_pct'], 0, '#d7301f', 80, '#fdae61', 95, '#a6d96a', 100, '#1a9641']],
    size: ['interpolate', ['linear'], ['get', 'households'], 0, '#f7fbff', 300, '#9ecae1', 500, '#3182bd', 800, '#08306b']
  };
  // The legend rows of each grid colouring ([colour, label]; null: the map's own rows, by status).
  var GRID_LEGEND = {
    status: null,
    coverage: [['#d7301f', '网格联户率 0%'], ['#fdae61', '网格联户率 80%'], ['#a6d96a', '网格联户率 95%'],
      ['#1a9641', '网格联户率 100%'], ['#cccccc', '网格无住户']],
    size: [['#f7fbff', '网格 0 户'], ['#9ecae1', '网格 300 户（城市下限）'], ['#3182bd', '网格 500 户（城市上限）'],
      ['#08306b', '网格 800 户及以上']]
  };
  // A sober single-hue ramp: where incidents cluster, not an alarm (the lights say what is late).
  var HEAT_RAMP = ['interpolate', ['linear'], ['heatmap-density'], 0, 'rgba(236,231,242,0)', 0.2, '#d0d1e6',
    0.45, '#a6bddb', 0.7, '#3690c0', 1, '#034e7b'];
  var STYLE_LAYERS = {grids: ['grids-0', 'grids-1'], gaps: ['gaps-0'], incidents: ['incidents-0'],
    heat: ['l-heat'], centres: ['l-centres-fill', 'l-centres-line', 'l-centres-pt'],
    sites: ['l-sites-fill', 'l-sites-line', 'l-sites-pt']};
  var OWN_LAYERS = {heat: 'heat', centres: 'centres', sites: 'sites'};

  function shift(el, lon, lat) {
    return el.dataset.basemap === "amap" ? window.GridmapMap.wgs84ToGcj02(lon, lat) : [lon, lat];
  }

  // Community names at their label points (server-computed, WGS84), drawn at every zoom.
  function labelCommunities(map, el) {
    var points = [];
    try { points = JSON.parse(el.dataset.labels || "[]"); } catch (e) { points = []; }
    points.forEach(function (p) {
      var label = document.createElement("div");
      label.className = "community-label";
      label.textContent = p.name;
      new window.maplibregl.Marker({element: label}).setLngLat(shift(el, p.lon, p.lat)).addTo(map);
    });
  }

  function layerUrl(el, name) {
    var url = el.dataset[name + "Url"] || "";
    return el.dataset.basemap === "amap" ? url + (url.indexOf("?") < 0 ? "?" : "&") + "coords=gcj02" : url;
  }

  // -- the page's own layers (GeoJSON from /leader/layers/*) -----------------------------------------
  var ADD = {
    heat: function (map, data) {
      var top = 1;
      data.features.forEach(function (f) { top = Math.max(top, f.properties.n); });
      map.addLayer({id: 'l-heat', type: 'heatmap', source: 'heat', paint: {
        'heatmap-weight': ['interpolate', ['linear'], ['get', 'n'], 0, 0, top, 1],
        'heatmap-intensity': ['interpolate', ['linear'], ['zoom'], 10, 0.8, 16, 2],
        'heatmap-radius': ['interpolate', ['linear'], ['zoom'], 10, 12, 16, 40],
        'heatmap-color': HEAT_RAMP, 'heatmap-opacity': 0.75}});
    },
    centres: function (map) {
      map.addLayer({id: 'l-centres-fill', type: 'fill', source: 'centres', filter: ['==', ['get', 'shape'], 'area'],
        paint: {'fill-color': '#1a9641', 'fill-opacity': 0.08}});
      map.addLayer({id: 'l-centres-line', type: 'line', source: 'centres', filter: ['==', ['get', 'shape'], 'area'],
        paint: {'line-color': '#1a9641', 'line-width': 1.5}});
      map.addLayer({id: 'l-centres-pt', type: 'circle', source: 'centres', filter: ['==', ['get', 'shape'], 'centre'],
        paint: {'circle-radius': 7, 'circle-color': '#1a9641', 'circle-stroke-color': '#ffffff', 'circle-stroke-width': 2}});
    },
    sites: function (map, data, el, markers) {
      map.addLayer({id: 'l-sites-fill', type: 'fill', source: 'sites', filter: ['==', ['get', 'shape'], 'area'],
        paint: {'fill-color': '#2b8cbe', 'fill-opacity': 0.06}});
      map.addLayer({id: 'l-sites-line', type: 'line', source: 'sites', filter: ['==', ['get', 'shape'], 'area'],
        paint: {'line-color': '#2b8cbe', 'line-width': 1.5, 'line-dasharray': [3, 2]}});
      map.addLayer({id: 'l-sites-pt', type: 'circle', source: 'sites', filter: ['==', ['get', 'shape'], 'site'],
        paint: {'circle-radius': 7, 'circle-color': '#ffffff', 'circle-stroke-color': '#2b8cbe', 'circle-stroke-width': 3}});
      data.features.forEach(function (f) {
        if (f.properties.shape !== 'site') return;
        var tag = document.createElement("div");
        tag.className = "site-label";
        tag.textContent = "建议" + f.properties.rank + "（+" + f.properties.newly_covered + "户）";
        markers.push(new window.maplibregl.Marker({element: tag, anchor: 'top', offset: [0, 8]})
          .setLngLat(f.geometry.coordinates).addTo(map));
      });
    }
  };

  function note(name, data) {
    var out = document.querySelector('[data-legend-note="' + name + '"]');
    if (!out) return;
    if (name === 'heat') out.textContent = "共 " + data.incidents + " 件";
    if (name === 'centres') {
      var n = data.features.filter(function (f) { return f.properties.shape === 'centre'; }).length;
      out.textContent = n ? "（共 " + n + " 处）" : "（本辖区及周边没有登记党群服务中心）";
    }
    if (name === 'sites') {
      var sites = data.features.filter(function (f) { return f.properties.shape === 'site'; });
      var gain = sites.reduce(function (s, f) { return s + f.properties.newly_covered; }, 0);
      out.textContent = sites.length ? sites.length + " 处，可新覆盖 " + gain + " 户（服务圈外共 " + data.uncovered + " 户）"
        : "服务圈外没有住户，无需新建";
    }
  }

  function loadOwn(map, el, name, markers, visible) {
    var state = el.__own || (el.__own = {});
    if (state[name]) return;
    state[name] = "loading";
    fetch(layerUrl(el, name), {credentials: 'same-origin'})
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (data) {
        map.addSource(name, {type: 'geojson', data: data});
        ADD[name](map, data, el, markers[name] = []);
        setVisible(map, name, visible(), markers);
        note(name, data);
        state[name] = "ready";
        el.dataset[name + "Features"] = String(data.features.length);
        if (name === 'heat') el.dataset.heatIncidents = String(data.incidents);
      })
      .catch(function () { state[name] = "failed"; note(name, {features: [], incidents: "—", uncovered: "—"}); });
  }

  function setVisible(map, name, on, markers) {
    (STYLE_LAYERS[name] || []).forEach(function (id) {
      if (map.getLayer(id)) map.setLayoutProperty(id, "visibility", on ? "visible" : "none");
    });
    (markers[name] || []).forEach(function (m) { m.getElement().style.display = on ? "" : "none"; });
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
    el.gridmapMap = handle.map;  // for the page's own tests: which layers are visible
    var markers = {};
    // Our sources go in once the style is ready — not at 'load', which waits for every base-map tile
    // (an Amap or Tianditu base map on an intranet without internet may never finish).
    var wired = false;
    var wire = function () {
      if (wired) return;
      wired = true;
      wireSwitches(handle, el, markers);
    };
    handle.map.once('style.load', wire);  // fired once the style (not its tiles) is in place
    handle.map.once('load', wire);
    labelCommunities(handle.map, el);
  }

  // The page's own legend rows (heat, centres, sites, incident points) follow their switches.
  function showLegendRow(box) {
    var row = document.querySelector('#leader-legend [data-legend="' + box.value + '"]');
    if (row) row.hidden = !box.checked;
  }

  function wireSwitches(handle, el, markers) {
    var map = handle.map;
    var form = document.getElementById("map-layers");
    if (!form) return;
    form.addEventListener("submit", function (e) { e.preventDefault(); });
    form.querySelectorAll("input[type=checkbox]").forEach(function (box) {
      var own = OWN_LAYERS[box.value];
      var visible = function () { return box.checked; };
      if (own && box.checked) loadOwn(map, el, own, markers, visible);
      else setVisible(map, box.value, box.checked, markers);
      showLegendRow(box);  // a browser may restore a switch's state on going back
      box.addEventListener("change", function () {
        if (own && box.checked) loadOwn(map, el, own, markers, visible);
        setVisible(map, box.value, box.checked, markers);
        showLegendRow(box);
      });
    });
    var colour = document.getElementById("grid-colour");
    if (colour) {
      var recolour = function () {
        if (map.getLayer("grids-0")) map.setPaintProperty("grids-0", "fill-color", GRID_FILL[colour.value]);
        if (handle.setLegend) handle.setLegend("grids", GRID_LEGEND[colour.value]);
      };
      if (colour.value !== "status") recolour();
      colour.addEventListener("change", recolour);
    }
  }

  // On a phone each table row reads as a card: every cell carries its column's name (CSS shows it).
  function labelCells() {
    document.querySelectorAll("table.tbl").forEach(function (table) {
      var heads = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) { return th.textContent; });
      var title = heads[0] === "名次" ? 1 : 0;  // a ranked row is titled by the member, not the rank
      table.querySelectorAll("tbody tr").forEach(function (tr) {
        Array.prototype.forEach.call(tr.children, function (td, i) {
          if (heads[i]) td.setAttribute("data-label", heads[i]);
          if (i === title) td.classList.add("title");
        });
      });
      table.classList.add("cards");
    });
  }

  document.addEventListener("DOMContentLoaded", labelCells);
  document.addEventListener("DOMContentLoaded", mountLeaderMap);
})();
