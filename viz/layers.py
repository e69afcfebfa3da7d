"""Pure builders of what the dashboard's maps draw: plain JSON for the deck.gl renderer in ``assets/``.

No database and no I/O here: every function maps frames and arrays to
dictionaries and lists that the browser turns into deck.gl layers, so they are
tested without a browser.
"""

from __future__ import annotations

from typing import Any

import geopandas as gpd
import numpy as np
import shapely

from ciu.viz.deck import RAMP, ramp_colors

#: a diverging ramp for differences (blue: fewer, grey: same, red: more)
DIVERGING = np.array([[33, 102, 172], [103, 169, 207], [209, 229, 240], [200, 200, 200],
                      [253, 219, 199], [239, 138, 98], [178, 24, 43]], dtype=float)
BASE_FILL = [34, 40, 52, 255]
BASE_LINE = [120, 132, 150, 255]
GRID_LINE = [80, 92, 110, 200]
#: units that hold nobody (no capacity) or have no value: a muted slate
NO_CAPACITY = [70, 80, 96, 110]


def rings(geom: shapely.Geometry, *, z: float | None = None, digits: int = 6) -> list[list[list[float]]]:
    """Outer ring of a polygon (the largest part of a multipolygon), optionally at height ``z``."""
    poly = geom if geom.geom_type == "Polygon" else max(geom.geoms, key=lambda g: g.area)
    coords = np.round(np.asarray(poly.exterior.coords)[:, :2], digits)
    if z is not None:
        coords = np.c_[coords, np.full(len(coords), round(float(z), 2))]
    return [coords.tolist()]


def density_colors(density: np.ndarray, *, vmax: float = 1.0, alpha: int = 220) -> list[list[list[int]]]:
    """RGBA per unit and time step for a ``units × times`` density matrix, as ``times × units × 4``."""
    density = np.asarray(density, dtype=float)
    flat = ramp_colors(density.T.reshape(-1), vmax=vmax, alpha=alpha)
    flat[~np.isfinite(density.T.reshape(-1))] = NO_CAPACITY
    return flat.reshape(density.shape[1], density.shape[0], 4).tolist()


def difference_colors(diff: np.ndarray, *, scale: float | None = None, alpha: int = 230) -> list[list[int]]:
    """RGBA for signed differences on :data:`DIVERGING`, symmetric around zero."""
    diff = np.asarray(diff, dtype=float)
    top = scale if scale is not None else float(np.nanmax(np.abs(diff))) if np.isfinite(diff).any() else 1.0
    top = top if top > 0 else 1.0
    x = (np.clip(np.nan_to_num(diff) / top, -1, 1) + 1) / 2 * (len(DIVERGING) - 1)
    lo = np.floor(x).astype(int)
    hi = np.minimum(lo + 1, len(DIVERGING) - 1)
    frac = (x - lo)[:, None]
    rgb = DIVERGING[lo] * (1 - frac) + DIVERGING[hi] * frac
    return np.c_[rgb, np.full(len(diff), alpha)].astype(int).tolist()


def legend(*, vmax: float = 1.0, steps: int = 5) -> list[dict[str, Any]]:
    """Swatches of the density ramp for a legend."""
    values = np.linspace(0, vmax, steps)
    return [{"label": f"{v:.0%}", "color": c[:3]} for v, c in zip(values, ramp_colors(values, vmax=vmax).tolist())]


def view_of(units: gpd.GeoDataFrame, *, pitch: float = 0.0, bearing: float = 0.0) -> dict[str, float]:
    """A deck.gl view state that frames ``units``."""
    x0, y0, x1, y1 = units.total_bounds
    span = max(x1 - x0, (y1 - y0) * 1.6, 1e-4)
    zoom = float(np.clip(np.log2(360.0 / span) + 0.6, 3, 19))
    return {"longitude": float((x0 + x1) / 2), "latitude": float((y0 + y1) / 2), "zoom": round(zoom, 2),
            "pitch": pitch, "bearing": bearing, "bounds": [float(x0), float(y0), float(x1), float(y1)]}


def base_layers(areas: dict[str, gpd.GeoDataFrame]) -> list[dict[str, Any]]:
    """Flat outlines of the twin's own areas (districts, grid cells …): the base map, no tiles.

    ``areas`` maps a layer id to the units it draws, bottom layer first.
    """
    out = []
    for i, (name, frame) in enumerate(areas.items()):
        out.append({
            "id": f"base-{name}", "kind": "base",
            "data": [{"code": code, "name": row["name"] or code, "polygon": rings(row.geometry)}
                     for code, row in frame.iterrows()],
            "filled": i == 0, "fill": BASE_FILL, "line": BASE_LINE if i == 0 else GRID_LINE,
            "line_px": 1.5 if i == 0 else 0.6,
        })
    return out


def unit_layer(units: gpd.GeoDataFrame, *, layer_id: str = "units", reference: np.ndarray | None = None
               ) -> dict[str, Any]:
    """The flat, pickable layer of the current level's units (colours come per time step).

    ``reference`` is what 100 % means for each unit (its capacity, or its recent peak).
    """
    ref = np.full(len(units), np.nan) if reference is None else np.asarray(reference, dtype=float)
    data = []
    for i, (code, row) in enumerate(units.iterrows()):
        data.append({"code": code, "name": row["name"] or code, "level": row["level"], "polygon": rings(row.geometry),
                     "reference": None if not np.isfinite(ref[i]) else round(float(ref[i]))})
    return {"id": layer_id, "kind": "units", "data": data, "extruded": False}


def floor_layer(floors: gpd.GeoDataFrame, *, layer_id: str = "floors", gap: float = 0.92) -> dict[str, Any]:
    """Floors extruded one above the other: each ring sits at ``z_min``, extruded ``(z_max − z_min) · gap``."""
    data = []
    for code, row in floors.iterrows():
        z0 = float(row["z_min"] if row["z_min"] is not None and np.isfinite(row["z_min"]) else 0.0)
        z1 = float(row["z_max"] if row["z_max"] is not None and np.isfinite(row["z_max"]) else z0 + 3.0)
        data.append({"code": code, "name": row["name"] or code, "level": row["level"],
                     "building": row["parent_code"], "polygon": rings(row.geometry, z=z0),
                     "height": round(max(0.1, (z1 - z0) * gap), 2)})
    return {"id": layer_id, "kind": "floors", "data": data, "extruded": True}


def frame_payload(layer: dict[str, Any], *, base: list[dict[str, Any]], times: list[str], n_history: int,
                  values: np.ndarray, density: np.ndarray, view: dict[str, float], key: str, label: str,
                  vmax: float = 1.0, tz: str = "UTC") -> dict[str, Any]:
    """Everything the renderer needs for one map at every time step.

    Parameters
    ----------
    layer
        The pickable layer (:func:`unit_layer` or :func:`floor_layer`).
    base
        Base-map layers (:func:`base_layers`).
    times
        ISO times of the steps: history first, then forecasts.
    n_history
        How many of ``times`` are observed (the rest are forecasts).
    values, density
        ``units × times`` values and values per capacity (or per recent peak); NaN where unknown.
    view
        The view state to fly to when ``key`` changes.
    key
        Identifies what is drawn (level and drill-down); a new key re-frames the view.
    label
        What the values are (the variable's name), for the tooltip.
    tz
        The city's time zone: the time labels are local.
    """
    values = np.asarray(values, dtype=float)
    return {
        "key": key, "view": view, "base": base, "layer": layer, "times": times, "n_history": int(n_history),
        "label": label, "tz": tz,
        "colors": density_colors(density, vmax=vmax),
        "values": [[None if not np.isfinite(v) else round(float(v), 1) for v in col] for col in values.T],
    }


def difference_payload(layer: dict[str, Any], *, base: list[dict[str, Any]], diff: np.ndarray,
                       view: dict[str, float], key: str) -> dict[str, Any]:
    """One map of scenario − baseline differences, in the same shape as :func:`frame_payload` (one step)."""
    diff = np.asarray(diff, dtype=float)
    return {
        "key": key, "view": view, "base": base, "layer": layer, "times": ["difference"], "n_history": 0,
        "label": "difference",
        "colors": [difference_colors(diff)],
        "values": [[round(float(v), 1) for v in np.nan_to_num(diff)]],
    }


def ramp_css(*, steps: int = 8) -> str:
    """A CSS linear gradient of the density ramp (for the legend bar)."""
    stops = ", ".join(f"rgb({int(r)},{int(g)},{int(b)})" for r, g, b in RAMP[:: max(1, len(RAMP) // steps)])
    return f"linear-gradient(to right, {stops})"
