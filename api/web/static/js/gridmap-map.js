/*
 * gridmap live map: vector tiles from /tiles/{layer}/{z}/{x}/{y}.mvt drawn with MapLibre GL JS
 * (vendored at /static/vendor/maplibre/, BSD-3-Clause).
 *
 *   GridmapMap.mount(element, {layers, basemap: 'none'|'osm'|'amap'|'tianditu', tiandituKey, bounds,
 *                              token, baseUrl, deferLayers})
 *
 * - layers: any of grids, households, members, centres, incidents, gaps (default: all).
 * - basemap 'none' needs no network beyond the service (intranets). Amap tiles are GCJ-02: the map then
 *   asks for tiles with ?coords=gcj02 (the service shifts every vector feature) and everything placed
 *   here (bounds, labels, popups) goes through wgs84ToGcj02, a port of geodata/crs.py.
 * - bounds: [west, south, east, north] in WGS84 degrees.
 * - token: a bearer token sent with every tile and details request (pages with a session cookie omit it).
 * Grid names are drawn as HTML markers: no glyph server is needed for Chinese text.
 * The legend is a <details> box, folded at first on screens up to 600 px wide (phones). It lists only the
 * layers drawn: switching a layer off (map.setLayoutProperty(id, 'visibility', 'none')) takes its rows out,
 * on puts them back; handle.setLegend(layer, rows) replaces a layer's rows (another colouring).
 * Text from the service is always inserted with textContent, never as HTML.
 */
(function () {
  'use strict';

  // -- GCJ-02 (port of geodata/crs.py; Krasovsky 1940 ellipsoid) ------------------------------------
  var A = 6378245.0;
  var EE = 0.00669342162296594323;
  var CHINA_BBOX = [73.4, 3.8, 135.1, 53.6];

  function transformLat(x, y) {
    var ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * Math.sqrt(Math.abs(x));
    ret += (20.0 * Math.sin(6.0 * x * Math.PI) + 20.0 * Math.sin(2.0 * x * Math.PI)) * 2.0 / 3.0;
    ret += (20.0 * Math.sin(y * Math.PI) + 40.0 * Math.sin(y / 3.0 * Math.PI)) * 2.0 / 3.0;
    ret += (160.0 * Math.sin(y / 12.0 * Math.PI) + 320.0 * Math.sin(y * Math.PI / 30.0)) * 2.0 / 3.0;
    return ret;
  }

  function transformLon(x, y) {
    var ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * Math.sqrt(Math.abs(x));
    ret += (20.0 * Math.sin(6.0 * x * Math.PI) + 20.0 * Math.sin(2.0 * x * Math.PI)) * 2.0 / 3.0;
    ret += (20.0 * Math.sin(x * Math.PI) + 40.0 * Math.sin(x / 3.0 * Math.PI)) * 2.0 / 3.0;
    ret += (150.0 * Math.sin(x / 12.0 * Math.PI) + 300.0 * Math.sin(x / 30.0 * Math.PI)) * 2.0 / 3.0;
    return ret;
  }

  /** WGS84 → GCJ-02, degrees; points outside China are returned unchanged. Returns [lon, lat]. */
  function wgs84ToGcj02(lon, lat) {
    if (!(lon >= CHINA_BBOX[0] && lon <= CHINA_BBOX[2] && lat >= CHINA_BBOX[1] && lat <= CHINA_BBOX[3])) {
      return [lon, lat];
    }
    var dlat = transformLat(lon - 105.0, lat - 35.0);
    var dlon = transformLon(lon - 105.0, lat - 35.0);
    var radlat = lat / 180.0 * Math.PI;
    var magic = 1 - EE * Math.pow(Math.sin(radlat), 2);
    var sqrtmagic = Math.sqrt(magic);
    dlat = (dlat * 180.0) / ((A * (1 - EE)) / (magic * sqrtmagic) * Math.PI);
    dlon = (dlon * 180.0) / (A / sqrtmagic * Math.cos(radlat) * Math.PI);
    return [lon + dlon, lat + dlat];
  }

  // -- base maps ----------------------------------------------------------------------------------
  function rasterSource(tiles, attribution) {
    return {type: 'raster', tiles: tiles, tileSize: 256, attribution: attribution, maxzoom: 18};
  }

  function basemapSources(basemap, tiandituKey) {
    if (basemap === 'osm') {
      return {base: rasterSource(['https://tile.openstreetmap.org/{z}/{x}/{y}.png'], '© OpenStreetMap contributors')};
    }
    if (basemap === 'amap') {
      return {base: rasterSource([1, 2, 3, 4].map(function (s) {
        return 'https://webrd0' + s + '.is.autonavi.com/appmaptile?lang=zh_cn&size=1&scale=1&style=8&x={x}&y={y}&z={z}';
      }), '© 高德地图')};
    }
    if (basemap === 'tianditu') {
      var tdt = function (layer) {
        return [0, 1, 2, 3].map(function (s) {
          return 'https://t' + s + '.tianditu.gov.cn/' + layer + '_w/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0' +
            '&LAYER=' + layer + '&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}' +
            '&tk=' + encodeURIComponent(tiandituKey || '');
        });
      };
      return {base: rasterSource(tdt('vec'), '© 天地图'), labels: rasterSource(tdt('cva'), '© 天地图')};
    }
    return {};
  }

  // -- styles and legend --------------------------------------------------------------------------
  var GRID_COLOURS = ['match', ['get', 'status'], 'blank', '#d7301f', 'over-size', '#fc8d59', 'under-size', '#fdd49e',
    '#a6d96a'];
  var LIGHT_COLOURS = ['match', ['get', 'light'], 'red', '#e31a1c', 'yellow', '#ffbf00', 'green', '#33a02c', '#999999'];

  var LAYER_STYLES = {
    grids: [
      {type: 'fill', paint: {'fill-color': GRID_COLOURS, 'fill-opacity': 0.35}},
      {type: 'line', paint: {'line-color': '#555555', 'line-width': 1}}
    ],
    gaps: [{type: 'fill', paint: {'fill-color': '#7b3294', 'fill-opacity': 0.35, 'fill-outline-color': '#7b3294'}}],
    households: [
      {type: 'fill', filter: ['==', ['geometry-type'], 'Polygon'],
        paint: {'fill-color': ['interpolate', ['linear'], ['get', 'n'], 5, '#deebf7', 200, '#3182bd', 1000, '#08306b'],
          'fill-opacity': 0.5}},
      {type: 'circle', filter: ['==', ['geometry-type'], 'Point'],
        paint: {'circle-radius': 3, 'circle-color': '#3182bd', 'circle-stroke-color': '#ffffff', 'circle-stroke-width': 1}}
    ],
    members: [
      {type: 'fill', filter: ['==', ['geometry-type'], 'Polygon'],
        paint: {'fill-color': '#c51b8a', 'fill-opacity': 0.25}},
      {type: 'circle', filter: ['==', ['geometry-type'], 'Point'],
        paint: {'circle-radius': 4, 'circle-color': '#c51b8a', 'circle-stroke-color': '#ffffff', 'circle-stroke-width': 1}}
    ],
    centres: [{type: 'circle', paint: {'circle-radius': 7, 'circle-color': '#b30000', 'circle-stroke-color': '#ffffff',
      'circle-stroke-width': 2}}],
    incidents: [{type: 'circle', paint: {'circle-radius': 6, 'circle-color': LIGHT_COLOURS,
      'circle-stroke-color': '#333333', 'circle-stroke-width': 1}}]
  };

  var LEGEND = [
    ['grids', '#a6d96a', '网格（规模适中）'], ['grids', '#fdd49e', '网格（户数偏少）'], ['grids', '#fc8d59', '网格（户数过多）'],
    ['grids', '#d7301f', '空白网格'], ['households', '#3182bd', '住户（H3 格汇总，少于 5 户不显示）'],
    ['members', '#c51b8a', '党员'], ['centres', '#b30000', '党群服务中心'], ['incidents', '#e31a1c', '事件·红灯（超时）'],
    ['incidents', '#ffbf00', '事件·黄灯（临近时限）'], ['incidents', '#33a02c', '事件·绿灯（按时）'],
    ['gaps', '#7b3294', '未联户或 15 分钟服务圈外']
  ];
  var ALL_LAYERS = ['grids', 'gaps', 'households', 'members', 'centres', 'incidents'];
  var LAYER_NAMES = {grids: '网格', households: '住户', members: '党员', centres: '党群服务中心', incidents: '事件',
    gaps: '覆盖缺口'};
  var FIELD_NAMES = {id: '编号', name: '名称', code: '编码', community_name: '社区', households: '户数', members: '党员数',
    link_coverage_pct: '联户覆盖率 %', category: '类别', status: '状态', light: '红黄绿灯', phone: '电话',
    grid_code: '网格编码', size: '人口', kind: '类型', radius_m: '服务半径（米）', linked_households: '已联户数',
    reported_at: '上报时间', deadline_at: '时限', n: '数量', unlinked: '未联户', outside: '服务圈外'};

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  /** Screens at most this wide (CSS px) start with the legend folded: on a 390×844 phone it would cover a
   *  third of the map. */
  var NARROW_PX = 600;

  /** Layers drawn as points get a round swatch, so a centre (dark red dot) is not read as a blank grid. */
  var POINT_LAYERS = {centres: true, incidents: true, members: true};

  function legendRow(layer, colour, label) {
    var line = el('div');
    line.setAttribute('data-layer', layer);
    var swatch = el('span');
    swatch.style.cssText = 'display:inline-block;width:12px;height:12px;margin-right:6px;vertical-align:-2px;' +
      'border:1px solid rgba(0,0,0,.25);box-sizing:border-box;background:' + colour +
      (POINT_LAYERS[layer] ? ';border-radius:50%' : '');
    line.appendChild(swatch);
    line.appendChild(document.createTextNode(label));
    return line;
  }

  function legend(layers) {
    // <details>: folding and unfolding work by touch and keyboard with no script of ours
    var box = el('details', 'gridmap-legend');
    box.setAttribute('lang', 'zh-CN');
    box.open = !window.matchMedia('(max-width: ' + NARROW_PX + 'px)').matches;
    box.style.cssText = 'position:absolute;left:8px;bottom:24px;background:rgba(255,255,255,.92);padding:4px 8px;' +
      'font:12px/1.5 sans-serif;border-radius:4px;box-shadow:0 1px 4px rgba(0,0,0,.3);max-width:60%;z-index:2';
    var title = el('summary', null, '图例');
    title.style.cssText = 'cursor:pointer;font-weight:bold;padding:2px 0';
    title.title = '展开或收起图例';
    box.appendChild(title);
    LEGEND.forEach(function (row) {
      if (layers.indexOf(row[0]) >= 0) { box.appendChild(legendRow(row[0], row[1], row[2])); }
    });
    return box;
  }

  /** The legend lists only what is drawn: a layer's rows show while any of its style layers is meant to be
   *  visible (a page's switches go through map.setLayoutProperty; a deferred layer counts as meant), and the
   *  box hides when no row is left. Returns the function that re-reads the rows (after setLegend). */
  function trackLegend(map, box) {
    var hidden = {};  // style layer id → set to 'none'
    var sync = function () {
      var any = false;
      box.querySelectorAll('[data-layer]').forEach(function (row) {
        var on = styleIds(row.getAttribute('data-layer')).some(function (id) { return !hidden[id]; });
        row.hidden = !on;
        row.style.display = on ? '' : 'none';
        any = any || on;
      });
      box.hidden = !any;
      box.style.display = any ? '' : 'none';
    };
    var set = map.setLayoutProperty.bind(map);
    map.setLayoutProperty = function (id, name, value, options) {
      if (name === 'visibility') { hidden[id] = value === 'none'; sync(); }
      return set(id, name, value, options);
    };
    sync();
    return sync;
  }

  /** Replace the legend rows of `layer` by `rows` ([[colour, label], …]; null: the default rows), e.g. when a
   *  page colours the grids by another measure. */
  function setLegend(box, sync, layer, rows) {
    var old = box.querySelectorAll('[data-layer="' + layer + '"]');
    var next = old.length ? old[old.length - 1].nextSibling : null;
    var defaults = LEGEND.filter(function (r) { return r[0] === layer; }).map(function (r) { return [r[1], r[2]]; });
    old.forEach(function (row) { row.remove(); });
    (rows || defaults).forEach(function (r) { box.insertBefore(legendRow(layer, r[0], r[1]), next); });
    sync();
  }

  // -- requests -----------------------------------------------------------------------------------
  function origin(baseUrl) { return (baseUrl || window.location.origin).replace(/\/$/, ''); }

  function authHeaders(token) { return token ? {Authorization: 'Bearer ' + token} : {}; }

  function tileUrl(base, layer, basemap) {
    return base + '/tiles/' + layer + '/{z}/{x}/{y}.mvt' + (basemap === 'amap' ? '?coords=gcj02' : '');
  }

  function detailsPopup(map, base, token, layer, id, lngLat) {
    fetch(base + '/features/' + encodeURIComponent(layer) + '/' + encodeURIComponent(id),
      {headers: authHeaders(token), credentials: 'same-origin'})
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (data) {
        var box = el('div', 'gridmap-details');
        box.appendChild(el('strong', null, LAYER_NAMES[layer] || layer));
        var table = el('table');
        Object.keys(FIELD_NAMES).forEach(function (key) {
          if (data[key] === undefined || data[key] === null) { return; }
          var tr = el('tr');
          tr.appendChild(el('th', null, FIELD_NAMES[key]));
          tr.appendChild(el('td', null, data[key]));
          table.appendChild(tr);
        });
        box.appendChild(table);
        new window.maplibregl.Popup({maxWidth: '320px'}).setLngLat(lngLat).setDOMContent(box).addTo(map);
      })
      .catch(function () { /* a feature the caller may not open: no popup */ });
  }

  // -- grid name labels as HTML markers (no glyph server needed) ----------------------------------
  // Labels are placed from the tile geometry itself, so in Amap mode (tiles asked with ?coords=gcj02)
  // they carry exactly the server's GCJ-02 shift, like every other feature.
  function labelGrids(map, markers) {
    markers.splice(0).forEach(function (m) { m.remove(); });
    if (map.getZoom() < 14 || !map.getSource('grids')) { return; }
    var seen = {};
    map.querySourceFeatures('grids', {sourceLayer: 'grids'}).forEach(function (f) {
      var code = f.properties.code;
      if (seen[code] || !f.properties.name) { return; }
      var ring = f.geometry.type === 'Polygon' ? f.geometry.coordinates[0] : f.geometry.coordinates[0][0];
      var sx = 0, sy = 0;
      ring.forEach(function (p) { sx += p[0]; sy += p[1]; });
      seen[code] = true;
      var label = el('div', 'gridmap-label', f.properties.name);
      label.style.cssText = 'font:12px sans-serif;color:#222;text-shadow:0 0 3px #fff,0 0 3px #fff;pointer-events:none;' +
        'white-space:nowrap';
      markers.push(new window.maplibregl.Marker({element: label}).setLngLat([sx / ring.length, sy / ring.length])
        .addTo(map));
    });
  }

  /** Style layer ids of `layer` (e.g. grids → grids-0, grids-1). */
  function styleIds(layer) {
    return LAYER_STYLES[layer].map(function (spec, i) { return layer + '-' + i; });
  }

  function buildStyle(layers, basemap, tiandituKey, base, deferred) {
    var sources = basemapSources(basemap, tiandituKey);
    var styleLayers = [{id: 'background', type: 'background', paint: {'background-color': '#f4f3ef'}}];
    if (sources.base) { styleLayers.push({id: 'basemap', type: 'raster', source: 'base'}); }
    if (sources.labels) { styleLayers.push({id: 'basemap-labels', type: 'raster', source: 'labels'}); }
    layers.forEach(function (layer) {
      sources[layer] = {type: 'vector', tiles: [tileUrl(base, layer, basemap)], minzoom: 0, maxzoom: 22};
      LAYER_STYLES[layer].forEach(function (spec, i) {
        var l = {id: layer + '-' + i, type: spec.type, source: layer, 'source-layer': layer, paint: spec.paint};
        if (spec.filter) { l.filter = spec.filter; }
        // a source whose layers are all hidden asks for no tiles: deferred layers wait for the first frame
        if (deferred.indexOf(layer) >= 0) { l.layout = {visibility: 'none'}; }
        styleLayers.push(l);
      });
    });
    return {version: 8, sources: sources, layers: styleLayers};
  }

  function shiftBounds(bounds, basemap) {
    if (basemap !== 'amap') { return bounds; }
    var sw = wgs84ToGcj02(bounds[0], bounds[1]);
    var ne = wgs84ToGcj02(bounds[2], bounds[3]);
    return [sw[0], sw[1], ne[0], ne[1]];
  }

  /** Performance marks for measuring (bench/leader.py): `gridmap-map-load` when the style is in,
   *  `gridmap-first-tile-frame` at the first frame drawn after a grids tile arrived, and `gridmap-first-frame`
   *  at the first frame drawn with every visible grids tile loaded (the first idle when the map has no grids
   *  layer). */
  function markTimings(map, layers, onFirstFrame) {
    var mark = function (name) { if (window.performance && performance.mark) { performance.mark(name); } };
    map.once('styledata', function () { mark('gridmap-map-load'); });
    var source = layers.indexOf('grids') >= 0 ? 'grids' : null;
    var tiles = 0;
    var done = false;
    var finish = function () {
      done = true;
      mark('gridmap-first-frame');
      map.off('render', onRender);
      map.off('sourcedata', onData);
      onFirstFrame();
    };
    var onData = function (e) { if (e.sourceId === source && e.tile) { tiles += 1; } };
    var firstTile = false;
    var onRender = function () {
      if (!firstTile && tiles > 0) { firstTile = true; mark('gridmap-first-tile-frame'); }
      if (!done && source && tiles > 0 && map.isSourceLoaded(source)) { finish(); }
    };
    map.on('sourcedata', onData);
    map.on('render', onRender);
    map.once('idle', function () { if (!done) { finish(); } });
  }

  /** Show the deferred layers once the grids are drawn. Until then a caller's
   *  setLayoutProperty(id, 'visibility', v) on one of them only records v: 'none' keeps it hidden for good,
   *  'visible' (e.g. a page applying its checked switches at style.load) shows it with the others.
   *  Returns the function that shows them. */
  function deferLayers(map, deferred) {
    var waiting = {};
    deferred.forEach(function (layer) { styleIds(layer).forEach(function (id) { waiting[id] = true; }); });
    var set = map.setLayoutProperty.bind(map);
    map.setLayoutProperty = function (id, name, value, options) {
      if (name === 'visibility' && Object.prototype.hasOwnProperty.call(waiting, id)) {
        waiting[id] = value !== 'none';
        return map;
      }
      return set(id, name, value, options);
    };
    return function () {
      var shown = waiting;
      waiting = {};
      Object.keys(shown).forEach(function (id) { if (shown[id] && map.getLayer(id)) { set(id, 'visibility', 'visible'); } });
    };
  }

  /** Mount a live map in `element`; returns {map, destroy}.
   *  opts.deferLayers: true asks for the other layers' tiles only after the first frame of grids is drawn, so
   *  on a busy server the grids come first (pages that wait for 'idle' to print keep the default, false). */
  function mount(element, options) {
    var opts = options || {};
    var layers = (opts.layers || ALL_LAYERS).filter(function (l) { return LAYER_STYLES[l]; });
    var basemap = opts.basemap || 'none';
    var deferred = (opts.deferLayers !== true || layers.indexOf('grids') < 0) ? []
      : layers.filter(function (l) { return l !== 'grids'; });
    var base = origin(opts.baseUrl);
    var token = opts.token;
    var mapOptions = {
      container: element,
      style: buildStyle(layers, basemap, opts.tiandituKey, base, deferred),
      attributionControl: {compact: true},
      transformRequest: function (url) {
        // the token goes only to this service, never to a base-map provider
        return url.indexOf(base + '/') === 0 ? {url: url, headers: authHeaders(token), credentials: 'same-origin'}
          : {url: url};
      }
    };
    if (opts.bounds) { mapOptions.bounds = shiftBounds(opts.bounds, basemap); mapOptions.fitBoundsOptions = {padding: 20}; }
    else { mapOptions.center = [120.17, 30.28]; mapOptions.zoom = 12; }
    var map = new window.maplibregl.Map(mapOptions);
    map.addControl(new window.maplibregl.NavigationControl({showCompass: false}), 'top-right');
    if (getComputedStyle(element).position === 'static') { element.style.position = 'relative'; }
    var legendBox = legend(layers);
    element.appendChild(legendBox);
    var markers = [];
    markTimings(map, layers, deferLayers(map, deferred));
    var syncLegend = trackLegend(map, legendBox);
    map.on('idle', function () { labelGrids(map, markers); });
    layers.forEach(function (layer) {
      LAYER_STYLES[layer].forEach(function (spec, i) {
        var id = layer + '-' + i;
        map.on('click', id, function (e) {
          var f = e.features && e.features[0];
          var fid = f && (f.properties.id || f.properties.code);
          if (fid) { detailsPopup(map, base, token, layer, fid, e.lngLat); }
        });
        map.on('mouseenter', id, function () { map.getCanvas().style.cursor = 'pointer'; });
        map.on('mouseleave', id, function () { map.getCanvas().style.cursor = ''; });
      });
    });
    return {map: map, legend: legendBox,
      setLegend: function (layer, rows) { setLegend(legendBox, syncLegend, layer, rows); },
      destroy: function () { markers.forEach(function (m) { m.remove(); }); map.remove(); }};
  }

  window.GridmapMap = {mount: mount, wgs84ToGcj02: wgs84ToGcj02};
}());
