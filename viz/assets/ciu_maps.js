/* Renders the dashboard's maps with deck.gl (and maplibre for the flat base map), from the
   JSON that viz/layers.py builds. Everything is served by the dashboard itself: no network. */
(function () {
  "use strict";
  const maps = {};

  function rgb(c) { return "rgb(" + c[0] + "," + c[1] + "," + c[2] + ")"; }

  function baseDeckLayers(payload) {
    return payload.base.map(function (b) {
      return new deck.PolygonLayer({
        id: b.id, data: b.data, getPolygon: function (d) { return d.polygon; },
        filled: b.filled, stroked: true, getFillColor: b.fill, getLineColor: b.line,
        lineWidthMinPixels: b.line_px, pickable: false,
      });
    });
  }

  function baseStyle(payload) {
    const sources = {};
    const layers = [{ id: "background", type: "background", paint: { "background-color": "#11151c" } }];
    payload.base.forEach(function (b) {
      sources[b.id] = {
        type: "geojson",
        data: {
          type: "FeatureCollection",
          features: b.data.map(function (d) {
            return { type: "Feature", properties: { code: d.code }, geometry: { type: "Polygon", coordinates: d.polygon } };
          }),
        },
      };
      if (b.filled) {
        layers.push({ id: b.id + "-fill", type: "fill", source: b.id, paint: { "fill-color": rgb(b.fill) } });
      }
      layers.push({ id: b.id + "-line", type: "line", source: b.id,
                    paint: { "line-color": rgb(b.line), "line-width": b.line_px } });
    });
    return { version: 8, sources: sources, layers: layers };
  }

  function unitLayer(payload, step) {
    const L = payload.layer;
    const colors = payload.colors[Math.max(0, Math.min(step, payload.colors.length - 1))] || [];
    return new deck.PolygonLayer({
      id: L.id, data: L.data, getPolygon: function (d) { return d.polygon; },
      extruded: L.extruded, wireframe: L.extruded, stroked: !L.extruded, filled: true,
      getElevation: function (d) { return d.height || 0; },
      getFillColor: function (d, info) { return colors[info.index] || [160, 160, 160, 200]; },
      getLineColor: [15, 15, 20, 200], lineWidthMinPixels: L.extruded ? 0 : 1,
      pickable: true, autoHighlight: true, highlightColor: [70, 170, 255, 220],
      updateTriggers: { getFillColor: [payload.key, step] },
    });
  }

  /* The view of the payload, fitted to the element's size when the payload gives bounds. */
  function fitted(payload, el) {
    const v = Object.assign({}, payload.view);
    const b = v.bounds;
    delete v.bounds;
    if (b && el.clientWidth > 0 && el.clientHeight > 0) {
      const vp = new deck.WebMercatorViewport({ width: el.clientWidth, height: el.clientHeight });
      const fit = vp.fitBounds([[b[0], b[1]], [b[2], b[3]]], { padding: Math.min(40, el.clientHeight / 8) });
      v.longitude = fit.longitude;
      v.latitude = fit.latitude;
      v.zoom = Math.min(18, fit.zoom + (v.pitch ? 0.4 : 0));
    }
    return v;
  }

  function onClick(clickId) {
    return function (info) {
      if (info && info.object && info.object.code && window.dash_clientside && window.dash_clientside.set_props) {
        window.dash_clientside.set_props(clickId, {
          data: { code: info.object.code, layer: info.layer ? info.layer.id : null, at: Date.now() },
        });
      }
      return true;
    };
  }

  function tooltip(payloadRef) {
    return function (info) {
      if (!info || !info.object) { return null; }
      const p = payloadRef.payload;
      const v = p.values[Math.min(p.step, p.values.length - 1)][info.index];
      return { text: (info.object.name || info.object.code) + "\n" + info.object.code +
               (v === null || v === undefined ? "" : "\n" + (p.label || "value") + ": " + v) };
    };
  }

  /* Draw ``payload`` at time step ``step`` into the element ``elementId``; clicks on the units
     set the data of the dcc.Store ``clickId``. Returns a short text saying what is drawn. */
  function render(payload, step, elementId, clickId, options) {
    const el = document.getElementById(elementId);
    if (!payload || !el || typeof deck === "undefined") { return "waiting"; }
    step = step === null || step === undefined ? payload.n_history - 1 : step;
    let m = maps[elementId];
    if (m && m.el !== el) { // the page was left and entered again: start over
      if (m.map) { m.map.remove(); } else if (m.deck) { m.deck.finalize(); }
      m = null;
    }
    const useBase = options && options.basemap && typeof maplibregl !== "undefined";
    if (!m) {
      m = { el: el, key: null, ref: { payload: null } };
      const view = fitted(payload, el);
      if (useBase) {
        m.map = new maplibregl.Map({
          container: el, style: baseStyle(payload), attributionControl: false,
          center: [view.longitude, view.latitude], zoom: view.zoom,
          pitch: view.pitch, bearing: view.bearing, canvasContextAttributes: { preserveDrawingBuffer: true },
        });
        m.deck = new deck.MapboxOverlay({ interleaved: false, layers: [], onClick: onClick(clickId), getTooltip: tooltip(m.ref) });
        m.map.addControl(m.deck);
      } else {
        m.deck = new deck.Deck({
          parent: el, initialViewState: view, controller: true, layers: [],
          onClick: onClick(clickId), getTooltip: tooltip(m.ref), glOptions: { preserveDrawingBuffer: true },
          style: { position: "absolute", left: 0, top: 0 }, width: "100%", height: "100%",
        });
      }
      maps[elementId] = m;
    }
    m.ref.payload = payload;
    payload.step = step;
    if (m.key !== payload.key) {
      const view = fitted(payload, el);
      if (m.map) {
        m.map.jumpTo({ center: [view.longitude, view.latitude], zoom: view.zoom, pitch: view.pitch,
                       bearing: view.bearing });
      } else {
        m.deck.setProps({ initialViewState: Object.assign(view, { transitionDuration: 0 }) });
      }
      m.key = payload.key;
    }
    const layers = (m.map ? [] : baseDeckLayers(payload)).concat([unitLayer(payload, step)]);
    m.deck.setProps({ layers: layers });
    m.payload = payload;
    return payload.key + "@" + step;
  }

  /* Screen position (in the map element) of a unit's centre: lets tests click a floor. */
  function screenOf(elementId, code) {
    const m = maps[elementId];
    if (!m || !m.payload) { return null; }
    const d = m.payload.layer.data.find(function (x) { return x.code === code; });
    if (!d) { return null; }
    const ring = d.polygon[0];
    let x = 0, y = 0;
    ring.forEach(function (c) { x += c[0]; y += c[1]; });
    const z = (ring[0][2] || 0) + (d.height || 0) / 2;
    const viewport = m.map ? null : m.deck.getViewports()[0];
    if (viewport) { return viewport.project([x / ring.length, y / ring.length, z]); }
    const p = m.map.project([x / ring.length, y / ring.length]);
    return [p.x, p.y];
  }

  window.ciu = { render: render, screenOf: screenOf, maps: maps };
})();
