"""Loading any supported file into a twin: the engine behind ``ciu ingest``.

A layer becomes units of one level: each feature gets its parent among the
twin's units one level up (by the rules of :mod:`ciu.ingest.builder`), its code
``parent code / key``, and its attribute columns as attributes. A series
becomes observations of the units its keys name.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import pandas as pd

from ciu.domain import LoadReport, SourceInfo
from ciu.errors import ValidationError
from ciu.levels import KNOWN, Level
from ciu.ingest.base import FileOptions, Layer, Loader, Series, file_sha256
from ciu.ingest.builder import LevelLayer, build_hierarchy, floor_units
from ciu.ingest.pipeline import load_series, load_unit_frame

if TYPE_CHECKING:
    from ciu.twin import Twin


def ingest_file(twin: Twin, path: Path | str, *, loader: Loader,
                options: FileOptions = FileOptions()) -> tuple[LoadReport, list[str]]:
    """Load one file with what the user said about it; returns the load report and lines worth telling the user.

    The loader turns ``options`` into its own reading options (:meth:`Loader.read_options`).
    """
    path = Path(path)
    o = options
    kind = o.as_ or ("units" if loader.kind == "layer" else "observations")
    if kind == "units":
        if loader.kind != "layer":
            raise ValidationError(f"the {loader.name} loader reads observations, not units", source=str(path))
        if o.level is None:
            raise ValidationError("units need a level (--level)", source=str(path), field="level")
        layer = loader.read(path, **loader.read_options(path, o))
        assert isinstance(layer, Layer)
        return load_layer(twin, layer, level=o.level, key=o.key, name=o.name, floors=o.floors,
                          storey_height=o.storey_height, floors_column=o.floors_column, height_column=o.height_column,
                          params={"crs": o.crs, "key": o.key, "name": o.name})
    if loader.kind == "layer":
        raise ValidationError(f"the {loader.name} loader reads units, not observations", source=str(path))
    series = loader.read(path, **loader.read_options(path, o, counts=_is_count(twin, o.variable)))
    assert isinstance(series, Series)
    series.params["key_field"] = o.key or "code"
    info = SourceInfo(uri=str(path), sha256=file_sha256(path), loader=series.loader,
                      loader_version=series.loader_version,
                      params={k: v for k, v in {**series.params, "variable": o.variable, "level": o.level}.items()
                              if v is not None and k != "key_field"})
    report = load_series(twin, series, info, level=o.level, on_conflict=o.on_conflict)  # type: ignore[arg-type]
    return report, list(report.notes)


def _is_count(twin: Twin, variable: str | None) -> bool:
    if variable is None:
        return False
    from ciu.errors import UnknownVariable

    try:
        return twin.variable(variable).rollup == "sum"
    except UnknownVariable:
        return False


def layer_units(twin: Twin, layer: Layer, *, level: str, key: str | None = None, name: str | None = None,
                floors: bool = False, storey_height: float = 3.0, floors_column: str = "floors",
                height_column: str = "height_m") -> tuple[gpd.GeoDataFrame, list[str]]:
    """Units (and floors) for the features of ``layer`` at ``level``, parents from the twin."""
    levels = twin.levels
    spec = twin.level(level)
    rank = levels.index(level)
    frame = layer.frame
    if key is None:
        frame = frame.assign(_key=frame["feature"].map(lambda i: f"{i + 1}"))
        key = "_key"
    attrs = tuple(c for c in frame.columns if c not in (frame.geometry.name, "feature", "_key"))
    z = None
    if spec.kind == "structure" and height_column in frame.columns:
        frame = frame.assign(_z0=0.0, _z1=pd.to_numeric(frame[height_column], errors="coerce"))
        z = ("_z0", "_z1")
    placed = LevelLayer(level, frame, key=key, prefix=spec.prefix, name=name, attrs=attrs, z=z, rule=spec.placement)
    existing = {}
    if rank < len(levels) - 1:
        above = levels[rank + 1]
        existing[above] = twin.units(level=above)
    tree = build_hierarchy([placed], levels=levels, existing=existing)
    units = tree.units
    lines = tree.orphan_report()
    if floors:
        storey = twin.level_of_kind("storey")
        if spec.kind != "structure" or storey is None or levels[rank - 1] != storey.name:
            raise ValidationError(f"floors are made for a structure level with a storey level below it; "
                                  f"{level!r} is a level of kind {spec.kind}", field="floors")
        b = units.set_index("code", drop=False)
        for col in (floors_column, height_column):
            b[col] = b["attrs"].map(lambda a, c=col: a.get(c))
        storeys = layer.parts.get("storeys")
        measured = storey_units(b, storeys, key=key, level=storey) if storeys is not None and len(storeys) else None
        rest = b if measured is None else b[~b["code"].isin(measured["parent_code"])]
        made = floor_units(rest, floors_column=floors_column, height_column=height_column,
                           storey_height=storey_height, level=storey)
        if measured is not None:
            made = pd.concat([measured, made], ignore_index=True)
            lines.append(f"{len(measured):,} floors from the file's storeys")
        units = gpd.GeoDataFrame(pd.concat([units, made], ignore_index=True), geometry="geometry", crs="EPSG:4326")
        lines.append(f"{len(made):,} floors made for {len(b):,} buildings "
                     f"({int(made['attrs'].map(lambda a: a['estimated']).sum()):,} estimated from height)")
    return units, lines


def storey_units(buildings: gpd.GeoDataFrame, storeys: pd.DataFrame, *, key: str,
                 level: Level = KNOWN["floor"]) -> gpd.GeoDataFrame:
    """Storey units from measured storeys (``building, storey, z_min, z_max, name``), numbered bottom up."""
    by_key = {str(a.get(key)): code for code, a in zip(buildings["code"], buildings["attrs"])}
    rows = storeys.assign(parent=storeys["building"].astype(str).map(by_key)).dropna(subset=["parent"])
    rows = rows.sort_values(["parent", "z_min"])
    rows["floor"] = rows.groupby("parent").cumcount()
    geoms = buildings.set_index("code").geometry
    return gpd.GeoDataFrame({
        "code": [f"{p}/{level.prefix}{k:02d}" for p, k in zip(rows["parent"], rows["floor"])],
        "parent_code": rows["parent"].to_numpy(),
        "level": level.name,
        "name": rows["name"].astype(str).to_numpy(),
        "z_min": rows["z_min"].to_numpy(dtype=float),
        "z_max": rows["z_max"].to_numpy(dtype=float),
        "attrs": [{"floor": int(k), "estimated": False, "storey": str(sid)}
                  for k, sid in zip(rows["floor"], rows["storey"])],
        "restricted": [{} for _ in range(len(rows))],
    }, geometry=list(geoms.loc[rows["parent"]].values), crs="EPSG:4326")


def load_layer(twin: Twin, layer: Layer, *, level: str, key: str | None = None, name: str | None = None,
               floors: bool = False, storey_height: float = 3.0, floors_column: str = "floors",
               height_column: str = "height_m", params: dict[str, Any] | None = None) -> tuple[LoadReport, list[str]]:
    """Place and load a layer as units of ``level`` with its provenance (one transaction)."""
    units, lines = layer_units(twin, layer, level=level, key=key, name=name, floors=floors,
                               storey_height=storey_height, floors_column=floors_column, height_column=height_column)
    full = {"level": level, "floors": floors, **({"storey_height": storey_height} if floors else {}),
            **{k: v for k, v in (params or {}).items() if v is not None}, **layer.params}
    info = SourceInfo(uri=layer.uri, sha256=file_sha256(layer.uri), loader=layer.loader,
                      loader_version=layer.loader_version, params=full)
    report = load_unit_frame(twin, units, info)
    return report, lines
