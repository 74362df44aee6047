// The redraw draft page: before / after maps side by side (MapLibre, vendored; no basemap needed), each
// grid labelled with its households and coloured by band, locked grids grey with a dashed outline and a
// 锁定 mark; select H3 cells on the after map by click, Shift-drag box or free-hand lasso
// (planner-lasso.js), preview the move live (locks refused, buildings that would be split listed, with
// 整栋一起移入), apply, undo, redo. Text from the service goes in with textContent only. No inline
// scripts (CSP).
(function () {
  "use strict";

  var BAND_COLOURS = ["case", ["==", ["get", "status"], "locked"], "#8c959f",
    ["to-boolean", ["get", "in_band"]], "#2da44e",
    ["<", ["get", "households"], ["get", "band_min"]], "#d4a72c", "#cf222e"];

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function bandWord(p) {
    if (p.in_band === true || p.in_band === "true") return "达标";
    return p.households < p.band_min ? "偏少" : "偏多";
  }

  function blankStyle() {
    return {version: 8, sources: {}, layers: [{id: "bg", type: "background", paint: {"background-color": "#f6f8fa"}}]};
  }

  function bboxOf(fc) {
    var b = [180, 90, -180, -90];
    fc.features.forEach(function (f) {
      JSON.stringify(f.geometry.coordinates).replace(/-?\d+\.?\d*,-?\d+\.?\d*/g, function (pair) {
        var xy = pair.split(",").map(Number);
        b = [Math.min(b[0], xy[0]), Math.min(b[1], xy[1]), Math.max(b[2], xy[0]), Math.max(b[3], xy[1])];
        return pair;
      });
    });
    return b;
  }

  function labelPoint(geometry) {
    var polys = geometry.type === "Polygon" ? [geometry.coordinates] : geometry.coordinates;
    var ring = polys.reduce(function (best, p) { return p[0].length > best.length ? p[0] : best; }, []);
    var sx = 0, sy = 0;
    ring.forEach(function (p) { sx += p[0]; sy += p[1]; });
    return [sx / ring.length, sy / ring.length];
  }

  function drawGrids(map, fc, markers) {
    if (map.getSource("grids")) {
      map.getSource("grids").setData(fc);
    } else {
      map.addSource("grids", {type: "geojson", data: fc});
      map.addLayer({id: "grids-fill", type: "fill", source: "grids", paint: {"fill-color": BAND_COLOURS, "fill-opacity": 0.35}});
      map.addLayer({id: "grids-line", type: "line", source: "grids", paint: {"line-color": "#24292f", "line-width": 2}});
      map.addLayer({id: "grids-locked", type: "line", source: "grids", filter: ["==", ["get", "status"], "locked"],
                    paint: {"line-color": "#424a53", "line-width": 4, "line-dasharray": [2, 1.5]}});
    }
    markers.splice(0).forEach(function (m) { m.remove(); });
    fc.features.forEach(function (f) {
      if (!f.geometry) return;
      var p = f.properties, box = el("div", "grid-label" + (p.status === "locked" ? " locked" : ""));
      if (p.status === "locked") box.appendChild(el("span", "lock-mark", "锁定"));
      box.appendChild(el("strong", "", (p.name || "新网格") + "（" + p.grid_code + "）"));
      box.appendChild(el("span", "count", p.households + " 户 · " + bandWord(p) + (p.contiguous === false ? " · 不连片" : "")));
      markers.push(new window.maplibregl.Marker({element: box}).setLngLat(labelPoint(f.geometry)).addTo(map));
    });
  }

  var STATUS_WORDS = {locked: "锁定", edited: "手工调整", kept: "保留", "new": "新划", redrawn: "重划"};

  /** The 草案网格 table from the draft's grids, so it follows every edit, undo and redo. */
  function fillGridTable(fc) {
    var body = document.querySelector("table.draft-grids tbody");
    if (!body) return;
    var rows = fc.features.slice().sort(function (a, b) { return a.properties.grid_code < b.properties.grid_code ? -1 : 1; });
    body.replaceChildren();
    rows.forEach(function (f) {
      var p = f.properties, word = bandWord(p);
      var row = el("tr", word === "达标" ? "band-in" : (word === "偏少" ? "band-below" : "band-above"));
      row.dataset.grid = p.grid_code;
      row.appendChild(el("td", "", (p.name || "新网格") + "（" + p.grid_code + "）"));
      row.appendChild(el("td", "num", String(p.households)));
      var band = row.appendChild(el("td"));
      band.appendChild(el("span", "band", word));
      band.appendChild(el("span", "small", " " + p.band_min + "–" + p.band_max));
      row.appendChild(el("td", "num", String(p.moved)));
      var state = row.appendChild(el("td", "", STATUS_WORDS[p.status] || p.status));
      if (p.contiguous === false) state.appendChild(el("strong", "warn", " 不连片"));
      body.appendChild(row);
    });
  }

  function getJSON(url) {
    return fetch(url, {credentials: "same-origin"}).then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); });
  }

  function Editor(root) {
    this.root = root;
    this.id = root.dataset.draft;
    this.csrf = root.dataset.csrf;
    this.editable = root.dataset.committed !== "yes";
    this.selected = {};
    this.cellInfo = {};
    this.whole = false;
    this.markers = {before: [], after: []};
  }

  Editor.prototype.post = function (path, body) {
    return fetch("/drafts/" + this.id + path, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": this.csrf},
      body: body ? JSON.stringify(body) : "{}"
    }).then(function (r) {
      return r.json().then(function (data) { return r.ok ? data : Promise.reject(data.detail || r.status); });
    });
  };

  Editor.prototype.mountMaps = function () {
    var self = this;
    this.before = new window.maplibregl.Map({container: "map-before", style: blankStyle(), attributionControl: false});
    this.after = new window.maplibregl.Map({container: "map-after", style: blankStyle(), attributionControl: false,
                                            boxZoom: false});
    var syncing = false;
    function sync(from, to) {
      from.on("move", function () {
        if (syncing) return;
        syncing = true;
        to.jumpTo({center: from.getCenter(), zoom: from.getZoom()});
        syncing = false;
      });
    }
    sync(this.before, this.after);
    sync(this.after, this.before);
    var loaded = 0;
    [this.before, this.after].forEach(function (m) { m.on("load", function () { if (++loaded === 2) self.load(); }); });
  };

  Editor.prototype.load = function () {
    var self = this;
    getJSON("/drafts/" + this.id + "/before.geojson").then(function (fc) {
      drawGrids(self.before, fc, self.markers.before);
      self.before.fitBounds(bboxOf(fc), {padding: 30, duration: 0});
    });
    this.refreshAfter();
  };

  Editor.prototype.refreshAfter = function () {
    var self = this;
    getJSON("/drafts/" + this.id + "/grids.geojson").then(function (fc) {
      drawGrids(self.after, fc, self.markers.after);
      fillGridTable(fc);
      self.root.dataset.ready = "yes";
    });
    if (!this.editable) return;
    getJSON("/drafts/" + this.id + "/cells.geojson").then(function (fc) { self.drawCells(fc); });
  };

  Editor.prototype.drawCells = function (fc) {
    var map = this.after, self = this;
    this.cellInfo = {};
    fc.features.forEach(function (f) { self.cellInfo[f.properties.cell] = f.properties; });
    this.root.dataset.cells = String(fc.features.length);
    if (map.getSource("cells")) {
      map.getSource("cells").setData(fc);
      return;
    }
    map.addSource("cells", {type: "geojson", data: fc});
    map.addLayer({id: "cells-fill", type: "fill", source: "cells", paint: {"fill-color": "#0969da", "fill-opacity": 0.02}});
    map.addLayer({id: "cells-locked", type: "fill", source: "cells", filter: ["to-boolean", ["get", "locked"]],
                  paint: {"fill-color": "#57606a", "fill-opacity": 0.18}});
    map.addLayer({id: "cells-line", type: "line", source: "cells", paint: {"line-color": "#57606a", "line-width": 0.5, "line-opacity": 0.6}});
    map.addLayer({id: "cells-selected", type: "fill", source: "cells", filter: ["in", ["get", "cell"], ["literal", []]],
                  paint: {"fill-color": "#0969da", "fill-opacity": 0.55}});
    map.on("click", "cells-fill", function (e) { self.toggle(e.features[0].properties.cell); });
    map.on("mouseenter", "cells-fill", function (e) {
      map.getCanvas().style.cursor = e.features[0].properties.locked ? "not-allowed" : "pointer";
    });
    map.on("mouseleave", "cells-fill", function () { map.getCanvas().style.cursor = ""; });
    this.boxSelect();
    this.lasso = new window.gridmapLasso.Lasso(map, function (ring) { self.lassoed(ring); });
  };

  /** Add every cell whose centre lies inside the lassoed ring (WGS84) to the selection. */
  Editor.prototype.lassoed = function (ring) {
    var self = this, inRing = window.gridmapLasso.inRing;
    this.lassoRing = ring;
    Object.keys(this.cellInfo).forEach(function (cell) {
      var p = self.cellInfo[cell];
      if (inRing([p.lon, p.lat], ring)) self.selected[cell] = true;
    });
    this.selectionChanged();
  };

  Editor.prototype.setTool = function (tool) {
    var lasso = tool === "lasso";
    document.getElementById("tool-click").setAttribute("aria-pressed", String(!lasso));
    document.getElementById("tool-lasso").setAttribute("aria-pressed", String(lasso));
    document.getElementById("tool-hint").textContent = lasso
      ? "在地图上按住并拖动，画一个圈把要移动的单元圈起来，松开即选中（中心在圈内的单元）。再点“点选”可拖动地图。"
      : "点击地图上的单元选中或取消；电脑上按住 Shift 拖动可框选。";
    if (this.lasso) this.lasso.setActive(lasso);
  };

  Editor.prototype.boxSelect = function () {
    var map = this.after, self = this, start = null;
    map.getCanvasContainer().addEventListener("mousedown", function (e) {
      if (!e.shiftKey) return;
      map.dragPan.disable();
      var r = map.getCanvasContainer().getBoundingClientRect();
      start = [e.clientX - r.left, e.clientY - r.top];
    }, true);
    window.addEventListener("mouseup", function (e) {
      if (!start) return;
      var r = map.getCanvasContainer().getBoundingClientRect(), end = [e.clientX - r.left, e.clientY - r.top];
      map.queryRenderedFeatures([start, end], {layers: ["cells-fill"]}).forEach(function (f) {
        self.selected[f.properties.cell] = true;
      });
      start = null;
      map.dragPan.enable();
      self.selectionChanged();
    });
  };

  Editor.prototype.toggle = function (cell) {
    if (this.selected[cell]) delete this.selected[cell]; else this.selected[cell] = true;
    this.selectionChanged();
  };

  Editor.prototype.cells = function () { return Object.keys(this.selected); };

  Editor.prototype.selectionChanged = function () {
    var cells = this.cells(), info = this.cellInfo;
    this.whole = false;
    if (this.after.getLayer("cells-selected")) {
      this.after.setFilter("cells-selected", ["in", ["get", "cell"], ["literal", cells]]);
    }
    if (!cells.length && this.lasso) this.lasso.clear();
    document.getElementById("selected-count").textContent = String(cells.length);
    document.getElementById("selected-households").textContent = String(cells.reduce(function (n, c) {
      return n + ((info[c] && info[c].households) || 0);
    }, 0));
    document.getElementById("apply-edit").disabled = cells.length === 0;
    this.preview();
  };

  Editor.prototype.lockedSelected = function () {
    var info = this.cellInfo;
    return this.cells().filter(function (c) { return info[c] && info[c].locked; });
  };

  Editor.prototype.showError = function (message) {
    document.getElementById("edit-error-box").hidden = !message;
    document.getElementById("edit-error").textContent = message ? String(message) : "";
    document.getElementById("drop-locked").hidden = !message || this.lockedSelected().length === 0;
    document.getElementById("apply-edit").disabled = Boolean(message) || this.cells().length === 0;
  };

  Editor.prototype.preview = function () {
    var self = this, cells = this.cells(), out = document.getElementById("preview");
    out.replaceChildren();
    this.root.dataset.split = "0";
    if (!cells.length) { this.showError(""); return; }
    this.post("/preview", this.editBody()).then(function (data) {
      self.showError("");
      out.replaceChildren(self.previewTable(data));
      self.root.dataset.split = String(data.split_buildings.length);
      document.getElementById("apply-edit").disabled = data.split_buildings.length > 0;
    }).catch(function (msg) { self.showError(msg); });
  };

  Editor.prototype.editBody = function () {
    return {to_grid: document.getElementById("to-grid").value, cells: this.cells(), whole_buildings: this.whole};
  };

  /** The 楼栋 an edit would split, with the button that takes them whole. */
  Editor.prototype.splitBox = function (data) {
    var self = this, box = el("div", "split-box");
    box.appendChild(el("p", "warn", "所选单元会把楼栋拆到不同网格："));
    var list = box.appendChild(el("ul"));
    data.split_buildings.forEach(function (b) {
      list.appendChild(el("li", "", b.building + "：移入 " + b.moving + " 户，" + b.staying.map(function (s) {
        return s.households + " 户留在 " + s.grid;
      }).join("，")));
    });
    box.appendChild(el("p", "small", "同一楼栋的住户要在同一个网格。请点下面的按钮把整栋楼一起选上，或重新选择单元。"));
    var button = box.appendChild(el("button", "secondary", "整栋一起移入"));
    button.type = "button";
    button.id = "whole-buildings";
    button.addEventListener("click", function () { self.whole = true; self.preview(); });
    return box;
  };

  Editor.prototype.previewTable = function (data) {
    var box = el("div");
    box.appendChild(el("p", "", "将有 " + data.households_moved + " 户换网格。移入后："));
    if (data.split_buildings.length) box.appendChild(this.splitBox(data));
    if (data.buildings_added.length) {
      box.appendChild(el("p", "ok-note", "已整栋一起移入：" + data.buildings_added.join("、") + "（不拆分楼栋）。"));
    }
    var table = el("table", "staffing preview-grids"), head = el("tr");
    ["网格", "现在", "移入后", "标准", "连片"].forEach(function (t) { head.appendChild(el("th", "", t)); });
    table.appendChild(el("thead")).appendChild(head);
    var body = table.appendChild(el("tbody"));
    data.grids.forEach(function (g) {
      var row = el("tr", g.in_band ? "band-in" : (g.households < g.band_min ? "band-below" : "band-above"));
      row.dataset.grid = g.grid_code;
      row.appendChild(el("td", "", g.name || g.grid_code));
      [g.households_before, g.households].forEach(function (v) { row.appendChild(el("td", "num", String(v))); });
      row.appendChild(el("td")).appendChild(el("span", "band", bandWord(g)));
      row.appendChild(el("td", g.contiguous ? "" : "warn", g.removed ? "网格将消失" : (g.contiguous ? "是" : "不连片！")));
      body.appendChild(row);
    });
    box.appendChild(table);
    (data.issues || []).forEach(function (t) { box.appendChild(el("p", "warn", t)); });
    return box;
  };

  Editor.prototype.afterWrite = function (state) {
    this.selected = {};
    if (this.lasso) this.lasso.clear();
    this.selectionChanged();
    document.getElementById("edit-pos").textContent = String(state.edit_pos);
    document.getElementById("edit-count").textContent = String(state.edits);
    document.getElementById("undo").disabled = state.edit_pos === 0;
    document.getElementById("redo").disabled = state.edit_pos >= state.edits;
    Object.keys(state.summary).forEach(function (k) {
      var node = document.querySelector("[data-fig='" + k + "']");
      if (node) node.textContent = k === "mean_polsby_popper" ? state.summary[k].toFixed(3) : String(state.summary[k]);
    });
    this.root.dataset.ready = "no";
    this.root.dataset.editPos = String(state.edit_pos);
    this.refreshAfter();
  };

  Editor.prototype.write = function (path, body) {
    var self = this;
    this.post(path, body).then(function (state) { self.showError(""); self.afterWrite(state); })
      .catch(function (msg) { self.showError(msg); });
  };

  Editor.prototype.wire = function () {
    var self = this;
    if (!this.editable) return;
    document.getElementById("apply-edit").addEventListener("click", function () { self.write("/edits", self.editBody()); });
    document.getElementById("tool-click").addEventListener("click", function () { self.setTool("click"); });
    document.getElementById("tool-lasso").addEventListener("click", function () { self.setTool("lasso"); });
    document.getElementById("drop-locked").addEventListener("click", function () {
      self.lockedSelected().forEach(function (c) { delete self.selected[c]; });
      self.selectionChanged();
    });
    document.getElementById("undo").addEventListener("click", function () { self.write("/undo"); });
    document.getElementById("redo").addEventListener("click", function () { self.write("/redo"); });
    document.getElementById("clear-selection").addEventListener("click", function () {
      self.selected = {};
      if (self.lasso) self.lasso.clear();
      self.selectionChanged();
    });
    document.getElementById("to-grid").addEventListener("change", function () { self.preview(); });
  };

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("redraw");
    if (!root || !window.maplibregl) return;
    var editor = new Editor(root);
    window.gridmapRedraw = editor;  // for the browser tests (as window.gridmap on the map client's page)
    editor.mountMaps();
    editor.wire();
  });
})();
