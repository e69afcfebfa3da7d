"""Small files for ingest tests, written at test time into a temporary directory."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely


def footprints(centres: list[tuple[float, float]], *, size_m: float = 12.0) -> gpd.GeoDataFrame:
    """Square footprints (EPSG:4326) around lon/lat centres, with ids, floors and heights."""
    half = size_m / 2 / 111_320
    polys = [shapely.box(x - half * 1.3, y - half, x + half * 1.3, y + half) for x, y in centres]
    n = len(polys)
    return gpd.GeoDataFrame({"bid": [f"B{i:03d}" for i in range(n)], "floors": [3 + i % 4 for i in range(n)],
                             "height_m": [10.0 + 3 * (i % 4) for i in range(n)]}, geometry=polys, crs="EPSG:4326")


def write_vector(frame: gpd.GeoDataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        pyogrio.write_dataframe(frame, path)
    return path


def cityjson_doc(*, x0: float = 121000.0, y0: float = 487000.0, epsg: int | None = 7415) -> dict:
    """A CityJSON 2.0 document: one box building 10 × 8 m, 9 m high, with 3 storeys (RD New + NAP)."""
    verts = []
    for z in (0.0, 9.0):
        verts += [[x0, y0, z], [x0 + 10, y0, z], [x0 + 10, y0 + 8, z], [x0, y0 + 8, z]]
    solid = [[[[0, 3, 2, 1]], [[4, 5, 6, 7]], [[0, 1, 5, 4]], [[1, 2, 6, 5]], [[2, 3, 7, 6]], [[3, 0, 4, 7]]]]
    objects = {"bldg1": {"type": "Building", "attributes": {"measuredHeight": 9.0, "storeysAboveGround": 3},
                         "geometry": [{"type": "Solid", "lod": "2", "boundaries": solid}],
                         "children": [f"s{k}" for k in range(3)]}}
    for k in range(3):
        base = len(verts)
        for z in (3.0 * k, 3.0 * (k + 1)):
            verts += [[x0, y0, z], [x0 + 10, y0, z], [x0 + 10, y0 + 8, z], [x0, y0 + 8, z]]
        ring = [[[base + i for i in (0, 3, 2, 1)]], [[base + i for i in (4, 5, 6, 7)]]]
        objects[f"s{k}"] = {"type": "BuildingStorey", "parents": ["bldg1"], "attributes": {"name": f"storey {k}"},
                            "geometry": [{"type": "MultiSurface", "lod": "2", "boundaries": ring}]}
    doc = {"type": "CityJSON", "version": "2.0", "transform": {"scale": [0.001, 0.001, 0.001],
                                                                "translate": [0.0, 0.0, 0.0]},
           "CityObjects": objects, "vertices": [[int(round(v * 1000)) for v in p] for p in verts]}
    if epsg is not None:
        doc["metadata"] = {"referenceSystem": f"https://www.opengis.net/def/crs/EPSG/0/{epsg}"}
    return doc


def write_json(doc: dict, path: Path) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def long_series(codes: list[str], times: pd.DatetimeIndex, variable: str, *, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [(c, t.isoformat(), variable, float(rng.integers(0, 50))) for c in codes for t in times]
    return pd.DataFrame(rows, columns=["code", "time", "variable", "value"])
