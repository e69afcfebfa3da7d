"""Every loader reads its formats, reprojects to EPSG:4326 and refuses what it cannot trust."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr
from pyproj import Transformer

from ciu.errors import ValidationError
from ciu.ingest.arrays import ArrayLoader, ArrayMapping, localize_wall_clock, netcdf_mapping
from ciu.ingest.base import file_sha256, loader_for, registered
from ciu.ingest.cityjson import CityJSONLoader
from ciu.ingest.timeseries import TimeSeriesLoader
from ciu.ingest.vector import VectorLoader
from tests.ingest_files import cityjson_doc, footprints, long_series, write_json, write_vector

def _centroids(frame) -> np.ndarray:
    return shapely.get_coordinates(shapely.centroid(np.asarray(frame.geometry.values, dtype=object)))


CENTRES = [(-73.985 + 0.001 * i, 40.75 + 0.0005 * i) for i in range(5)]


def test_registry_holds_every_family():
    assert [lo.name for lo in registered()] == ["vector", "cityjson", "timeseries", "arrays"]


@pytest.mark.parametrize("suffix", [".geojson", ".gpkg", ".shp", ".parquet", ".fgb"])
def test_vector_formats_read_and_reproject(tmp_path, suffix):
    frame = footprints(CENTRES).to_crs(2263)  # NY State Plane, feet
    path = write_vector(frame, tmp_path / f"b{suffix}")
    loader = loader_for(path)
    assert loader.name == "vector" and loader.can_open(path)
    layer = loader.read(path, key="bid")
    assert layer.frame.crs.to_epsg() == 4326
    assert "2263" in layer.source_crs
    got = layer.frame.sort_values("bid")  # FlatGeobuf stores features in spatial-index order
    assert np.allclose(_centroids(got), _centroids(footprints(CENTRES)), atol=1e-7)
    assert list(got["bid"]) == [f"B{i:03d}" for i in range(5)]
    assert sorted(layer.frame["feature"]) == [0, 1, 2, 3, 4]


def test_vector_without_crs_is_refused_unless_named(tmp_path):
    frame = footprints(CENTRES).to_crs(2263)
    path = write_vector(frame, tmp_path / "nocrs.shp")
    (tmp_path / "nocrs.prj").unlink()  # a Shapefile without its .prj names no CRS
    with pytest.raises(ValidationError) as err:
        VectorLoader().read(path)
    assert err.value.field == "crs" and err.value.source == str(path)
    layer = VectorLoader().read(path, crs="EPSG:2263")
    assert layer.frame.crs.to_epsg() == 4326
    assert abs(_centroids(layer.frame)[0, 0] - CENTRES[0][0]) < 1e-6


def test_vector_crs_disagreeing_with_file_is_refused(tmp_path):
    path = write_vector(footprints(CENTRES), tmp_path / "b.gpkg")
    with pytest.raises(ValidationError, match="EPSG:4326"):
        VectorLoader().read(path, crs="EPSG:2263")


def test_shapefile_checksum_covers_its_parts(tmp_path):
    path = write_vector(footprints(CENTRES), tmp_path / "b.shp")
    before = file_sha256(path)
    (tmp_path / "b.prj").write_text("GEOGCS[\"x\"]")
    assert file_sha256(path) != before


def test_cityjson_building_storeys_and_height(tmp_path):
    path = write_json(cityjson_doc(), tmp_path / "one.city.json")
    assert loader_for(path).name == "cityjson"
    layer = CityJSONLoader().read(path)
    b = layer.frame.iloc[0]
    assert b["id"] == "bldg1" and b["measured_height"] == 9.0 and b["floors"] == 3
    assert layer.frame.crs.to_epsg() == 4326 and "28992" in layer.source_crs
    # footprint 10 × 8 m at the right place
    to_rd = Transformer.from_crs(4326, 28992, always_xy=True)
    xs, ys = to_rd.transform(*np.array(b.geometry.exterior.coords).T)
    assert np.isclose(xs.min(), 121000, atol=0.01) and np.isclose(ys.max() - ys.min(), 8, atol=0.01)
    storeys = layer.parts["storeys"]
    assert list(storeys["z_min"]) == [0.0, 3.0, 6.0] and list(storeys["z_max"]) == [3.0, 6.0, 9.0]


def test_json_files_are_told_apart_by_their_type_wherever_it_stands(tmp_path):
    """A CityJSON file whose "type" comes after megabytes of city objects, named plain .json."""
    doc = cityjson_doc()
    late = {k: v for k, v in doc.items() if k != "type"}
    late["metadata"] = {**late.get("metadata", {}), "note": "x" * 3_000_000}
    late["type"] = doc["type"]
    path = write_json(late, tmp_path / "late.json")
    assert path.read_bytes().index(b'"CityJSON"') > 3_000_000  # far past any first block a reader might peek at
    assert loader_for(path).name == "cityjson" and len(CityJSONLoader().read(path).frame) == 1
    geo = write_vector(footprints(CENTRES), tmp_path / "b.geojson")
    plain = tmp_path / "b.json"
    plain.write_bytes(geo.read_bytes())
    assert loader_for(plain).name == "vector"
    other = tmp_path / "other.json"
    other.write_text('{"name": "not a layer", "kind": "CityJSONFeature", "type": "Catalog"}')
    with pytest.raises(ValidationError, match="no loader opens this file"):
        loader_for(other)


def test_cityjson_without_reference_system_needs_a_crs(tmp_path):
    path = write_json(cityjson_doc(epsg=None), tmp_path / "nocrs.city.json")
    with pytest.raises(ValidationError) as err:
        CityJSONLoader().read(path)
    assert err.value.field == "crs"
    assert CityJSONLoader().read(path, crs="EPSG:28992").frame.crs.to_epsg() == 4326


def test_timeseries_long_csv_and_parquet(tmp_path):
    times = pd.date_range("2024-05-01", periods=3, freq="h", tz="UTC")
    frame = long_series(["a/b", "a/c"], times, "people")
    csv = tmp_path / "s.csv"
    frame.to_csv(csv, index=False)
    pq = tmp_path / "s.parquet"
    frame.to_parquet(pq)
    for path in (csv, pq):
        assert loader_for(path).name == "timeseries"
        s = TimeSeriesLoader().read(path)
        assert len(s.frame) == 6 and s.params["layout"] == "long"
        assert s.frame["time"].dt.tz is not None
        assert s.frame["value"].sum() == frame["value"].sum()


def test_timeseries_wide_with_local_time(tmp_path):
    path = tmp_path / "wide.csv"
    pd.DataFrame({"time": ["2024-07-01 08:00", "2024-07-01 09:00"], "z1": [1, 2], "z2": [3, 4]}).to_csv(path,
                                                                                                        index=False)
    s = TimeSeriesLoader().read(path, variable="trips", tz="America/New_York")
    assert s.params["layout"] == "wide" and len(s.frame) == 4
    assert set(s.frame["key"]) == {"z1", "z2"}
    first = s.frame[s.frame["key"] == "z1"].sort_values("time")
    assert first["time"].iloc[0] == pd.Timestamp("2024-07-01 12:00", tz="UTC")  # EDT = UTC-4
    assert list(first["row"]) == [0, 1]


def test_timeseries_clocks_offsets_daylight_saving_and_time_zones(tmp_path):
    """Instants with different offsets are what they say; naive local times in the hour the clocks skip move forward
    by the gap (counted in the notes); the hour they repeat is its first occurrence; an unknown zone is refused."""
    path = tmp_path / "mixed.csv"
    pd.DataFrame({"code": ["a", "b"], "time": ["2026-03-29T00:30:00Z", "2026-03-29T03:30:00+02:00"],
                  "value": [1, 2]}).to_csv(path, index=False)
    s = TimeSeriesLoader().read(path, variable="people")
    assert list(s.frame["time"]) == [pd.Timestamp("2026-03-29 00:30", tz="UTC"),
                                     pd.Timestamp("2026-03-29 01:30", tz="UTC")] and not s.notes
    local = tmp_path / "local.csv"
    pd.DataFrame({"code": ["a"] * 4, "time": ["2026-03-29 01:30", "2026-03-29 02:30", "2026-03-29 03:30",
                                              "2026-10-25 02:30"], "value": [1, 2, 3, 4]}).to_csv(local, index=False)
    s = TimeSeriesLoader().read(local, variable="people", tz="Europe/Amsterdam")
    assert list(s.frame["time"]) == [pd.Timestamp(t, tz="UTC") for t in ("2026-03-29 00:30", "2026-03-29 01:00",
                                                                          "2026-03-29 01:30", "2026-10-25 00:30")]
    assert len(s.notes) == 1 and "1 local time(s)" in s.notes[0] and "row 1" in s.notes[0]
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Olympus'") as err:
        TimeSeriesLoader().read(local, variable="people", tz="Mars/Olympus")
    assert err.value.field == "tz"


def _mapping(n_t: int = 4, n_u: int = 3) -> ArrayMapping:
    return ArrayMapping(key="flows", units=[f"u{i}" for i in range(n_u)],
                        times=pd.date_range("2024-01-01", periods=n_t, freq="h"), channels={0: "out", 1: "in"})


@pytest.mark.parametrize("fmt", ["npz", "h5"])
def test_arrays_npz_and_hdf5(tmp_path, fmt):
    data = np.arange(4 * 3 * 2, dtype=float).reshape(4, 3, 2)
    path = tmp_path / f"a.{fmt}"
    if fmt == "npz":
        np.savez(path, flows=data)
    else:
        with h5py.File(path, "w") as h5:
            h5["flows"] = data
    assert loader_for(path).name == "arrays"
    s = ArrayLoader().read(path, mapping=_mapping())
    assert len(s.frame) == 24
    out = s.frame[s.frame["variable"] == "out"]
    assert out["value"].sum() == data[:, :, 0].sum()
    u1 = out[out["key"] == "u1"].sort_values("time")
    assert list(u1["value"]) == list(data[:, 1, 0])


def test_netcdf_with_its_own_coordinates(tmp_path):
    times = pd.date_range("2024-01-01", periods=5, freq="D")
    ds = xr.Dataset({"temp": (("zone", "time"), np.arange(10, dtype=float).reshape(2, 5))},
                    coords={"zone": ["d1", "d2"], "time": times})
    path = tmp_path / "t.nc"
    ds.to_netcdf(path)
    mapping = netcdf_mapping(path, "temp", unit_dim="zone")
    s = ArrayLoader().read(path, mapping=mapping)
    d2 = s.frame[s.frame["key"] == "d2"].sort_values("time")
    assert list(d2["value"]) == [5.0, 6.0, 7.0, 8.0, 9.0]


def test_wall_clock_gap_and_fold():
    times = pd.date_range("2019-03-10", periods=4, freq="h")  # 02:00 does not exist in New York
    values = np.array([[1.0], [1.0], [0.0], [1.0]])
    keep, utc = localize_wall_clock(times, "America/New_York", values, source="f", field="x")
    assert list(keep) == [0, 1, 3]
    assert utc[2] == pd.Timestamp("2019-03-10 07:00", tz="UTC")  # 03:00 EDT
    with pytest.raises(ValidationError, match="does not exist"):
        localize_wall_clock(times, "America/New_York", np.ones((4, 1)), source="f", field="x")
    fold = pd.date_range("2019-11-03 00:00", periods=3, freq="h")
    keep, utc = localize_wall_clock(fold, "America/New_York", np.ones((3, 1)), source="f", field="x")
    assert utc[1] == pd.Timestamp("2019-11-03 05:00", tz="UTC")  # the first 01:00 (EDT)


def test_every_loader_turns_the_users_options_into_its_own() -> None:
    import inspect
    from pathlib import Path

    from ciu.ingest.base import FileOptions, registered

    for loader in registered():
        if loader.name == "arrays":  # a NetCDF file needs its variable and unit dimension named
            with pytest.raises(ValidationError, match="--unit-dim") as err:
                loader.read_options(Path("x.nc"), FileOptions(variable="v"))
            assert err.value.field == "unit_dim"
            continue
        options = loader.read_options(Path("x"), FileOptions(variable="v", key="k", crs="EPSG:28992"), counts=True)
        accepted = inspect.signature(loader.read).parameters
        named = {n for n, p in accepted.items() if p.kind == p.KEYWORD_ONLY}
        assert options and "crs" in options or "variable" in options, (loader.name, options)
        assert {"crs"} <= named or {"variable", "tz"} <= named, (loader.name, named)  # the format's own options
        inspect.signature(loader.read).bind("x", **options)  # read takes every option it is given
