"""Levels are data: kinds and key prefixes come from the level list, not from level names in code."""

from __future__ import annotations

import geopandas as gpd
import psycopg
import pytest
import shapely

from ciu.errors import ConfigError, ValidationError
from ciu.ingest.base import FileOptions, loader_for
from ciu.ingest.builder import LevelLayer, rule_for
from ciu.ingest.generic import ingest_file
from ciu.levels import KNOWN, Level, hierarchy, level, of_kind
from ciu.migrate import migrate
from ciu.settings import TwinSettings
from ciu.twin import Twin
from tests.ingest_files import footprints, write_vector

CUSTOM = ({"name": "room", "kind": "storey", "prefix": "r"}, {"name": "house", "kind": "structure", "prefix": "h"},
          "parish", "city")


def test_names_take_their_known_kind_and_objects_say_theirs() -> None:
    assert level("building") == Level("building", "structure", "b") == KNOWN["building"]
    assert level("parish") == Level("parish", "area", "")
    assert level({"name": "house", "kind": "structure", "prefix": "h"}).placement == "point"
    assert level({"name": "grid", "prefix": "z"}) == Level("grid", "area", "z")  # known kind, own prefix
    levels = hierarchy(CUSTOM)
    assert [lv.name for lv in levels] == ["room", "house", "parish", "city"]
    assert of_kind(levels, "storey").name == "room" and of_kind(levels, "structure").name == "house"
    assert of_kind(hierarchy(["zone", "city"]), "structure") is None


@pytest.mark.parametrize("bad, says", [
    (["city", "city"], "distinct"), ([], "distinct"), (["Big"], "lower-case"),
    ([{"name": "room", "kind": "storey"}, "parish"], "must be a structure"),
    ([{"name": "x", "kind": "tower"}], "kind 'tower'"), ([{"name": "x", "prefix": "B-"}], "prefix"),
    ([{"name": "x", "colour": "red"}], "unknown keys"), ([{"kind": "area"}], "a name"),
])
def test_a_bad_level_list_says_what_is_wrong(bad, says) -> None:
    with pytest.raises(ConfigError, match=says):
        hierarchy(bad)


def test_the_setting_reads_names_and_objects(monkeypatch) -> None:
    monkeypatch.setenv("CIU_LEVELS", '["room", {"name": "house", "kind": "structure", "prefix": "h"}, "city"]')
    assert hierarchy(TwinSettings().levels)[1] == Level("house", "structure", "h")


def test_placement_follows_the_level_kind_not_its_name() -> None:
    square = gpd.GeoDataFrame({"k": ["a"]}, geometry=[shapely.box(0, 0, 1, 1)], crs="EPSG:4326")
    points = gpd.GeoDataFrame({"k": ["a"]}, geometry=[shapely.Point(0, 0)], crs="EPSG:4326")
    assert rule_for(LevelLayer("house", square, key="k"), level({"name": "house", "kind": "structure"})) == "point"
    assert rule_for(LevelLayer("building", square, key="k"), Level("building", "area")) == "overlap"
    assert rule_for(LevelLayer("parish", points, key="k"), level("parish")) == "point"


def _polygons(path, boxes: dict[str, shapely.Polygon]):
    frame = gpd.GeoDataFrame({"key": list(boxes)}, geometry=list(boxes.values()), crs="EPSG:4326")
    return write_vector(frame, path)


def _ingest(twin, path, **kw):
    return ingest_file(twin, path, loader=loader_for(path), options=FileOptions(**kw))


def test_a_twin_with_its_own_levels_places_houses_and_makes_rooms(db_url, tmp_path) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        migrate(conn, levels=CUSTOM)
    with Twin.connect(db_url, migrate=False) as twin:
        assert twin.level_specs == hierarchy(CUSTOM)
        assert twin.level("house").kind == "structure" and twin.level_of_kind("storey").name == "room"
        x, y = -73.99, 40.75
        _ingest(twin, _polygons(tmp_path / "city.geojson", {"c": shapely.box(x, y, x + 0.02, y + 0.01)}),
                level="city", key="key")
        _ingest(twin, _polygons(tmp_path / "parish.geojson", {"west": shapely.box(x, y, x + 0.01, y + 0.01),
                                                             "east": shapely.box(x + 0.01, y, x + 0.02, y + 0.01)}),
                level="parish", key="key")
        houses = footprints([(x + 0.005, y + 0.005), (x + 0.015, y + 0.005)])
        report, lines = _ingest(twin, write_vector(houses, tmp_path / "houses.gpkg"), level="house", key="bid",
                                floors=True)
        units = twin.units()
        house = units[units["level"] == "house"]
        rooms = units[units["level"] == "room"]
        assert sorted(house.index) == ["c/east/hb001", "c/west/hb000"]  # the level's prefix, the parish by point
        assert len(rooms) == int(houses["floors"].sum()) == report.inserted - 2
        assert set(rooms["parent_code"]) == set(house.index)
        assert "c/west/hb000/r00" in rooms.index and not rooms.index.str.contains("/f").any()
        assert any("floors made" in line for line in lines)
        with pytest.raises(ValidationError, match="structure level"):  # a parish is not a structure
            _ingest(twin, _polygons(tmp_path / "p2.geojson", {"north": shapely.box(x, y, x + 0.001, y + 0.001)}),
                    level="parish", key="key", floors=True)


def test_kinds_cannot_change_while_units_exist(city) -> None:
    assert city.level("floor").kind == "storey" and city.level("building").prefix == "b"  # seeded by migration
    with pytest.raises(ConfigError, match="holds units"):
        migrate(city.store.conn, levels=("floor", "building", {"name": "grid", "prefix": "z"}, "district", "city"))
