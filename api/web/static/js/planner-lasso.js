// Free-hand lasso (圈选) on a MapLibre map: press and drag (mouse, pen or finger) to draw a closed
// line; when released, the caller gets the ring in WGS84 degrees. The drawn ring stays on the map
// until clear() so the planner sees what was lassoed. No inline scripts (CSP); no dependencies.
(function () {
  "use strict";

  var MIN_STEP_PX = 4;  // a point every 4 screen pixels: smooth enough, few enough to test quickly

  /** Whether [lon, lat] lies inside the ring (even-odd rule; fine at street scale in degrees). */
  function inRing(point, ring) {
    var x = point[0], y = point[1], inside = false;
    for (var i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      var xi = ring[i][0], yi = ring[i][1], xj = ring[j][0], yj = ring[j][1];
      if ((yi > y) !== (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) inside = !inside;
    }
    return inside;
  }

  function shape(ring, closed) {
    var coords = ring.slice();
    if (closed && coords.length) coords.push(coords[0]);
    var features = coords.length > 1 ? [{type: "Feature", properties: {},
      geometry: closed && coords.length > 3 ? {type: "Polygon", coordinates: [coords]}
                                            : {type: "LineString", coordinates: coords}}] : [];
    return {type: "FeatureCollection", features: features};
  }

  function Lasso(map, onDone) {
    this.map = map;
    this.onDone = onDone;
    this.active = false;
    this.ring = [];
    this.drawing = false;
    map.addSource("lasso", {type: "geojson", data: shape([], false)});
    map.addLayer({id: "lasso-fill", type: "fill", source: "lasso", filter: ["==", ["geometry-type"], "Polygon"],
                  paint: {"fill-color": "#8250df", "fill-opacity": 0.12}});
    map.addLayer({id: "lasso-line", type: "line", source: "lasso",
                  paint: {"line-color": "#8250df", "line-width": 3, "line-dasharray": [2, 1]}});
    this.listen();
  }

  Lasso.prototype.show = function (closed) { this.map.getSource("lasso").setData(shape(this.ring, closed)); };

  Lasso.prototype.clear = function () { this.ring = []; this.show(false); };

  Lasso.prototype.setActive = function (on) {
    this.active = on;
    var box = this.map.getCanvasContainer();
    box.style.touchAction = on ? "none" : "";
    box.style.cursor = on ? "crosshair" : "";
    if (on) this.map.dragPan.disable(); else this.map.dragPan.enable();
  };

  Lasso.prototype.at = function (e) {
    var r = this.map.getCanvasContainer().getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  };

  Lasso.prototype.listen = function () {
    var self = this, box = this.map.getCanvasContainer(), last = null;
    box.addEventListener("pointerdown", function (e) {
      if (!self.active || e.button > 0 || e.shiftKey) return;  // Shift-drag stays the box selection
      self.drawing = true;
      last = self.at(e);
      self.ring = [self.map.unproject(last).toArray()];
      if (box.setPointerCapture) box.setPointerCapture(e.pointerId);
      e.preventDefault();
    });
    box.addEventListener("pointermove", function (e) {
      if (!self.drawing) return;
      var p = self.at(e);
      if (Math.abs(p[0] - last[0]) + Math.abs(p[1] - last[1]) < MIN_STEP_PX) return;
      last = p;
      self.ring.push(self.map.unproject(p).toArray());
      self.show(false);
    });
    function finish() {
      if (!self.drawing) return;
      self.drawing = false;
      if (self.ring.length < 3) { self.clear(); return; }
      self.show(true);
      self.onDone(self.ring.slice());
    }
    box.addEventListener("pointerup", finish);
    box.addEventListener("pointercancel", finish);
  };

  window.gridmapLasso = {Lasso: Lasso, inRing: inRing};
})();
