"""The hierarchy builder: layers per level in, a tree of units with codes out.

The user gives the layers they have, one per level (a layer may also be
generated: :func:`h3_layer` for a grid, :func:`floor_units` for floors).
Parents are assigned by the rules of DESIGN.md (``ciu.ingest.hierarchy``),
by each level's kind (``ciu.levels``): a structure (building) by a point on
its footprint's surface (points by themselves), every other area by the
largest overlap. Units that fall
outside every parent are left out of the tree and reported, by name and
count, in :attr:`Hierarchy.orphans`, with the units below them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any, Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ciu.errors import HierarchyError, ValidationError
from ciu.levels import KNOWN, Level, level as level_of
from ciu.ingest.hierarchy import assign_by_overlap, assign_by_point, code_key, floors_from_buildings, h3_cells

Rule = Literal["point", "overlap"]


@dataclass
class LevelLayer:
    """The features of one level.

    Parameters
    ----------
    level
        The level the features become.
    frame
        Features in EPSG:4326.
    key
        Column with each feature's identifier; its code segment is
        ``prefix + code_key(value)``.
    prefix
        Letters before the identifier in the code segment (``"z"`` → ``z042``).
    name
        Column with a display name (optional).
    attrs
        Columns kept as attributes.
    z
        Columns with ``z_min`` and ``z_max`` (metres above ground), optional.
    rule
        How to find each feature's parent one level up; ``None`` chooses a
        point on the surface for buildings and points, largest overlap otherwise.
    outside
        What becomes of a feature outside every parent: ``"report"`` leaves it
        out, ``"nearest"`` gives it the nearest parent; both are reported.
    """

    level: str
    frame: gpd.GeoDataFrame
    key: str
    prefix: str = ""
    name: str | None = None
    attrs: Sequence[str] = ()
    z: tuple[str, str] | None = None
    rule: Rule | None = None
    #: units outside every parent: left out and reported, or given the nearest parent and reported
    outside: Literal["report", "nearest"] = "report"

    def segments(self) -> pd.Series:
        """Code segments ``prefix + code_key(identifier)``, computed for the whole column at once."""
        raw = self.frame[self.key]
        keys = raw.astype(str).str.strip().str.lower().str.replace(r"[^a-z0-9_]+", "_", regex=True).str.strip("_")
        empty = (keys == "").to_numpy()
        if empty.any():
            code_key(raw.iloc[int(np.flatnonzero(empty)[0])])  # raises naming the identifier
        return (self.prefix + keys).astype(object)

    def names(self) -> pd.Series:
        if self.name is None:
            return self.frame[self.key].astype(str)
        return self.frame[self.name].astype(str)


@dataclass
class Hierarchy:
    """Units ready for :meth:`ciu.store.Store.load_units`, and what was left out."""

    units: gpd.GeoDataFrame
    #: level → names of the units that fell outside every parent and were left out
    orphans: dict[str, list[str]] = field(default_factory=dict)
    #: level → names of the units outside every parent given the nearest one
    nearest: dict[str, list[str]] = field(default_factory=dict)

    def orphan_report(self) -> list[str]:
        """One line per level with orphans: how many and the first few names."""
        lines = []
        for level, names in self.orphans.items():
            if names:
                shown = ", ".join(names[:5]) + (", …" if len(names) > 5 else "")
                lines.append(f"{len(names)} {level} units outside every parent left out: {shown}")
        for level, names in self.nearest.items():
            if names:
                shown = ", ".join(names[:5]) + (", …" if len(names) > 5 else "")
                lines.append(f"{len(names)} {level} units outside every parent given the nearest one: {shown}")
        return lines


def rule_for(layer: LevelLayer, spec: Level) -> Rule:
    """The layer's own rule, else its level's placement; points are always placed by themselves."""
    if layer.rule is not None:
        return layer.rule
    kinds = set(shapely.get_type_id(np.asarray(layer.frame.geometry.values, dtype=object)).tolist())
    points_only = kinds <= {0, 4}
    return "point" if points_only else spec.placement


def assign(layer: LevelLayer, parents: gpd.GeoDataFrame, spec: Level) -> tuple[pd.Series, list[str]]:
    """Parent code of every feature of ``layer`` among ``parents`` (indexed by code), and the orphans' names."""
    if parents.empty:
        return pd.Series(np.nan, index=layer.frame.index, dtype=object), list(layer.names())
    names = layer.names()
    if rule_for(layer, spec) == "point":
        found = assign_by_point(layer.frame, parents, names=names)
    else:
        found = assign_by_overlap(layer.frame, parents, names=names)
    return found.parent, found.orphans


def assign_nearest(layer: LevelLayer, parents: gpd.GeoDataFrame, parent: pd.Series) -> pd.Series:
    """Fill the missing parents with the nearest parent (distance in a metric CRS)."""
    from ciu.ingest.hierarchy import local_crs

    missing = parent.isna().to_numpy()
    crs = local_crs(parents)
    child_geoms = np.asarray(layer.frame[missing].to_crs(crs).geometry.values, dtype=object)
    tree = shapely.STRtree(np.asarray(parents.to_crs(crs).geometry.values, dtype=object))
    nearest = tree.nearest(child_geoms)
    out = parent.copy()
    out.iloc[np.flatnonzero(missing)] = parents.index.to_numpy()[nearest]
    return out


def _attr_records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    """Attributes per row as plain Python values, column by column (missing values left out)."""
    records: list[dict[str, Any]] = [{} for _ in range(len(frame))]
    for col in columns:
        series = frame[col]
        if pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
            missing = series.isna().to_numpy()
            values = series.to_numpy(dtype=object if pd.api.types.is_bool_dtype(series.dtype) else None).tolist()
        elif pd.api.types.is_string_dtype(series.dtype) and not pd.api.types.is_object_dtype(series.dtype):
            missing = series.isna().to_numpy()
            values = series.tolist()
        else:
            values = [_plain(v) for v in series]
            missing = np.array([v is None for v in values], dtype=bool)
        for rec, value, gone in zip(records, values, missing):
            if not gone:
                rec[col] = value
    return records


def _unit_frame(layer: LevelLayer, codes: pd.Series, parent_codes: pd.Series | None) -> gpd.GeoDataFrame:
    f = layer.frame
    attrs = _attr_records(f, layer.attrs) if layer.attrs else [{} for _ in range(len(f))]
    out = gpd.GeoDataFrame({
        "code": codes.to_numpy(),
        "parent_code": parent_codes.to_numpy() if parent_codes is not None else None,
        "level": layer.level,
        "name": layer.names().to_numpy(),
        "z_min": pd.to_numeric(f[layer.z[0]]).to_numpy(dtype=float) if layer.z else np.nan,
        "z_max": pd.to_numeric(f[layer.z[1]]).to_numpy(dtype=float) if layer.z else np.nan,
        "attrs": attrs,
        "restricted": [{} for _ in range(len(f))],
    }, geometry=f.geometry.values, crs="EPSG:4326", index=f.index)
    return out


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        value = value.item()
        if isinstance(value, float) and np.isnan(value):
            return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def build_hierarchy(layers: Sequence[LevelLayer], *, levels: Sequence[str | Level],
                    existing: dict[str, gpd.GeoDataFrame] | None = None) -> Hierarchy:
    """Assign parents level by level, top down, and make codes.

    Parameters
    ----------
    layers
        The layers to place; each at a different level.
    levels
        The twin's levels, bottom to top (names take their known kinds).
    existing
        Units already in the twin by level (GeoDataFrames indexed by code):
        parents for the top given layer when it is not the top level.
    """
    specs = {lv.name: lv for lv in map(level_of, levels)}
    levels = list(specs)
    by_level = {layer.level: layer for layer in layers}
    if len(by_level) != len(layers):
        raise ValidationError("two layers name the same level", field="level")
    for level in by_level:
        if level not in levels:
            raise ValidationError(f"level {level!r} is not one of {list(levels)}", field="level")
    existing = existing or {}
    placed: dict[str, gpd.GeoDataFrame] = {}
    orphans: dict[str, list[str]] = {}
    nearest: dict[str, list[str]] = {}
    for rank in range(len(levels) - 1, -1, -1):
        level = levels[rank]
        layer = by_level.get(level)
        if layer is None:
            continue
        segments = layer.segments()
        if rank == len(levels) - 1:
            codes, parent_codes = segments, None
        else:
            above = levels[rank + 1]
            parents = placed.get(above)
            if parents is None:
                parents = existing.get(above)
            if parents is None:
                raise HierarchyError(f"level {level!r} needs parents at level {above!r}: give that layer or load it"
                                     " first", field="level")
            parent_codes, lost = assign(layer, parents, specs[level])
            if lost and layer.outside == "nearest" and not parents.empty:
                parent_codes = assign_nearest(layer, parents, parent_codes)
                nearest[level], lost = lost, []
            orphans[level] = lost
            keep = parent_codes.notna()
            layer = LevelLayer(**{**layer.__dict__, "frame": layer.frame[keep.to_numpy()]})
            segments, parent_codes = segments[keep], parent_codes[keep]
            codes = parent_codes.astype(str) + "/" + segments
        units = _unit_frame(layer, codes, parent_codes)
        placed[level] = units.set_index("code", drop=False)
    frames = [placed[lv] for lv in reversed(levels) if lv in placed]
    units = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs="EPSG:4326")
    return Hierarchy(units=units, orphans=orphans, nearest=nearest)


def h3_layer(area: shapely.Geometry, resolution: int, *, level: str = "grid") -> LevelLayer:
    """A generated H3 grid covering ``area`` (EPSG:4326) at ``resolution``."""
    cells = h3_cells(area, resolution).reset_index(drop=True)
    cells["resolution"] = resolution
    return LevelLayer(level=level, frame=cells, key="h3", name="h3", attrs=("h3", "resolution"), rule="overlap")


def floor_units(buildings: gpd.GeoDataFrame, *, floors_column: str = "floors", height_column: str = "height_m",
                storey_height: float = 3.0, level: Level = KNOWN["floor"]) -> gpd.GeoDataFrame:
    """Storey units (``level``) for building units (indexed by code): ``floors`` or height ÷ storey height.

    Each floor has its building's footprint, a z-range and ``estimated`` set
    when the count came from the height.
    """
    if buildings.empty:
        return gpd.GeoDataFrame(columns=["code", "parent_code", "level", "name", "geometry", "z_min", "z_max",
                                         "attrs"], geometry="geometry", crs="EPSG:4326")
    floors = floors_from_buildings(buildings, floors_column=floors_column, height_column=height_column,
                                   storey_height=storey_height)
    geoms = buildings.geometry
    return gpd.GeoDataFrame({
        "code": [f"{b}/{level.prefix}{k:02d}" for b, k in zip(floors["building"], floors["floor"])],
        "parent_code": floors["building"].to_numpy(),
        "level": level.name,
        "name": [f"Floor {k}" for k in floors["floor"]],
        "z_min": floors["z_min"].round(3).to_numpy(),
        "z_max": floors["z_max"].round(3).to_numpy(),
        "attrs": [{"floor": int(k), "estimated": bool(e)} for k, e in zip(floors["floor"], floors["estimated"])],
        "restricted": [{} for _ in range(len(floors))],
    }, geometry=list(geoms.loc[floors["building"]].values), crs="EPSG:4326")
