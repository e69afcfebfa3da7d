"""Vector layers through pyogrio: GeoJSON, GeoPackage, Shapefile, GeoParquet, FlatGeobuf.

The CRS is read from the source and the features are reprojected to
EPSG:4326. A source without a CRS is refused unless the caller names one.
Every feature is checked (missing, empty or invalid geometry, missing or
duplicate identifiers) before anything reaches the database.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError

from ciu.errors import DuplicateError, ValidationError
from ciu.ingest.base import Layer, Loader, check_exists

VERSION = "1"


def _crs(value: Any, *, source: str) -> CRS:
    try:
        return CRS.from_user_input(value)
    except CRSError as exc:
        raise ValidationError(f"{value!r} is not a coordinate reference system ({exc})", source=source,
                              field="crs") from exc


def finish_layer(
    frame: gpd.GeoDataFrame,
    *,
    source: str,
    crs: Any = None,
    key: str | None = None,
    columns: Sequence[str] = (),
) -> tuple[gpd.GeoDataFrame, str]:
    """Check a freshly read layer and reproject it to EPSG:4326.

    Returns the layer (with a ``feature`` column: position in the file) and
    the source CRS as text. Raises :class:`ValidationError` naming the file,
    the feature and the field at the first problem.
    """
    frame = frame.reset_index(drop=True)
    frame["feature"] = np.arange(len(frame))
    for name in columns:
        if name not in frame.columns:
            raise ValidationError(f"missing column {name!r} (the file has {list(frame.columns[:-1])})",
                                  source=source, field=name)
    if key is not None:
        if key not in frame.columns:
            raise ValidationError(f"missing identifier column {key!r}", source=source, field=key)
        missing = frame[key].isna().to_numpy()
        if missing.any():
            raise ValidationError("identifier is missing", source=source, row=int(np.flatnonzero(missing)[0]),
                                  field=key)
        dup = frame[key].astype(str).duplicated().to_numpy()
        if dup.any():
            i = int(np.flatnonzero(dup)[0])
            first = int(np.flatnonzero((frame[key].astype(str) == str(frame[key].iloc[i])).to_numpy())[0])
            raise DuplicateError(f"identifier {frame[key].iloc[i]!r} also names feature {first}", source=source,
                                 row=i, field=key)
    geoms = np.asarray(frame.geometry.values, dtype=object)
    none = np.array([g is None for g in geoms], dtype=bool)
    if none.any():
        raise ValidationError("geometry is missing", source=source, row=int(np.flatnonzero(none)[0]), field="geometry")
    empty = shapely.is_empty(geoms)
    if empty.any():
        raise ValidationError("geometry is empty", source=source, row=int(np.flatnonzero(empty)[0]), field="geometry")
    valid = shapely.is_valid(geoms)
    if not valid.all():
        i = int(np.flatnonzero(~valid)[0])
        raise ValidationError(f"geometry is invalid ({shapely.is_valid_reason(geoms[i])})", source=source, row=i,
                              field="geometry")
    if frame.crs is None:
        if crs is None:
            raise ValidationError("the file names no coordinate reference system; name one (e.g. --crs EPSG:2263)",
                                  source=source, field="crs")
        frame = frame.set_crs(_crs(crs, source=source))
    elif crs is not None and not frame.crs.equals(_crs(crs, source=source)):
        raise ValidationError(f"the file says its CRS is {frame.crs.to_string()}, not {crs}", source=source,
                              field="crs")
    source_crs = frame.crs.to_string()
    if not frame.crs.equals(CRS.from_epsg(4326)):
        frame = frame.to_crs(4326)
        moved = np.asarray(frame.geometry.values, dtype=object)
        broken = ~shapely.is_valid(moved)
        if broken.any():
            # reprojection may bend a ring onto itself; repair it the way GEOS does
            frame.loc[broken, frame.geometry.name] = shapely.make_valid(moved[broken])
    return frame, source_crs


class VectorLoader(Loader):
    """Any vector file pyogrio opens: GeoJSON, GeoPackage, Shapefile, GeoParquet, FlatGeobuf."""

    name = "vector"
    version = VERSION
    suffixes = (".geojson", ".json", ".gpkg", ".shp", ".parquet", ".geoparquet", ".fgb")
    kind = "layer"

    def can_open(self, path: Path | str) -> bool:
        name = str(path).lower()
        if name.endswith(".parquet"):
            return _is_geoparquet(Path(path))
        if name.endswith(".json"):
            return not name.endswith(".city.json") and json_type_is(Path(path), "FeatureCollection")
        return super().can_open(path)

    def read(self, path: Path | str, *, crs: Any = None, key: str | None = None, columns: Sequence[str] = (),
             layer: str | None = None, **_: Any) -> Layer:
        """Read the layer, check it and reproject it to EPSG:4326.

        Parameters
        ----------
        path
            The file.
        crs
            The CRS to assume when the file names none (refused otherwise).
        key
            Identifier column: must be present, non-missing and unique.
        columns
            Columns that must be present.
        layer
            Layer name inside a multi-layer file (GeoPackage).
        """
        path = check_exists(path)
        source = str(path)
        try:
            if path.suffix.lower() in (".parquet", ".geoparquet"):
                frame = gpd.read_parquet(path)
            else:
                frame = pyogrio.read_dataframe(path, layer=layer, use_arrow=_arrow())
        except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, pyogrio.errors.FieldError,
                pyogrio.errors.GeometryError, pyogrio.errors.CRSError, OSError, ValueError) as exc:
            raise ValidationError(f"cannot be read as a vector layer ({exc})", source=source) from exc
        if not isinstance(frame, gpd.GeoDataFrame) or frame.geometry is None:
            raise ValidationError("has no geometry column", source=source, field="geometry")
        frame, source_crs = finish_layer(frame, source=source, crs=crs, key=key, columns=columns)
        return Layer(frame=frame, uri=source, loader=f"ingest.{self.name}", loader_version=self.version,
                     source_crs=source_crs, params={"layer": layer} if layer else {})


def _arrow() -> bool:
    """Read through Arrow when pyarrow is installed (faster for large layers)."""
    return importlib.util.find_spec("pyarrow") is not None


def json_type_is(path: Path, kind: str, *, chunk: int = 1 << 20) -> bool:
    """Whether the JSON file ``path`` says ``"type": kind`` (e.g. ``CityJSON``, ``FeatureCollection``) anywhere.

    Read in chunks, so a file whose ``type`` comes after megabytes of
    vertices or features is recognised too; it stops at the first match.
    """
    pattern = re.compile(rb'"type"\s*:\s*"' + re.escape(kind.encode()) + rb'"')
    overlap = 64
    try:
        with open(path, "rb") as fh:
            tail = b""
            while block := fh.read(chunk):
                if pattern.search(tail + block):
                    return True
                tail = block[-overlap:]
    except OSError:
        return False
    return False


def _is_geoparquet(path: Path) -> bool:
    try:
        import pyarrow.parquet as pq

        meta = pq.read_schema(path).metadata or {}
    except (ImportError, OSError, ValueError):
        return False
    return b"geo" in meta


def to_frame(layer: Layer) -> pd.DataFrame:
    """The layer's attribute columns (without geometry and feature position)."""
    return pd.DataFrame(layer.frame.drop(columns=[layer.frame.geometry.name, "feature"]))


LOADERS = (VectorLoader(),)
