"""Pure deck builders for the 3D views, and an offline HTML writer.

Everything a page shows is built here by functions of data (no database, no
I/O), so they can be tested and reused by the dashboard and the notebooks.
The HTML written by :func:`offline_html` loads nothing from the network: the
deck.gl bundle shipped with pydeck is inlined and every CDN reference pydeck's
template would add is removed.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd
import pydeck as pdk

from ciu.clock import local_label, utc

if TYPE_CHECKING:
    from ciu.twin import Twin

#: a sequential ramp (light yellow → orange → dark red), 0..1 → RGB
RAMP = np.array([
    [255, 255, 204], [255, 237, 160], [254, 217, 118], [254, 178, 76],
    [253, 141, 60], [252, 78, 42], [227, 26, 28], [177, 0, 38],
], dtype=float)

_EXTERNAL = re.compile(r"<(script|link)[^>]*(src|href)=[\"']?https?://[^>]*>(\s*</script>)?", re.IGNORECASE)


def ramp_colors(values: np.ndarray, *, vmax: float | None = None, alpha: int = 230) -> np.ndarray:
    """RGBA colours for ``values`` on :data:`RAMP`, scaled to ``[0, vmax]`` (NaN → grey)."""
    values = np.asarray(values, dtype=float)
    top = vmax if vmax is not None else (np.nanmax(values) if np.isfinite(values).any() else 1.0)
    top = top if top > 0 else 1.0
    x = np.clip(np.nan_to_num(values, nan=0.0) / top, 0, 1) * (len(RAMP) - 1)
    lo = np.floor(x).astype(int)
    hi = np.minimum(lo + 1, len(RAMP) - 1)
    frac = (x - lo)[:, None]
    rgb = RAMP[lo] * (1 - frac) + RAMP[hi] * frac
    out = np.c_[rgb, np.full(len(values), alpha)].astype(int)
    out[~np.isfinite(values)] = [160, 160, 160, alpha]
    return out


def _rings(geom) -> list[list[list[float]]]:
    poly = geom if geom.geom_type == "Polygon" else max(geom.geoms, key=lambda g: g.area)
    return [[list(c[:2]) for c in poly.exterior.coords]]


def floor_records(floors: gpd.GeoDataFrame, people: pd.Series, *, vmax: float | None = None) -> list[dict]:
    """One record per floor for an extruded PolygonLayer: outline at ``z_min``, height, colour.

    ``people`` is indexed by floor code; ``floors`` by code with ``z_min``,
    ``z_max``, ``name``, ``attrs`` and polygon geometry.
    """
    values = people.reindex(floors.index).to_numpy(dtype=float)
    capacity = np.array([a.get("capacity", np.nan) if isinstance(a, dict) else np.nan for a in floors["attrs"]],
                        dtype=float)
    density = values / np.where(capacity > 0, capacity, np.nan)
    colors = ramp_colors(density, vmax=vmax if vmax is not None else 1.0)
    records = []
    for (code, row), value, share, color in zip(floors.iterrows(), values, density, colors):
        z0 = float(row["z_min"] or 0.0)
        ring = [[x, y, z0] for x, y in _rings(row.geometry)[0]]
        attrs = row["attrs"] if isinstance(row["attrs"], dict) else {}
        records.append({
            "code": code, "name": row["name"] or code, "polygon": [ring],
            "height": max(0.1, float(row["z_max"] - z0) * 0.92),
            "color": color.tolist(),
            "people": None if np.isnan(value) else int(round(value)),
            "occupancy": "n/a" if np.isnan(share) else f"{share:.0%}",
            "use": attrs.get("use", ""),
        })
    return records


def area_records(areas: gpd.GeoDataFrame) -> list[dict]:
    """Outlines of areas (districts, zones) for the flat base map."""
    return [{"code": code, "name": row["name"] or code, "polygon": _rings(row.geometry)}
            for code, row in areas.iterrows()]


def floors_deck(floors: gpd.GeoDataFrame, people: pd.Series, districts: gpd.GeoDataFrame, *,
                title: str = "", pitch: float = 50, bearing: float = -20) -> pdk.Deck:
    """A 3D deck: floors extruded one above the other, coloured by occupancy, over district outlines."""
    bounds = floors.total_bounds if len(floors) else districts.total_bounds
    view = pdk.ViewState(longitude=float((bounds[0] + bounds[2]) / 2), latitude=float((bounds[1] + bounds[3]) / 2),
                         zoom=14.2, pitch=pitch, bearing=bearing)
    base = pdk.Layer("PolygonLayer", data=area_records(districts), get_polygon="polygon", stroked=True, filled=True,
                     get_fill_color=[40, 48, 60, 255], get_line_color=[140, 150, 170, 255], line_width_min_pixels=1,
                     pickable=True, id="districts")
    floors_layer = pdk.Layer("PolygonLayer", data=floor_records(floors, people), get_polygon="polygon",
                             extruded=True, wireframe=True, get_elevation="height", get_fill_color="color",
                             get_line_color=[30, 30, 30, 120], pickable=True, auto_highlight=True, id="floors")
    tooltip = {"html": "<b>{name}</b><br/>{code}<br/>people: {people} ({occupancy} of capacity)<br/>use: {use}",
               "style": {"fontSize": "12px"}}
    return pdk.Deck(layers=[base, floors_layer], initial_view_state=view, map_style=None, map_provider=None,
                    tooltip=tooltip)


def legend_html(title: str, *, low: str = "empty", high: str = "full", heading: str = "") -> str:
    """A small HTML legend for :data:`RAMP`, under an optional heading (pure)."""
    stops = ", ".join(f"rgb({r:.0f},{g:.0f},{b:.0f})" for r, g, b in RAMP)
    return (
        '<div id="ciu-legend" style="position:absolute;left:16px;top:16px;z-index:10;padding:8px 12px;'
        'background:rgba(20,24,32,.85);color:#e8ecf2;font:12px sans-serif;border-radius:6px">'
        + (f'<div style="font-weight:bold;margin-bottom:6px">{heading}</div>' if heading else "")
        + f'<div style="margin-bottom:4px">{title}</div>'
        f'<div style="width:180px;height:10px;background:linear-gradient(to right,{stops})"></div>'
        f'<div style="display:flex;justify-content:space-between"><span>{low}</span><span>{high}</span></div></div>'
    )


def offline_html(deck: pdk.Deck, *, title: str = "CIU Twin", legend: str | None = None) -> str:
    """The deck as one self-contained HTML page that makes no network request."""
    html = deck.to_html(as_string=True, offline=True, notebook_display=False)
    html = _EXTERNAL.sub("", html)
    html = html.replace("<title>pydeck</title>", f"<title>{title}</title>")
    html = html.replace("</style>", "body{background:#10141c;color:#e8ecf2}</style>", 1)
    if legend:
        html = html.replace("<body>", "<body>" + legend, 1)
    if _EXTERNAL.search(html):
        raise RuntimeError("the offline view still references a remote resource")
    return html


def busiest_hour(twin: Twin, variable: str = "people") -> datetime:
    """The hour with the most people in the whole city."""
    top = twin.levels[-1]
    series = twin.rollup(variable, level=top, freq="h")
    if series.empty:
        raise ValueError(f"the twin has no {variable} observations")
    return series.loc[series["value"].idxmax(), "time"].to_pydatetime()


def write_buildings_view(twin: Twin, out: Path | str, *, time: str | datetime | None = None,
                         variable: str = "people") -> tuple[Path, str]:
    """Write the offline 3D view of the twin at one hour; returns the path and what it shows."""
    when = utc(time if time is not None else busiest_hour(twin, variable)).to_pydatetime()
    bottom = twin.levels[0]
    floors = twin.units(level=bottom)
    people = twin.rollup(variable, level=bottom, start=when, end=when + timedelta(hours=1))
    values = people.set_index("code")["value"]
    districts = twin.units(level=twin.levels[-2]) if len(twin.levels) > 1 else twin.units(level=twin.levels[-1])
    local = local_label(when, twin.timezone, "%Y-%m-%d %H:%M")
    title = f"CIU Twin — {variable} per floor at {local}"
    deck = floors_deck(floors, values, districts, title=title)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    legend = legend_html("people ÷ floor capacity", low="0%", high="100% or more", heading=title)
    path.write_text(offline_html(deck, title=title, legend=legend), encoding="utf-8")
    return path, f"{len(floors):,} {bottom}s, {variable} at {local}"
