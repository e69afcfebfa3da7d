"""A corpus of bad files, made at test time: each gives one clear error and leaves the database as it was."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely

from ciu.errors import CiuError, DuplicateError, ValidationError
from ciu.ingest.arrays import ArrayLoader, ArrayMapping
from ciu.ingest.base import FileOptions, loader_for
from ciu.ingest.generic import ingest_file
from ciu.domain import SourceInfo
from ciu.ingest.pipeline import load_series
from tests.conftest import fingerprint
from tests.ingest_files import footprints, write_vector


def _features(city, n: int = 3) -> list[dict]:
    cells = city.units(level="grid")
    pts = shapely.point_on_surface(np.asarray(cells.geometry.values, dtype=object))[:n]
    frame = footprints([(p.x, p.y) for p in pts])
    return json.loads(frame.to_json(drop_id=True))["features"]


def _geojson(path: Path, features: list[dict]) -> Path:
    doc = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}},
           "features": features}
    path.write_text(json.dumps(doc))
    return path


def bowtie(city, tmp: Path) -> tuple[Path, dict]:
    feats = _features(city)
    (x, y) = feats[1]["geometry"]["coordinates"][0][0]
    d = 0.0001
    feats[1]["geometry"]["coordinates"] = [[[x, y], [x + d, y + d], [x + d, y], [x, y + d], [x, y]]]
    return _geojson(tmp / "bowtie.geojson", feats), {"row": 1, "field": "geometry", "match": "Self-intersection"}


def empty_polygon(city, tmp: Path) -> tuple[Path, dict]:
    feats = _features(city)
    feats[2]["geometry"] = {"type": "Polygon", "coordinates": []}
    return _geojson(tmp / "empty.geojson", feats), {"row": 2, "field": "geometry", "match": "empty|missing"}


def missing_crs(city, tmp: Path) -> tuple[Path, dict]:
    cells = city.units(level="grid")
    pts = shapely.point_on_surface(np.asarray(cells.geometry.values, dtype=object))[:2]
    path = write_vector(footprints([(p.x, p.y) for p in pts]), tmp / "nocrs.shp")
    (tmp / "nocrs.prj").unlink()
    return path, {"row": None, "field": "crs", "match": "coordinate reference system"}


def missing_key_column(city, tmp: Path) -> tuple[Path, dict]:
    feats = _features(city)
    for f in feats:
        f["properties"]["ident"] = f["properties"].pop("bid")
    return _geojson(tmp / "nokey.geojson", feats), {"row": None, "field": "bid", "match": "missing"}


def duplicate_ids(city, tmp: Path) -> tuple[Path, dict]:
    feats = _features(city)
    feats[2]["properties"]["bid"] = feats[0]["properties"]["bid"]
    return _geojson(tmp / "dup.geojson", feats), {"row": 2, "field": "bid", "match": "also names feature 0",
                                                  "type": DuplicateError}


def truncated_geojson(city, tmp: Path) -> tuple[Path, dict]:
    path = _geojson(tmp / "cut.geojson", _features(city))
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    return path, {"row": None, "field": None, "match": "cannot be read"}


def truncated_gpkg(city, tmp: Path) -> tuple[Path, dict]:
    cells = city.units(level="grid")
    pts = shapely.point_on_surface(np.asarray(cells.geometry.values, dtype=object))[:3]
    path = write_vector(footprints([(p.x, p.y) for p in pts]), tmp / "cut.gpkg")
    path.write_bytes(path.read_bytes()[:3000])
    return path, {"row": None, "field": None, "match": "cannot be read"}


def _series_csv(city, tmp: Path, name: str, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> Path:
    codes = list(city.units(level="grid").index[:2])
    times = pd.date_range("2032-01-01", periods=3, freq="h", tz="UTC")
    frame = pd.DataFrame([(c, t.isoformat(), "people", 5.0) for c in codes for t in times],
                         columns=["code", "time", "variable", "value"])
    path = tmp / name
    edit(frame).to_csv(path, index=False)
    return path


def nan_count(city, tmp):
    def edit(f):
        f.loc[3, "value"] = np.nan
        return f
    return _series_csv(city, tmp, "nan.csv", edit), {"row": 3, "field": "value", "match": "missing"}


def negative_count(city, tmp):
    def edit(f):
        f.loc[4, "value"] = -2.0
        return f
    return _series_csv(city, tmp, "neg.csv", edit), {"row": 4, "field": "value", "match": "negative"}


def missing_value_column(city, tmp):
    return _series_csv(city, tmp, "nocol.csv", lambda f: f.rename(columns={"value": "count"})), \
        {"row": None, "field": "value", "match": "missing column"}


def bad_timestamp(city, tmp):
    def edit(f):
        f.loc[1, "time"] = "yesterday-ish"
        return f
    return _series_csv(city, tmp, "time.csv", edit), {"row": 1, "field": "time", "match": "not a timestamp"}


def duplicate_observation(city, tmp):
    def edit(f):
        return pd.concat([f, f.iloc[[2]]], ignore_index=True)
    return _series_csv(city, tmp, "dupobs.csv", edit), {"row": 6, "field": "time", "match": "given twice",
                                                        "type": DuplicateError}


def unknown_unit(city, tmp):
    def edit(f):
        f.loc[5, "code"] = "tiny/d99/nowhere"
        return f
    return _series_csv(city, tmp, "unknown.csv", edit), {"row": 5, "field": "code", "match": "not in the twin"}


def truncated_csv(city, tmp):
    path = _series_csv(city, tmp, "cut.csv", lambda f: f)
    text = path.read_text()
    path.write_text(text[: text.rindex(",")])  # the last line loses its value
    return path, {"row": 5, "field": "value", "match": "missing"}


def huge_count(city, tmp):
    def edit(f):
        f.loc[4, "value"] = 1e308  # summed up the levels it would become inf
        return f
    return _series_csv(city, tmp, "huge.csv", edit), {"row": 4, "field": "value", "match": "beyond"}


def far_future(city, tmp):
    def edit(f):
        f.loc[2, "time"] = "2300-01-01T00:00:00Z"  # would become the twin's latest observation
        return f
    return _series_csv(city, tmp, "future.csv", edit), {"row": 2, "field": "time", "match": "outside the years"}


def offset_and_none(city, tmp):
    def edit(f):
        f.loc[3, "time"] = "2032-01-01 01:00"  # the others state +00:00
        return f
    return _series_csv(city, tmp, "offsets.csv", edit), {"row": 3, "field": "time", "match": "lacks a UTC offset"}


def header_only(city, tmp):
    return _series_csv(city, tmp, "header.csv", lambda f: f.iloc[:0]), {"row": None, "field": "time",
                                                                         "match": "no observations"}


CASES = [bowtie, empty_polygon, missing_crs, missing_key_column, duplicate_ids, truncated_geojson, truncated_gpkg,
         nan_count, negative_count, missing_value_column, bad_timestamp, duplicate_observation, unknown_unit,
         truncated_csv, huge_count, far_future, offset_and_none, header_only]


@pytest.mark.parametrize("make", CASES, ids=[c.__name__ for c in CASES])
def test_bad_file_one_clear_error_database_unchanged(city, tmp_path, make):
    path, want = make(city, tmp_path)
    snap = fingerprint(city)
    loader = loader_for(path)
    kw = {"level": "building", "key": "bid"} if loader.kind == "layer" else {"variable": "people"}
    with pytest.raises(want.get("type", CiuError), match=want["match"]) as err:
        ingest_file(city, path, loader=loader, options=FileOptions(**kw))
    exc = err.value
    assert isinstance(exc, ValidationError)
    assert exc.source == str(path)
    assert exc.row == want["row"]
    assert exc.field == want["field"]
    assert str(path) in str(exc)
    assert fingerprint(city) == snap


def _array_case(tmp: Path, name: str, data: np.ndarray | None, raw: bytes | None = None) -> Path:
    path = tmp / name
    if raw is not None:
        path.write_bytes(raw)
    else:
        np.savez(path, flows=data)
    return path


@pytest.mark.parametrize("case", ["wrong_shape", "nan", "negative", "truncated"])
def test_bad_arrays(city, tmp_path, case):
    codes = list(city.units(level="grid").index[:3])
    mapping = ArrayMapping(key="flows", units=codes, times=pd.date_range("2033-01-01", periods=4, freq="h"),
                           channels={0: "people", 1: "event_expected"})
    data = np.ones((4, 3, 2))
    want_row, want_field, match = None, "flows", ""
    if case == "wrong_shape":
        path, match = _array_case(tmp_path, "shape.npz", np.ones((4, 2, 2))), "shape"
    elif case == "nan":
        data[2, 1, 0] = np.nan
        path, want_row, match = _array_case(tmp_path, "nan.npz", data), 2, "NaN"
    elif case == "negative":
        data[3, 0, 1] = -1
        path, want_row, match = _array_case(tmp_path, "neg.npz", data), 3, "negative"
    else:
        good = _array_case(tmp_path, "good.npz", data)
        path = _array_case(tmp_path, "cut.npz", None, raw=good.read_bytes()[:200])
        want_field, match = None, "cannot be read"
    snap = fingerprint(city)
    with pytest.raises(ValidationError, match=match) as err:
        series = ArrayLoader().read(path, mapping=mapping)
        info = SourceInfo(uri=str(path), sha256="0" * 64, loader=series.loader, loader_version="1", params={})
        load_series(city, series, info)
    assert err.value.source == str(path) and err.value.row == want_row and err.value.field == want_field
    assert fingerprint(city) == snap


def test_a_key_that_ends_several_codes_is_refused_not_written_to_one_of_them(city, tmp_path):
    """``f00`` at ``--level floor`` is the ground floor of every building: an error naming the row and candidates."""
    floors = city.units(level="floor").index
    tail = floors[0].rsplit("/", 1)[1]
    assert sum(c.endswith("/" + tail) for c in floors) > 1, "the test city has several floors of that name"
    path = tmp_path / "floors.csv"
    pd.DataFrame({"code": [floors[0], tail],  # a full code, then a key that ends many
                  "time": ["2032-01-01T00:00Z"] * 2, "variable": ["people"] * 2, "value": [5.0, 6.0]}).to_csv(
        path, index=False)
    snap = fingerprint(city)
    with pytest.raises(ValidationError, match="ambiguous at level 'floor'") as err:
        ingest_file(city, path, loader=loader_for(path), options=FileOptions(variable="people", level="floor"))
    assert err.value.row == 1 and err.value.field == "code" and str(path) in str(err.value)
    assert floors[0] in str(err.value) or "more" in str(err.value)
    assert fingerprint(city) == snap
