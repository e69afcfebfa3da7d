"""How units are encoded for binary COPY: geometries, areas, codes and JSON attributes, checked on the way."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from ciu import pgcopy
from ciu.errors import ValidationError
from ciu.store.base import COPY_CHUNK_ROWS, FIRST_CHUNK_ROWS, JSON_OPTIONS, _json_default


def geodesic_area(geoms: np.ndarray) -> np.ndarray:
    """Area of each geometry on the WGS84 ellipsoid (m²), vectorised.

    Coordinates are projected to a Lambert azimuthal equal-area projection
    centred on the batch, which keeps areas exact wherever the batch lies.
    """
    if len(geoms) == 0:
        return np.array([], dtype=float)
    from pyproj import Transformer

    xmin, ymin, xmax, ymax = shapely.total_bounds(geoms)
    laea = f"+proj=laea +lat_0={(ymin + ymax) / 2} +lon_0={(xmin + xmax) / 2} +ellps=WGS84 +units=m"
    tr = Transformer.from_crs("EPSG:4326", laea, always_xy=True)
    projected = shapely.transform(geoms, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    return shapely.area(projected)


def _positions(values: pa.Array, among: pa.Array) -> np.ndarray:
    """For each value, its position in ``among`` (-1 where it is null or not there), by hashing."""
    return pc.index_in(values, value_set=among).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _strings(values: pd.Series) -> pa.Array:
    """A column as an Arrow string array, missing values null (values that are not text as their ``str``)."""
    try:
        arr = pa.array(values, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        arr = pa.array(values.where(values.isna(), values.astype(str)), type=pa.string(), from_pandas=True)
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def distinct_geometries(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct geometries of an array and, per element, its index among them.

    Floors repeat their building's footprint, so checks, areas and WKB are
    computed once per footprint rather than once per floor. Elements that are
    the same object are found first (free), then equal shapes among the rest
    by their WKB (a frame read from a file holds one object per row).
    """
    keys = np.fromiter(map(id, geoms), dtype=np.int64, count=len(geoms))
    by_object, objects = pd.factorize(keys)
    first = _first_positions(by_object, len(objects))
    distinct = geoms[first]
    if len(distinct) > 1:
        encoded = pa.array(shapely.to_wkb(distinct), type=pa.binary()).dictionary_encode()
        by_shape = encoded.indices.to_numpy()
        if len(encoded.dictionary) < len(distinct):
            distinct = distinct[_first_positions(by_shape, len(encoded.dictionary))]
            by_object = by_shape[by_object]
    return distinct, by_object


def _first_positions(codes: np.ndarray, k: int) -> np.ndarray:
    """For codes 0..k-1, the first position where each occurs."""
    first = np.empty(k, dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
    return first


class UnitFields:
    """Columns of a unit frame as binary COPY fields, for one slice of rows at a time.

    Everything is encoded per slice, so that encoding a chunk overlaps with
    the server reading the one before. Geometry (extended WKB, SRID 4326)
    and the ellipsoidal area are computed once per distinct geometry, in the
    first slice that holds it.
    """

    def __init__(self, frame: pd.DataFrame, *, source: str | None, shapes: tuple[np.ndarray, np.ndarray]) -> None:
        self.frame = frame.reset_index(drop=True)
        self.source = source
        # the frame's distinct geometries and each row's index among them (Store.check_units finds them)
        self._distinct, self._inverse = shapes
        self._ewkb = np.empty(len(self._distinct), dtype=object)
        self._area = np.zeros(len(self._distinct))
        self._encoded = np.zeros(len(self._distinct), dtype=bool)

    def chunks(self, columns: Callable[[slice], list[pa.Array]]) -> Iterator[list[pa.Array]]:
        """``columns(s)`` for consecutive slices ``s``: small at first, doubling up to :data:`COPY_CHUNK_ROWS`."""
        start, size, n = 0, FIRST_CHUNK_ROWS, len(self.frame)
        while start < n:
            stop = min(start + size, n)
            yield columns(slice(start, stop))
            start, size = stop, min(2 * size, COPY_CHUNK_ROWS)

    def _shapes(self, rows: slice) -> np.ndarray:
        """Each row's index among the distinct geometries, encoding those not encoded yet."""
        where = self._inverse[rows]
        new = np.unique(where[~self._encoded[where]])
        if len(new):
            shapes = self._distinct[new]
            self._ewkb[new] = shapely.to_wkb(shapely.set_srid(shapes, 4326), include_srid=True)
            self._area[new] = geodesic_area(shapes)
            self._encoded[new] = True
        return where

    def text(self, name: str, rows: slice) -> pa.Array:
        n = rows.stop - rows.start
        if name not in self.frame.columns:
            return pgcopy.varlen(pa.nulls(n, pa.string()))
        return pgcopy.varlen(_strings(self.frame[name].iloc[rows]))

    def number(self, name: str, rows: slice) -> pa.Array:
        n = rows.stop - rows.start
        if name not in self.frame.columns:
            return pgcopy.fixed(np.zeros(n), "float8", null=np.ones(n, dtype=bool))
        values = pd.to_numeric(self.frame[name].iloc[rows]).to_numpy(dtype=float)
        return pgcopy.fixed(values, "float8", null=np.isnan(values))

    def json(self, name: str, rows: slice) -> pa.Array:
        codes = self.frame["code"].iloc[rows]  # to name a row in an error
        if name not in self.frame.columns:
            objects: list[Any] = [{}] * len(codes)
        else:
            values = self.frame[name].iloc[rows].to_numpy(dtype=object)
            objects = list(values)
            if not _finite_mappings(objects):  # otherwise checked (and converted) row by row, naming the row
                objects = [_json_mapping(v, row=c, field=name, source=self.source) for v, c in zip(values, codes)]
        try:
            texts = pgcopy.json_texts(objects, default=_json_default, option=JSON_OPTIONS)
        except TypeError:
            for obj, code in zip(objects, codes):  # name the row that holds what JSON cannot
                _json_text(obj, row=code, field=name, source=self.source)
            raise
        return pgcopy.varlen(texts, prefix=b"\x01")  # jsonb's binary form: version 1, then the text

    def content(self, rows: slice) -> list[pa.Array]:
        """Name, geometry, area, z-range, attributes and restricted attributes."""
        where = self._shapes(rows)
        return [self.text("name", rows), pgcopy.varlen(pa.array(self._ewkb[where], type=pa.large_binary())),
                pgcopy.fixed(self._area[where], "float8"), self.number("z_min", rows), self.number("z_max", rows),
                self.json("attrs", rows), self.json("restricted", rows)]


def _finite_mappings(objects: list[Any]) -> bool:
    """Whether every object is a dict whose top-level numbers are all finite (the usual case, in one pass)."""
    if not all(o.__class__ is dict for o in objects):
        return False
    numbers = np.fromiter((x for d in objects for x in d.values() if isinstance(x, (float, np.floating))), dtype=float)
    return bool(np.isfinite(numbers).all())


def _json_mapping(value: Any, *, row: Any, field: str, source: str | None) -> dict:
    """An attribute mapping, checked: a mapping (or JSON text of one; missing is empty) with no NaN or infinity."""
    if value.__class__ is not dict:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return {}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValidationError(f"is not JSON: {exc}", source=source, row=row, field=field) from exc
        if not isinstance(value, dict):
            raise ValidationError("must be a mapping of attribute names to values", source=source, row=row,
                                  field=field)
    for key, item in value.items():
        if isinstance(item, (float, np.floating)) and not math.isfinite(item):
            raise ValidationError(f"attribute {key!r} is NaN or infinite", source=source, row=row, field=field)
    return value


def _json_text(value: dict, *, row: Any, field: str, source: str | None) -> str:
    """A checked mapping as JSON text, naming the row when a value is not JSON."""
    try:
        return orjson.dumps(value, default=_json_default, option=JSON_OPTIONS).decode()
    except TypeError as exc:
        raise ValidationError(f"holds a value that is not JSON ({exc})", source=source, row=row, field=field) from exc
