"""Loading files into a real PostGIS: placement, provenance, idempotency, increments, conflicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely

from ciu.domain import Variable
from ciu.errors import ConflictError
from ciu.ingest.base import FileOptions, file_sha256, loader_for
from ciu.ingest.cityjson import CityJSONLoader
from ciu.ingest.generic import ingest_file, load_layer
from tests.conftest import fingerprint
from tests.ingest_files import cityjson_doc, footprints, long_series, write_json, write_vector


def _centres_in_cells(city, n: int) -> list[tuple[float, float]]:
    cells = city.units(level="grid")
    pts = shapely.point_on_surface(np.asarray(cells.geometry.values, dtype=object))[:n]
    return [(p.x, p.y) for p in pts]


def _ingest(twin, path, **kw):
    return ingest_file(twin, path, loader=loader_for(path), options=FileOptions(**kw))


def test_footprints_land_under_their_grid_cells_with_floors(city, tmp_path):
    frame = footprints(_centres_in_cells(city, 4)).to_crs(3857)
    path = write_vector(frame, tmp_path / "extra.gpkg")
    before = city.store.count_units()
    report, lines = _ingest(city, path, level="building", key="bid", name="bid", floors=True)
    after = city.store.count_units()
    assert after["building"] - before["building"] == 4
    assert after["floor"] - before["floor"] == int(frame["floors"].sum())
    assert report.inserted == 4 + int(frame["floors"].sum())
    assert any("floors made" in line for line in lines)
    cells = city.units(level="grid")
    blds = city.units(level="building")
    mine = blds[blds.index.str.endswith("/bb000")]
    assert len(mine) == 1
    parent = cells.loc[mine["parent_code"].iloc[0]]
    assert parent.geometry.contains(shapely.point_on_surface(mine.geometry.iloc[0]))
    assert mine["z_max"].iloc[0] == 10.0 and mine["attrs"].iloc[0]["floors"] == 3
    # provenance: the file as given, its checksum, the loader and version, the rows
    src = city.sources()[-1]
    assert src.uri == str(path) and src.sha256 == file_sha256(path) and src.loader == "ingest.vector"
    assert src.loader_version == "1" and src.rows == report.inserted
    per_level = city.store.sources_per_level()
    assert {"level": "building", "kind": "units", "source_id": src.id, "uri": str(path), "n": 4} in per_level


def test_same_file_twice_changes_nothing(city, tmp_path):
    path = write_vector(footprints(_centres_in_cells(city, 3)), tmp_path / "b.geojson")
    _ingest(city, path, level="building", key="bid")
    snap = fingerprint(city)
    report, _ = _ingest(city, path, level="building", key="bid")
    assert report.skipped_source
    assert fingerprint(city) == snap
    # a copy of the same bytes elsewhere is the same source
    copy = tmp_path / "copy.geojson"
    copy.write_bytes(path.read_bytes())
    assert _ingest(city, copy, level="building", key="bid")[0].skipped_source
    assert fingerprint(city) == snap


def test_series_append_and_conflicts(city, tmp_path):
    codes = list(city.units(level="grid").index[:3])
    times = pd.date_range("2030-01-01", periods=6, freq="h", tz="UTC")
    city.store.register_variables([Variable("trips", "trips", "social", "sum", "sum")])
    first = long_series(codes, times[:4], "trips")
    p1 = tmp_path / "p1.csv"
    first.to_csv(p1, index=False)
    r1, _ = _ingest(city, p1, variable="trips")
    assert r1.inserted == 12
    # a later period that overlaps the first by two hours appends only the new hours
    later = long_series(codes, times[2:], "trips")
    later.loc[later["time"].isin([t.isoformat() for t in times[2:4]]), "value"] = \
        first.loc[first["time"].isin([t.isoformat() for t in times[2:4]]), "value"].to_numpy()
    p2 = tmp_path / "p2.csv"
    later.to_csv(p2, index=False)
    r2, _ = _ingest(city, p2, variable="trips")
    assert (r2.inserted, r2.unchanged, r2.conflicts) == (6, 6, 0)
    stored = city.observations("trips")
    assert len(stored) == 18
    # another source that disagrees on one stored value: refused whole, naming the row
    other = later.copy()
    other.loc[4, "value"] = other.loc[4, "value"] + 1
    p3 = tmp_path / "p3.csv"
    other.to_csv(p3, index=False)
    snap = fingerprint(city)
    with pytest.raises(ConflictError) as err:
        _ingest(city, p3, variable="trips")
    assert err.value.source == str(p3) and err.value.row == 4 and err.value.field == "value"
    assert fingerprint(city) == snap
    # or loaded keeping the stored values, with the conflict counted
    r3, lines = _ingest(city, p3, variable="trips", on_conflict="keep")
    assert r3.conflicts == 1 and r3.inserted == 0
    assert any("differ from stored" in line for line in lines)
    assert city.observations("trips")["value"].sum() == stored["value"].sum()


def test_wide_series_by_local_keys(city, tmp_path):
    cells = list(city.units(level="grid").index[:2])
    keys = [c.rsplit("/", 1)[1] for c in cells]
    path = tmp_path / "wide.csv"
    pd.DataFrame({"time": ["2030-02-01T00:00Z", "2030-02-01T01:00Z"], keys[0]: [1, 2], keys[1]: [3, 4]}).to_csv(
        path, index=False)
    report, _ = _ingest(city, path, variable="people", level="grid")
    assert report.inserted == 4
    got = city.observations("people", codes=cells, start="2030-01-31")
    assert got["value"].sum() == 10


def test_netcdf_series(city, tmp_path):
    import xarray as xr

    cells = list(city.units(level="grid").index[:2])
    ds = xr.Dataset({"temperature": (("time", "cell"), np.array([[1.0, 2.0], [3.0, 4.0]]))},
                    coords={"time": pd.date_range("2031-01-01", periods=2, freq="h"), "cell": cells})
    path = tmp_path / "t.nc"
    ds.to_netcdf(path)
    report, _ = _ingest(city, path, variable="temperature", unit_dim="cell")
    assert report.inserted == 4
    assert city.observations("temperature", codes=cells, start="2031-01-01")["value"].tolist() == [1.0, 3.0, 2.0, 4.0]


def test_cityjson_building_with_storeys_as_floors(city, tmp_path):
    cell = city.units(level="grid").iloc[0]
    p = shapely.point_on_surface(cell.geometry)
    from pyproj import Transformer

    x, y = Transformer.from_crs(4326, 28992, always_xy=True).transform(p.x, p.y)
    path = write_json(cityjson_doc(x0=x - 5, y0=y - 4), tmp_path / "b.city.json")
    layer = CityJSONLoader().read(path)
    layer.frame["height_m"] = layer.frame["measured_height"]
    report, _ = load_layer(city, layer, level="building", key="id", floors=True)
    code = f"{cell.name}/bbldg1"
    b = city.unit(code)
    assert b.z_max == 9.0 and [f.z_max for f in b.children] == [3.0, 6.0, 9.0]
    assert [f.attrs["storey"] for f in b.children] == ["s0", "s1", "s2"]  # measured, not estimated
    assert not any(f.attrs["estimated"] for f in b.children)
    assert report.inserted == 4
