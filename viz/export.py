"""Exports of the twin for other tools: GeoParquet per level, CityJSON with storeys, Cesium (CZML), kepler.gl.

Every writer takes an open twin and an output path and returns what it wrote.
The Cesium and kepler.gl pages load their JavaScript from the npm packages
installed at set-up (links to, or copies of, the files they need, in a folder
beside the page) and ask nothing of the network: no Ion or Mapbox token, no
imagery, no terrain, no tiles; their only base map is the twin's own districts.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ciu.clock import utc
from ciu.errors import ConfigError, ValidationError
from ciu.viz.deck import ramp_colors
from ciu.viz.settings import default_js_dir

if TYPE_CHECKING:
    from ciu.twin import Twin

CITYJSON_VERSION = "2.0"


def _people_at(twin: Twin, level: str, when: pd.Timestamp | None, variable: str = "people") -> pd.Series:
    if when is None:
        return pd.Series(dtype=float)
    frame = twin.rollup(variable, level=level, start=when, end=when + timedelta(hours=1))
    return frame.set_index("code")["value"] if len(frame) else pd.Series(dtype=float)


def _when(twin: Twin, time: str | datetime | None) -> pd.Timestamp | None:
    if time is not None:
        return utc(time)
    from ciu.viz.deck import busiest_hour

    try:
        return pd.Timestamp(busiest_hour(twin))
    except ValueError:
        return None


# -- GeoParquet --------------------------------------------------------------------------------
def export_geoparquet(twin: Twin, out_dir: Path | str, *, include_restricted: bool = False) -> list[Path]:
    """One GeoParquet file per level (``<level>.parquet``); attributes as JSON text columns."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for level in twin.levels:
        units = twin.units(level=level, include_restricted=include_restricted).reset_index()
        units["attrs"] = [json.dumps(a or {}, sort_keys=True, default=str) for a in units["attrs"]]
        if include_restricted:
            units["restricted"] = [json.dumps(a or {}, sort_keys=True, default=str) for a in units["restricted"]]
        path = out / f"{level}.parquet"
        units.to_parquet(path, index=False, geometry_encoding="WKB", write_covering_bbox=True)
        paths.append(path)
    return paths


# -- CityJSON ------------------------------------------------------------------------------------
def _solid(ring: np.ndarray, z0: float, z1: float, vertices: list[list[int]], scale: float,
           origin: np.ndarray) -> list[list[list[int]]]:
    """A prism over ``ring`` (counter-clockwise, open) from ``z0`` to ``z1`` as one CityJSON shell."""
    n = len(ring)
    base = len(vertices)
    for z in (z0, z1):
        for x, y in ring:
            vertices.append([int(round((x - origin[0]) / scale)), int(round((y - origin[1]) / scale)),
                             int(round((z - origin[2]) / scale))])
    bottom = [[list(range(base + n - 1, base - 1, -1))]]  # facing down
    top = [[list(range(base + n, base + 2 * n))]]
    walls = [[[base + i, base + (i + 1) % n, base + n + (i + 1) % n, base + n + i]] for i in range(n)]
    return [bottom + top + walls]


def _ring_ccw(geom: shapely.Geometry, *, tolerance: float = 0.0) -> np.ndarray:
    """The outer ring, counter-clockwise and open, simplified by ``tolerance`` (in the geometry's units)."""
    poly = geom if geom.geom_type == "Polygon" else max(geom.geoms, key=lambda g: g.area)
    poly = shapely.geometry.polygon.orient(shapely.Polygon(poly.exterior), sign=1.0)
    if tolerance > 0:
        poly = poly.simplify(tolerance)
    return np.asarray(poly.exterior.coords)[:-1, :2]


def cityjson(twin: Twin, *, include_restricted: bool = False, scale: float = 0.001) -> dict[str, Any]:
    """Buildings as CityJSON 2.0 ``Building`` objects with their floors as ``BuildingStorey`` children.

    Geometry is LoD1 (footprint prisms) in the city's UTM zone; each storey
    spans its floor's ``z_min``–``z_max``.
    """
    structure, storey = twin.level_of_kind("structure"), twin.level_of_kind("storey")
    buildings = (twin.units(level=structure.name, include_restricted=include_restricted)
                 if structure is not None else None)
    if buildings is None or buildings.empty:
        raise ValidationError("the twin has no buildings to export", field="level")
    floors = twin.units(level=storey.name) if storey is not None else buildings.iloc[:0]
    crs = buildings.estimate_utm_crs()
    b_m = buildings.to_crs(crs)
    f_m = floors.to_crs(crs)
    x0, y0, _, _ = b_m.total_bounds
    origin = np.array([np.floor(x0), np.floor(y0), 0.0])
    vertices: list[list[int]] = []
    objects: dict[str, Any] = {}
    by_building = f_m.groupby("parent_code")
    for code, row in b_m.iterrows():
        ring = _ring_ccw(row.geometry, tolerance=0.01)
        z1 = float(row["z_max"] or (row["attrs"] or {}).get("height_m") or 3.0)
        attrs = {k: v for k, v in (row["attrs"] or {}).items() if v is not None}
        if include_restricted and isinstance(row.get("restricted"), dict):
            attrs.update(row["restricted"])
        attrs["ciu_code"] = code
        attrs["name"] = row["name"] or code
        children = []
        if code in by_building.groups:
            for fcode, frow in by_building.get_group(code).sort_values("z_min").iterrows():
                sid = f"{code}/storey/{fcode.rsplit('/', 1)[-1]}"
                children.append(sid)
                fz0, fz1 = float(frow["z_min"] or 0.0), float(frow["z_max"] or 0.0)
                objects[sid] = {
                    "type": "BuildingStorey", "parents": [code],
                    "attributes": {"ciu_code": fcode, "storey": (frow["attrs"] or {}).get("floor"),
                                   "use": (frow["attrs"] or {}).get("use"),
                                   "capacity": (frow["attrs"] or {}).get("capacity"),
                                   "z_min": fz0, "z_max": fz1},
                    "geometry": [{"type": "Solid", "lod": "1",
                                  "boundaries": _solid(_ring_ccw(frow.geometry, tolerance=0.01), fz0, fz1, vertices, scale, origin)}],
                }
        obj: dict[str, Any] = {
            "type": "Building", "attributes": attrs,
            "geometry": [{"type": "Solid", "lod": "1", "boundaries": _solid(ring, 0.0, z1, vertices, scale, origin)}],
        }
        if children:
            obj["children"] = children
        objects[code] = obj
    epsg = crs.to_epsg()
    return {
        "type": "CityJSON", "version": CITYJSON_VERSION,
        "transform": {"scale": [scale, scale, scale], "translate": origin.tolist()},
        "metadata": {"referenceSystem": f"https://www.opengis.net/def/crs/EPSG/0/{epsg}",
                     "title": str(twin.units(level=twin.levels[-1])["name"].iloc[0] or "CIU Twin")},
        "CityObjects": objects, "vertices": vertices,
    }


def export_cityjson(twin: Twin, out: Path | str, *, include_restricted: bool = False) -> Path:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cityjson(twin, include_restricted=include_restricted), separators=(",", ":")),
                    encoding="utf-8")
    return path


def _place(source: Path, target: Path, *, copy: bool) -> None:
    """Put ``source`` (a file or a folder) at ``target``: a symbolic link, or a copy with ``copy=True``."""
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        shutil.rmtree(target)
    if copy:
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)
    else:
        target.symlink_to(source.resolve(), target_is_directory=source.is_dir())


# -- Cesium --------------------------------------------------------------------------------------
def czml(twin: Twin, *, time: str | datetime | None = None, variable: str = "people") -> list[dict[str, Any]]:
    """Floors as extruded CZML polygons (``height`` = z_min, ``extrudedHeight`` = z_max), coloured by occupancy."""
    floors = twin.units(level=twin.levels[0])
    when = _when(twin, time)
    people = _people_at(twin, twin.levels[0], when, variable).reindex(floors.index).to_numpy(dtype=float)
    cap = np.array([float((a or {}).get("capacity") or np.nan) for a in floors["attrs"]])
    colors = ramp_colors(people / np.where(cap > 0, cap, np.nan), vmax=1.0, alpha=235)
    x0, y0, x1, y1 = floors.total_bounds
    doc: list[dict[str, Any]] = [{
        "id": "document", "name": "CIU Twin floors", "version": "1.0",
        "clock": {"currentTime": (when or pd.Timestamp("2000-01-01", tz="UTC")).isoformat()},
        "properties": {"bounds": [float(x0), float(y0), float(x1), float(y1)],
                       "time": None if when is None else when.isoformat()},
    }]
    areas = twin.units(level="district") if "district" in twin.levels else twin.units(level=twin.levels[-1])
    for code, row in areas.iterrows():  # the base map: the twin's own districts, on the ground
        ring = _ring_ccw(row.geometry)
        doc.append({
            "id": f"base/{code}", "name": row["name"] or code,
            "polygon": {"positions": {"cartographicDegrees": [v for x, y in ring for v in (float(x), float(y), 0.0)]},
                        "height": 0.0, "material": {"solidColor": {"color": {"rgba": [44, 52, 66, 255]}}},
                        "outline": True, "outlineColor": {"rgba": [150, 160, 180, 255]}},
        })
    for (code, row), value, c in zip(floors.iterrows(), people, colors.tolist()):
        ring = _ring_ccw(row.geometry)
        z0, z1 = float(row["z_min"] or 0.0), float(row["z_max"] or 0.0)
        doc.append({
            "id": code, "name": f"{row['name'] or code} ({code})",
            "description": f"people: {'n/a' if not np.isfinite(value) else round(float(value))}",
            "polygon": {
                "positions": {"cartographicDegrees": [v for x, y in ring for v in (float(x), float(y), z0)]},
                "height": z0, "extrudedHeight": z0 + (z1 - z0) * 0.94, "perPositionHeight": False,
                "material": {"solidColor": {"color": {"rgba": c}}}, "outline": False,
            },
        })
    return doc


CESIUM_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<script>window.CESIUM_BASE_URL = "{base}/";</script>
<script src="{base}/Cesium.js"></script>
<link rel="stylesheet" href="{base}/Widgets/widgets.css">
<style>html, body, #view {{ margin: 0; width: 100%; height: 100%; overflow: hidden; background: #11151c; }}</style>
</head><body><div id="view"></div>
<script>
Cesium.Ion.defaultAccessToken = "";
const viewer = new Cesium.Viewer("view", {{
  baseLayer: false, baseLayerPicker: false, geocoder: false, timeline: false, animation: false,
  homeButton: false, sceneModePicker: false, navigationHelpButton: false, fullscreenButton: false,
  infoBox: true, selectionIndicator: true, terrainProvider: new Cesium.EllipsoidTerrainProvider(),
  skyBox: false, skyAtmosphere: false, contextOptions: {{ webgl: {{ preserveDrawingBuffer: true }} }},
}});
viewer.scene.globe.baseColor = Cesium.Color.fromCssColorString("#2a3140");
viewer.scene.backgroundColor = Cesium.Color.fromCssColorString("#11151c");
window.ciuReady = false;
Cesium.CzmlDataSource.load("{czml}").then(function (source) {{
  viewer.dataSources.add(source);
  return viewer.flyTo(source, {{ duration: 0, offset: new Cesium.HeadingPitchRange(0.4, -0.75, 0) }});
}}).then(function () {{
  viewer.scene.requestRender();
  window.ciuEntities = viewer.dataSources.get(0).entities.values.filter(function (e) {{
    return e.id.indexOf("base/") !== 0; }}).length;
  window.ciuReady = true;
}});
</script></body></html>
"""


def export_cesium(twin: Twin, out_dir: Path | str, *, time: str | datetime | None = None, copy: bool = False,
                  js_dir: Path | None = None) -> Path:
    """Write ``floors.czml`` and a Cesium viewer ``index.html`` into ``out_dir``; returns the page.

    The page loads Cesium from ``out_dir/cesium``: a link to the npm package's
    build (``copy=True`` copies it, about 25 MB, for a directory to hand over).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    build = (js_dir or default_js_dir()) / "cesium" / "Build" / "Cesium"
    if not (build / "Cesium.js").is_file():
        raise ConfigError(f"the npm package cesium is not installed ({build}); run `make setup`")
    _place(build, out / "cesium", copy=copy)
    (out / "floors.czml").write_text(json.dumps(czml(twin, time=time)), encoding="utf-8")
    page = out / "index.html"
    page.write_text(CESIUM_PAGE.format(title="CIU Twin · Cesium", base="cesium", czml="floors.czml"),
                    encoding="utf-8")
    return page


# -- kepler.gl -----------------------------------------------------------------------------------
def _fit_zoom(bounds: np.ndarray, *, width: int = 1280, height: int = 800, margin: float = 0.6) -> float:
    """The web-map zoom at which ``bounds`` (lon/lat) fill ``margin`` of a ``width`` × ``height`` view."""
    x0, y0, x1, y1 = (float(v) for v in bounds)
    lat = np.radians((y0 + y1) / 2)
    span_x = max(x1 - x0, 1e-6) / 360.0
    span_y = max(y1 - y0, 1e-6) / 360.0 / np.cos(lat)
    return float(np.clip(np.log2(margin * min(width / span_x, height / span_y) / 512.0), 1.0, 20.0))


def kepler_map(twin: Twin, *, level: str | None = None, time: str | datetime | None = None,
               variable: str = "people") -> dict[str, Any]:
    """A kepler.gl map file (``{"datasets", "config", "info"}``, version v1) of one level with people.

    ``level`` defaults to the twin's structures (buildings), else its bottom
    level. Load it in kepler.gl with "Add data" → the JSON file; it asks for no
    base map.
    """
    if level is None:
        structure = twin.level_of_kind("structure")
        level = structure.name if structure is not None else twin.levels[0]
    units = twin.units(level=level)
    extruded = twin.level(level).kind == "structure"
    when = _when(twin, time)
    people = _people_at(twin, level, when, variable).reindex(units.index)
    fields = [{"name": "code", "type": "string"}, {"name": "name", "type": "string"},
              {"name": "people", "type": "real"}, {"name": "height", "type": "real"},
              {"name": "_geojson", "type": "geojson"}]
    rows = []
    for (code, row), value in zip(units.iterrows(), people.to_numpy(dtype=float)):
        rows.append([code, row["name"] or code, None if not np.isfinite(value) else float(value),
                     float(row["z_max"] or 0.0) if "z_max" in row else 0.0, shapely.geometry.mapping(row.geometry)])
    x0, y0, x1, y1 = units.total_bounds
    heights = [r[3] for r in rows] or [0.0]
    dataset_id = f"ciu_{level}"
    layer = {
        "id": f"{level}-layer", "type": "geojson",
        "config": {
            "dataId": dataset_id, "label": f"{level} · {variable}", "columns": {"geojson": "_geojson"},
            "isVisible": True,
            # heights map linearly onto heightRange: the heights themselves, in metres
            "visConfig": {"opacity": 0.85, "filled": True, "stroked": True, "extruded": extruded,
                          "elevationScale": 1, "enable3d": extruded,
                          "heightRange": [min(heights), max(heights)]},
        },
        "visualChannels": {"colorField": {"name": "people", "type": "real"}, "colorScale": "quantile",
                           "heightField": {"name": "height", "type": "real"} if extruded else None,
                           "heightScale": "linear"},
    }
    return {
        "datasets": [{"version": "v1", "data": {"id": dataset_id, "label": f"CIU Twin {level}s",
                                                 "allData": rows, "fields": fields}}],
        "config": {"version": "v1", "config": {
            "visState": {"layers": [layer], "filters": [], "interactionConfig": {"tooltip": {
                "enabled": True, "fieldsToShow": {dataset_id: [{"name": "code", "format": None},
                                                               {"name": "people", "format": None}]}}}},
            "mapState": {"latitude": float((y0 + y1) / 2), "longitude": float((x0 + x1) / 2),
                         "zoom": _fit_zoom(units.total_bounds),
                         "pitch": 45 if extruded else 0, "bearing": 0, "dragRotate": True},
            "mapStyle": {"styleType": "no_map"},
        }},
        "info": {"app": "kepler.gl", "created_at": datetime.now().isoformat(timespec="seconds"),
                 "title": f"CIU Twin {level}s", "source": "ciu export kepler",
                 "time": None if when is None else when.isoformat()},
    }


def _swatch(color: str) -> str:
    """A square of ``color`` as an SVG data URL (kepler.gl shows one beside each base map)."""
    svg = (f"<svg xmlns='http://www.w3.org/2000/svg' width='64' height='64'>"
           f"<rect width='64' height='64' fill='{color}'/></svg>")
    return "data:image/svg+xml," + svg.replace("<", "%3C").replace(">", "%3E").replace("#", "%23")


def kepler_base_maps(twin: Twin) -> list[dict[str, Any]]:
    """The base maps offered by the kepler.gl page: the twin's districts, or none; inline styles, no tiles.

    Each is a kepler.gl map style (``id``, ``label``, ``icon``, ``style``) whose
    ``style`` is a MapLibre style with a background and, for the first, the
    districts as a GeoJSON source: nothing for the browser to fetch. Its layer
    ids match none of kepler.gl's base-map layer groups (whose "border" group
    is hidden by default), so they are always drawn.
    """
    background = {"id": "background", "type": "background", "paint": {"background-color": "#11151c"}}
    areas = twin.units(level="district") if "district" in twin.levels else twin.units(level=twin.levels[-1])
    districts = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"code": code, "name": row["name"] or code},
         "geometry": shapely.geometry.mapping(row.geometry)} for code, row in areas.iterrows()]}
    return [
        {"id": "ciu-districts", "label": "Districts", "icon": _swatch("#2a3140"), "style": {
            "version": 8, "name": "CIU Twin districts",
            "sources": {"districts": {"type": "geojson", "data": districts}},
            "layers": [background,
                       {"id": "district-fill", "type": "fill", "source": "districts",
                        "paint": {"fill-color": "#2a3140"}},
                       {"id": "district-outline", "type": "line", "source": "districts",
                        "paint": {"line-color": "#6b7a90", "line-width": 1}}]}},
        {"id": "ciu-none", "label": "No base map", "icon": _swatch("#11151c"),
         "style": {"version": 8, "name": "No base map", "sources": {}, "layers": [background]}},
    ]


#: what the kepler.gl page loads, in order: its folder's file name → the file in node_modules
KEPLER_ASSETS = {
    "keplergl.min.css": "kepler.gl/umd/keplergl.min.css",
    "react.production.min.js": "react/umd/react.production.min.js",
    "react-dom.production.min.js": "react-dom/umd/react-dom.production.min.js",
    "redux.min.js": "redux/dist/redux.min.js",
    "react-redux.min.js": "react-redux/dist/react-redux.min.js",
    "styled-components.min.js": "styled-components/dist/styled-components.min.js",
    "keplergl.min.js": "kepler.gl/umd/keplergl.min.js",
}

KEPLER_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
{head}
<style>html, body, #app {{ margin: 0; width: 100%; height: 100%; overflow: hidden; background: #11151c; }}</style>
</head><body><div id="app"></div>
<script type="application/json" id="ciu-map">{map}</script>
<script type="application/json" id="ciu-base-maps">{base_maps}</script>
<script>{app}</script>
</body></html>
"""

KEPLER_APP = """
// kepler.gl looks for its icon set under cdnUrl: the folder beside this page, not its CDN
KeplerGl.initApplicationConfig({cdnUrl: "kepler", showReleaseBanner: false});
const map = JSON.parse(document.getElementById("ciu-map").textContent);
const baseMaps = JSON.parse(document.getElementById("ciu-base-maps").textContent);
const store = Redux.createStore(
  Redux.combineReducers({
    keplerGl: KeplerGl.keplerGlReducer.initialState({mapStyle: {styleType: baseMaps[0].id}}),
  }),
  {},
  Redux.applyMiddleware(...KeplerGl.enhanceReduxMiddleware([])),
);

function App() {
  const [size, setSize] = React.useState({width: window.innerWidth, height: window.innerHeight});
  React.useEffect(function () {
    const resize = function () { setSize({width: window.innerWidth, height: window.innerHeight}); };
    window.addEventListener("resize", resize);
    return function () { window.removeEventListener("resize", resize); };
  }, []);
  return React.createElement(KeplerGl.KeplerGl, {
    id: "map", width: size.width, height: size.height, mapboxApiAccessToken: "",
    mapStyles: baseMaps, mapStylesReplaceDefault: true,
  });
}

// The map goes in once kepler.gl has registered its instance ("map") in the store.
window.ciuReady = false;
const stop = store.subscribe(function () {
  if (!store.getState().keplerGl.map) { return; }
  stop();
  const loaded = KeplerGl.KeplerGlSchema.load(map.datasets, map.config);
  store.dispatch(KeplerGl.addDataToMap({
    datasets: loaded.datasets, config: loaded.config, options: {centerMap: false},
  }));
  window.ciuStore = store;
  window.ciuReady = true;
});
ReactDOM.createRoot(document.getElementById("app")).render(
  React.createElement(ReactRedux.Provider, {store: store}, React.createElement(App)));
"""


def _inline_json(value: Any) -> str:
    """JSON to sit inside a ``<script>`` element: ``</`` cannot close it early."""
    return json.dumps(value, separators=(",", ":")).replace("</", "<\\/")


def export_kepler(twin: Twin, out_dir: Path | str, *, level: str | None = None, time: str | datetime | None = None,
                  copy: bool = False, js_dir: Path | None = None) -> Path:
    """Write the kepler.gl map file ``kepler.json`` and a kepler.gl page ``index.html`` into ``out_dir``.

    The page holds the map (data and config) and opens it in kepler.gl itself,
    on the twin's districts as its base map. kepler.gl and React, Redux and
    styled-components load from ``out_dir/kepler``: links to the npm files
    installed at set-up (``copy=True`` copies them, about 17 MB). Returns the page.
    """
    out = Path(out_dir)
    js = js_dir or default_js_dir()
    missing = [name for name in KEPLER_ASSETS.values() if not (js / name).is_file()]
    if missing:
        raise ConfigError(f"npm files for the kepler.gl page are missing in {js}: {', '.join(missing)};"
                          " run `make setup`")
    doc = kepler_map(twin, level=level, time=time)
    base_maps = kepler_base_maps(twin)
    out.mkdir(parents=True, exist_ok=True)
    (out / "kepler.json").write_text(json.dumps(doc), encoding="utf-8")
    assets = out / "kepler"
    if assets.is_symlink() or assets.is_file():
        assets.unlink()
    (assets / "icons").mkdir(parents=True, exist_ok=True)
    for name, source in KEPLER_ASSETS.items():
        _place(js / source, assets / name, copy=copy)
    # kepler.gl's icon layer asks for an icon set; offline it has none
    (assets / "icons" / "svg-icons.json").write_text(json.dumps({"svgIcons": []}), encoding="utf-8")
    head = "\n".join(f'<link rel="stylesheet" href="kepler/{name}">' if name.endswith(".css")
                     else f'<script src="kepler/{name}"></script>' for name in KEPLER_ASSETS)
    page_doc = {**doc, "config": {**doc["config"], "config": {
        **doc["config"]["config"], "mapStyle": {"styleType": base_maps[0]["id"]}}}}
    page = out / "index.html"
    page.write_text(KEPLER_PAGE.format(title=f"CIU Twin · kepler.gl · {level}s", head=head,
                                       map=_inline_json(page_doc), base_maps=_inline_json(base_maps),
                                       app=KEPLER_APP), encoding="utf-8")
    return page


def read_geoparquet(path: Path | str) -> gpd.GeoDataFrame:
    """Read one exported level back (attributes decoded from JSON)."""
    frame = gpd.read_parquet(path)
    for col in ("attrs", "restricted"):
        if col in frame.columns:
            frame[col] = [json.loads(v) for v in frame[col]]
    return frame
