"""Building the unit hierarchy from layers, by the rules in DESIGN.md.

- building → grid: the grid cell that holds a point on the footprint's surface;
- grid → district (and any area → area): the parent with the largest overlap;
- floors: made from a building's floor count, or height ÷ storey height;
- H3 grids: cells overlapping an area; membership is stored, never derived
  with cell-to-parent (H3 parents do not contain their children).

Units that fall outside every parent are reported by name and count, never
silently dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from ciu.errors import ValidationError

_KEY_BAD = re.compile(r"[^a-z0-9_]+")


def code_key(value: object, *, prefix: str = "") -> str:
    """A URL-safe code segment from any identifier (``'MN 03'`` → ``'mn_03'``)."""
    text = _KEY_BAD.sub("_", str(value).strip().lower()).strip("_")
    if not text:
        raise ValidationError(f"identifier {value!r} gives an empty code segment", field="code")
    return f"{prefix}{text}"


def local_crs(geoms: gpd.GeoSeries | gpd.GeoDataFrame) -> CRS:
    """A metric CRS for the area (the UTM zone of its centre)."""
    crs = geoms.estimate_utm_crs()
    if crs is None:  # pragma: no cover - only outside UTM coverage
        raise ValidationError("cannot choose a metric CRS for this area", field="geometry")
    return crs


@dataclass
class Assignment:
    """Parents found for a set of children, and the children that found none."""

    parent: pd.Series  # child index -> parent index (NaN where none)
    orphans: list[str] = field(default_factory=list)

    @property
    def n_orphans(self) -> int:
        return len(self.orphans)


def assign_by_point(children: gpd.GeoDataFrame, parents: gpd.GeoDataFrame, *, names: pd.Series | None = None) -> Assignment:
    """Parent of each child: the parent polygon holding a point on the child's surface.

    A point on the surface (not the centroid) always lies inside the child,
    even for L-shaped or ring-shaped footprints. Where parents overlap (H3
    cells share edges), the first in ``parents`` order wins, deterministically.
    """
    pts = shapely.point_on_surface(np.asarray(children.geometry.values, dtype=object))
    tree = shapely.STRtree(np.asarray(parents.geometry.values, dtype=object))
    child_i, parent_i = tree.query(pts, predicate="intersects")
    order = np.lexsort((parent_i, child_i))
    child_i, parent_i = child_i[order], parent_i[order]
    first = np.unique(child_i, return_index=True)[1]
    result = pd.Series(np.nan, index=children.index, dtype=object)
    result.iloc[child_i[first]] = parents.index.to_numpy()[parent_i[first]]
    return Assignment(result, _orphans(result, names if names is not None else children.index.to_series()))


def assign_by_overlap(
    children: gpd.GeoDataFrame, parents: gpd.GeoDataFrame, *, crs: CRS | None = None, names: pd.Series | None = None
) -> Assignment:
    """Parent of each child: the parent with the largest overlap area (in a metric CRS)."""
    crs = crs or local_crs(children)
    cg = np.asarray(children.to_crs(crs).geometry.values, dtype=object)
    pg = np.asarray(parents.to_crs(crs).geometry.values, dtype=object)
    tree = shapely.STRtree(pg)
    child_i, parent_i = tree.query(cg, predicate="intersects")
    area = shapely.area(shapely.intersection(cg[child_i], pg[parent_i]))
    keep = area > 0
    child_i, parent_i, area = child_i[keep], parent_i[keep], area[keep]
    # largest area per child; ties go to the earlier parent
    order = np.lexsort((parent_i, -area, child_i))
    child_i, parent_i = child_i[order], parent_i[order]
    first = np.unique(child_i, return_index=True)[1]
    result = pd.Series(np.nan, index=children.index, dtype=object)
    result.iloc[child_i[first]] = parents.index.to_numpy()[parent_i[first]]
    return Assignment(result, _orphans(result, names if names is not None else children.index.to_series()))


def _orphans(result: pd.Series, names: pd.Series) -> list[str]:
    missing = result.isna().to_numpy()
    return [str(n) for n in np.asarray(names)[missing]]


def h3_cells(area: shapely.Geometry, resolution: int) -> gpd.GeoDataFrame:
    """H3 cells that overlap ``area`` (EPSG:4326), as hexagon polygons indexed by cell id."""
    if not 0 <= resolution <= 15:
        raise ValidationError(f"H3 resolution {resolution} must be 0..15", field="h3_resolution")
    shape = h3.geo_to_h3shape(shapely.geometry.mapping(area))
    cells = sorted(h3.h3shape_to_cells_experimental(shape, resolution, contain="overlap"))
    polys = [shapely.Polygon([(lng, lat) for lat, lng in h3.cell_to_boundary(c)]) for c in cells]
    return gpd.GeoDataFrame({"h3": cells}, geometry=polys, crs="EPSG:4326").set_index("h3", drop=False)


def floors_from_buildings(
    buildings: gpd.GeoDataFrame,
    *,
    floors_column: str = "floors",
    height_column: str = "height_m",
    storey_height: float = 3.0,
) -> pd.DataFrame:
    """One row per floor: building index, floor number, z-range, and whether it was estimated.

    The floor count comes from ``floors_column`` where given; otherwise from
    ``height ÷ storey_height`` (at least one floor), flagged ``estimated``.
    Floors split the building's height evenly when both are known.
    """
    if storey_height <= 0:
        raise ValidationError("storey height must be positive", field="storey_height")
    n = len(buildings)
    given = pd.to_numeric(buildings[floors_column], errors="coerce") if floors_column in buildings else pd.Series(np.nan, index=buildings.index)
    height = pd.to_numeric(buildings[height_column], errors="coerce") if height_column in buildings else pd.Series(np.nan, index=buildings.index)
    estimated = given.isna() | (given <= 0)
    from_height = np.maximum(1, np.round(height / storey_height))
    count = np.where(estimated, from_height, given).astype(float)
    bad = np.isnan(count)
    if bad.any():
        i = buildings.index[int(np.flatnonzero(bad)[0])]
        raise ValidationError("building has neither a floor count nor a height", row=str(i), field=floors_column)
    count = count.astype(int)
    total_h = np.where(height.notna() & (height > 0), height, count * storey_height).astype(float)
    idx = np.repeat(np.arange(n), count)
    number = np.concatenate([np.arange(c) for c in count]) if n else np.array([], dtype=int)
    storey = (total_h / count)[idx]
    return pd.DataFrame({
        "building": buildings.index.to_numpy()[idx],
        "floor": number,
        "z_min": number * storey,
        "z_max": (number + 1) * storey,
        "estimated": estimated.to_numpy()[idx],
    })
