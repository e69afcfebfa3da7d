"""The store on a real PostGIS: tree invariant, loads, errors that leave no trace."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg
import pytest
import shapely

from ciu.domain import Variable
from ciu.errors import CiuError, ConflictError, DuplicateError, HierarchyError, UnknownLevel, ValidationError
from ciu.migrate import applied, available, migrate
from tests.conftest import fingerprint

SQUARE = shapely.box(5.0, 52.0, 5.01, 52.01)


def units_frame(rows: list[dict]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=4326)


def small_tree() -> gpd.GeoDataFrame:
    return units_frame([
        dict(code="c", parent_code=None, level="city", geometry=SQUARE),
        dict(code="c/d1", parent_code="c", level="district", geometry=SQUARE),
        dict(code="c/d1/g1", parent_code="c/d1", level="grid", geometry=SQUARE),
        dict(code="c/d1/g1/b1", parent_code="c/d1/g1", level="building", geometry=shapely.box(5.001, 52.001, 5.002, 52.002),
             z_min=0.0, z_max=6.0),
        dict(code="c/d1/g1/b1/f0", parent_code="c/d1/g1/b1", level="floor", geometry=shapely.box(5.001, 52.001, 5.002, 52.002),
             z_min=0.0, z_max=3.0),
    ])


def test_migrations_rerun_is_a_no_op(twin):
    before = fingerprint(twin)
    assert applied(twin.store.conn) == [m.version for m in available()]
    assert migrate(twin.store.conn) == []
    assert fingerprint(twin) == before


def test_levels_default_order(twin):
    assert twin.levels == ("floor", "building", "grid", "district", "city")
    with pytest.raises(UnknownLevel, match="unknown level 'street'"):
        twin.units(level="street")


def test_load_units_and_navigate(twin):
    report = twin.load_units(small_tree())
    assert report.inserted == 5
    floor = twin.unit("c/d1/g1/b1/f0")
    assert floor.parent.code == "c/d1/g1/b1"
    assert [a.code for a in floor.ancestors] == ["c/d1/g1/b1", "c/d1/g1", "c/d1", "c"]
    assert [c.code for c in twin.unit("c/d1").children] == ["c/d1/g1"]
    assert (floor.z_min, floor.z_max) == (0.0, 3.0)
    assert list(twin.units(within="c/d1/g1").index) == ["c/d1/g1", "c/d1/g1/b1", "c/d1/g1/b1/f0"]
    assert list(twin.units(bbox=(5.0005, 52.0005, 5.0015, 52.0015), level="floor").index) == ["c/d1/g1/b1/f0"]
    assert twin.units(bbox=(6.0, 53.0, 6.1, 53.1)).empty
    # loading the same units again changes nothing
    before = fingerprint(twin)
    again = twin.load_units(small_tree())
    assert (again.inserted, again.unchanged) == (0, 5)
    assert fingerprint(twin) == before


def test_database_enforces_tree_invariant(twin):
    """Even SQL that bypasses the loader cannot break the tree."""
    twin.load_units(small_tree())
    conn = twin.store.conn
    parent_id = conn.execute("SELECT id FROM ciu.unit WHERE code = 'c/d1'").fetchone()[0]
    with pytest.raises(psycopg.errors.CheckViolation, match="parent must be one level up"):
        conn.execute(
            "INSERT INTO ciu.unit (code, level, parent_id, geom) VALUES ('c/d1/b9', 'building', %s,"
            " ST_GeomFromText('POLYGON((5 52,5.001 52,5.001 52.001,5 52.001,5 52))', 4326))", (parent_id,))
    with pytest.raises(psycopg.errors.CheckViolation, match="has no parent"):
        conn.execute("INSERT INTO ciu.unit (code, level, geom) VALUES ('x', 'district',"
                     " ST_GeomFromText('POINT(5 52)', 4326))")
    with pytest.raises(psycopg.errors.CheckViolation, match="does not extend"):
        conn.execute("INSERT INTO ciu.unit (code, level, parent_id, geom) VALUES ('z/g2', 'grid', %s,"
                     " ST_GeomFromText('POINT(5 52)', 4326))", (parent_id,))
    # moving a grid cell under the city (two levels up) is refused too
    city_id = conn.execute("SELECT id FROM ciu.unit WHERE code = 'c'").fetchone()[0]
    with pytest.raises(psycopg.errors.CheckViolation, match="one level up"):
        conn.execute("UPDATE ciu.unit SET parent_id = %s WHERE code = 'c/d1/g1'", (city_id,))
    # changing a parent's level breaks its children: refused
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE ciu.unit SET level = 'grid' WHERE code = 'c/d1'")
    # a parent cannot be deleted from under its children
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="below it"):
        conn.execute("DELETE FROM ciu.unit WHERE code = 'c/d1/g1/b1'")
    # areas are filled in by the database when a writer leaves them out
    area, geodesic = conn.execute(
        "SELECT area_m2, ST_Area(geom::geography) FROM ciu.unit WHERE code = 'c/d1/g1'").fetchone()
    assert area == pytest.approx(geodesic, rel=1e-4)  # the loader's equal-area figure agrees with PostGIS
    conn.execute("UPDATE ciu.unit SET geom = ST_GeomFromText('POLYGON((5 52,5.005 52,5.005 52.01,5 52.01,5 52))', 4326)"
                 " WHERE code = 'c/d1/g1'")
    assert conn.execute("SELECT area_m2 FROM ciu.unit WHERE code = 'c/d1/g1'").fetchone()[0] == pytest.approx(area / 2, rel=0.01)
    # levels are frozen while units exist
    with pytest.raises(psycopg.errors.CheckViolation, match="levels cannot change"):
        conn.execute("INSERT INTO ciu.level (name, rank) VALUES ('room', 99)")


@pytest.mark.parametrize(
    ("mutate", "error", "field", "row"),
    [
        (lambda f: f.assign(parent_code=f["parent_code"].where(f["code"] != "c/d1/g1/b1", "c/d1")).assign(
            code=f["code"].replace({"c/d1/g1/b1": "c/d1/b1", "c/d1/g1/b1/f0": "c/d1/b1/f0"}),
            parent_code=f["parent_code"].where(f["code"] != "c/d1/g1/b1/f0", "c/d1/b1").where(
                f["code"] != "c/d1/g1/b1", "c/d1")),
         HierarchyError, "parent_code", "c/d1/b1"),
        (lambda f: pd.concat([f, f.iloc[[2]]], ignore_index=True), DuplicateError, "code", 5),
        (lambda f: f.assign(geometry=[shapely.Polygon([(5, 52), (5.01, 52.01), (5.01, 52), (5, 52.01)])
                                      if c == "c/d1/g1" else g for c, g in zip(f["code"], f.geometry)]),
         ValidationError, "geometry", "c/d1/g1"),
        (lambda f: f.assign(geometry=[shapely.Polygon() if c == "c/d1" else g for c, g in zip(f["code"], f.geometry)]),
         ValidationError, "geometry", "c/d1"),
        (lambda f: f.assign(z_max=[-1.0 if c == "c/d1/g1/b1/f0" else z for c, z in zip(f["code"], f["z_max"])]),
         ValidationError, "z_min", "c/d1/g1/b1/f0"),
        (lambda f: f.assign(code=f["code"].replace({"c/d1": "C/D1"})), ValidationError, "code", 1),
        (lambda f: f.assign(level=f["level"].replace({"grid": "zone"})), ValidationError, "level", "c/d1/g1"),
        (lambda f: f[f["code"] != "c/d1"], HierarchyError, "parent_code", "c/d1/g1"),
        (lambda f: f.assign(attrs=[{"use": "office", "height_m": math.nan} if c == "c/d1/g1/b1" else {}
                                   for c in f["code"]]), ValidationError, "attrs", "c/d1/g1/b1"),
        (lambda f: f.assign(restricted=[{"tax": np.float32("inf")} if c == "c/d1/g1/b1/f0" else {} for c in f["code"]]),
         ValidationError, "restricted", "c/d1/g1/b1/f0"),
        (lambda f: f.assign(attrs=[["not", "a", "mapping"] if c == "c/d1" else {} for c in f["code"]]),
         ValidationError, "attrs", "c/d1"),
    ],
    ids=["parent-wrong-level", "duplicate-code", "self-intersecting", "empty-geometry", "inverted-z",
         "not-url-safe", "unknown-level", "missing-parent", "nan-attribute", "infinite-restricted",
         "attrs-not-a-mapping"],
)
def test_bad_units_raise_clear_error_and_change_nothing(twin, mutate, error, field, row):
    twin.load_units(small_tree().iloc[:1])  # the city exists already
    before = fingerprint(twin)
    bad = mutate(small_tree()).reset_index(drop=True)
    with pytest.raises(error) as info:
        twin.load_units(bad, source="units.geojson")
    exc = info.value
    assert isinstance(exc, CiuError)
    assert exc.field == field
    assert exc.row == row
    assert exc.source == "units.geojson"
    assert "units.geojson" in str(exc) and field in str(exc)
    assert fingerprint(twin) == before


def test_stored_unit_with_other_content_is_a_duplicate(twin):
    twin.load_units(small_tree())
    before = fingerprint(twin)
    moved = small_tree()
    moved.loc[moved["code"] == "c/d1/g1/b1/f0", "z_max"] = 3.5
    with pytest.raises(DuplicateError, match="already stored with a different z-range"):
        twin.load_units(moved)
    assert fingerprint(twin) == before


def register(twin):
    twin.store.register_variables([
        Variable("people", "persons", "social", "sum"),
        Variable("temperature", "degC", "external", "area_weighted_mean"),
    ])


def test_bad_observations_change_nothing(twin):
    twin.load_units(small_tree())
    register(twin)
    good = pd.DataFrame({"code": ["c/d1/g1/b1/f0"] * 3, "variable": "people",
                         "time": pd.date_range("2026-01-01", periods=3, freq="h", tz="UTC"), "value": [1.0, 2.0, 3.0]})
    twin.load_observations(good)
    before = fingerprint(twin)
    cases = [
        (good.assign(value=[1.0, math.nan, 3.0]), ValidationError, "value", 1),
        (good.assign(value=[1.0, 2.0, math.inf]), ValidationError, "value", 2),
        (good.assign(code=["c/d1/g1/b1/f0", "c/nowhere", "c/d1/g1/b1/f0"]), ValidationError, "code", 1),
        (good.assign(variable=["people", "people", "noise"]), ValidationError, "variable", 2),
        (pd.concat([good, good.iloc[[0]]], ignore_index=True), DuplicateError, "time", 3),
        (good.assign(value=[1.0, 2.5, 3.0]), ConflictError, "value", 1),
        (good.assign(time=["2026-01-01T00:00Z", "yesterday", "2026-01-01T02:00Z"]), ValidationError, "time", 1),
    ]
    for frame, error, field, row in cases:
        with pytest.raises(error) as info:
            twin.load_observations(frame, source="counts.csv")
        assert (info.value.field, info.value.row, info.value.source) == (field, row, "counts.csv"), str(info.value)
        assert fingerprint(twin) == before
    # the same rows again are a no-op; a later period only appends
    again = twin.load_observations(good)
    assert (again.inserted, again.unchanged) == (0, 3)
    later = good.assign(time=good["time"] + pd.Timedelta(hours=3))
    assert twin.load_observations(pd.concat([good, later])).inserted == 3


def test_variable_definition_cannot_change(twin):
    register(twin)
    with pytest.raises(ConflictError, match="rollup"):
        twin.store.register_variables([Variable("people", "persons", "social", "max")])
    with pytest.raises(ValidationError, match="rollup"):
        Variable("x", "u", "social", "median")  # type: ignore[arg-type]


def test_nan_is_refused_by_the_database_too(twin):
    twin.load_units(small_tree())
    register(twin)
    with pytest.raises(psycopg.errors.CheckViolation):
        twin.store.conn.execute(
            "INSERT INTO ciu.observation (unit_id, variable_id, time, value)"
            " SELECT u.id, v.id, now(), 'NaN'::float8 FROM ciu.unit u, ciu.variable v LIMIT 1")
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="do not exist"):
        twin.store.conn.execute(
            "INSERT INTO ciu.observation (unit_id, variable_id, time, value) VALUES (999999, 1, now(), 1)")


def test_deleting_a_subtree_removes_its_observations(twin):
    twin.load_units(small_tree())
    register(twin)
    twin.load_observations(pd.DataFrame({"code": ["c/d1/g1/b1/f0"], "variable": ["people"],
                                         "time": [pd.Timestamp("2026-01-01", tz="UTC")], "value": [4.0]}))
    assert twin.store.delete_subtree("c/d1/g1") == 3
    assert twin.store.conn.execute("SELECT count(*) FROM ciu.observation").fetchone()[0] == 0
    assert twin.store.series_extent().empty


def test_levels_are_configuration(twin, monkeypatch):
    """A city with seven levels works with the same code; the list is frozen once units exist."""
    seven = ("floor", "building", "grid", "area", "street", "admin_district", "city")
    monkeypatch.setenv("CIU_LEVELS", '["' + '", "'.join(seven) + '"]')
    from ciu.settings import configured_levels

    assert migrate(twin.store.conn, levels=configured_levels()) == []
    twin.store._levels = None
    assert twin.levels == seven
    codes = ["c"]
    rows = [dict(code="c", parent_code=None, level="city", geometry=SQUARE)]
    for level in reversed(seven[:-1]):
        codes.append(f"{codes[-1]}/{level[:2]}1")
        rows.append(dict(code=codes[-1], parent_code=codes[-2], level=level, geometry=SQUARE))
    twin.load_units(units_frame(rows))
    assert [a.level for a in twin.unit(codes[-1]).ancestors] == list(seven[1:])
    with pytest.raises(CiuError, match="cannot change"):
        migrate(twin.store.conn, levels=("floor", "building", "city"))


def test_every_door_refuses_units_in_another_crs(twin):
    before = fingerprint(twin)
    projected = small_tree().to_crs(3857)
    for load in (twin.load_units, twin.store.load_units):  # the store itself, not only the twin, checks it
        with pytest.raises(ValidationError, match="EPSG:4326, not EPSG:3857") as err:
            load(projected, source="tree.gpkg")
        assert err.value.field == "geometry" and err.value.source == "tree.gpkg"
    assert fingerprint(twin) == before
