"""The hierarchy builder follows the rules of DESIGN.md and reports what falls outside."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely

from ciu.errors import HierarchyError
from ciu.ingest.builder import LevelLayer, build_hierarchy, floor_units, h3_layer

LEVELS = ("floor", "building", "grid", "district", "city")
D = 0.01  # degrees


def _gdf(**cols):
    geometry = cols.pop("geometry")
    return gpd.GeoDataFrame(cols, geometry=geometry, crs="EPSG:4326")


def _layers():
    city = _gdf(key=["c"], geometry=[shapely.box(0, 0, 2 * D, D)])
    districts = _gdf(key=["w", "e"], geometry=[shapely.box(0, 0, D, D), shapely.box(D, 0, 2 * D, D)])
    # cell "x" straddles the border, mostly east; cell "far" lies outside the city
    cells = _gdf(key=["a", "x", "far"], geometry=[shapely.box(0, 0, 0.5 * D, 0.5 * D),
                                                  shapely.box(0.8 * D, 0, 1.6 * D, 0.5 * D),
                                                  shapely.box(5 * D, 5 * D, 6 * D, 6 * D)])
    return city, districts, cells


def test_codes_parents_and_overlap_rule():
    city, districts, cells = _layers()
    tree = build_hierarchy([LevelLayer("city", city, key="key"), LevelLayer("district", districts, key="key"),
                            LevelLayer("grid", cells, key="key", prefix="g")], levels=LEVELS)
    units = tree.units.set_index("code")
    assert list(tree.units["code"]) == ["c", "c/w", "c/e", "c/w/ga", "c/e/gx"]
    assert units.loc["c/e/gx", "parent_code"] == "c/e"  # largest overlap wins
    assert tree.orphans["grid"] == ["far"]
    assert tree.orphan_report() == ["1 grid units outside every parent left out: far"]


def test_outside_units_can_take_the_nearest_parent():
    city, districts, cells = _layers()
    tree = build_hierarchy([LevelLayer("city", city, key="key"), LevelLayer("district", districts, key="key"),
                            LevelLayer("grid", cells, key="key", outside="nearest")], levels=LEVELS)
    assert "c/e/far" in set(tree.units["code"])
    assert tree.nearest["grid"] == ["far"] and tree.orphans["grid"] == []
    assert "given the nearest one: far" in tree.orphan_report()[0]


def test_buildings_by_point_on_surface_and_points():
    cells = _gdf(key=["left", "right"], geometry=[shapely.box(0, 0, D, D), shapely.box(D, 0, 2 * D, D)])
    grid = cells.assign(code=["c/d/left", "c/d/right"]).set_index("code")
    # an L whose centroid lies in the right cell but whose body is mostly left: the point on its surface decides
    ell = shapely.Polygon([(0.1 * D, 0.1 * D), (1.9 * D, 0.1 * D), (1.9 * D, 0.2 * D), (0.2 * D, 0.2 * D),
                           (0.2 * D, 0.9 * D), (0.1 * D, 0.9 * D)])
    point = shapely.Point(1.5 * D, 0.5 * D)
    outside = shapely.Point(9 * D, 9 * D)
    blds = _gdf(key=["l", "p", "out"], geometry=[ell, point, outside])
    tree = build_hierarchy([LevelLayer("building", blds, key="key", prefix="b")], levels=LEVELS,
                           existing={"grid": grid})
    got = dict(zip(tree.units["code"], tree.units["parent_code"]))
    expected_parent = "c/d/left" if shapely.point_on_surface(ell).x < D else "c/d/right"
    assert got["c/d/" + expected_parent.rsplit("/", 1)[1] + "/bl"] == expected_parent
    assert got["c/d/right/bp"] == "c/d/right"
    assert tree.orphans["building"] == ["out"]


def test_missing_parent_level_is_an_error():
    blds = _gdf(key=["b"], geometry=[shapely.Point(0, 0)])
    with pytest.raises(HierarchyError, match="needs parents at level 'grid'"):
        build_hierarchy([LevelLayer("building", blds, key="key")], levels=LEVELS)


def test_h3_grid_covers_the_area():
    area = shapely.box(-73.99, 40.74, -73.98, 40.75)
    layer = h3_layer(area, 9)
    union = shapely.union_all(np.asarray(layer.frame.geometry.values, dtype=object))
    assert union.contains(area) or union.buffer(1e-9).contains(area)
    assert (layer.frame["resolution"] == 9).all() and layer.frame["h3"].is_unique


def test_floors_from_counts_or_height():
    blds = _gdf(code=["c/b1", "c/b2"], floors=[4, None], height_m=[14.0, 9.5],
                geometry=[shapely.box(0, 0, D, D)] * 2).set_index("code", drop=False)
    floors = floor_units(blds, storey_height=3.0)
    by = floors.groupby("parent_code")
    assert by.size().to_dict() == {"c/b1": 4, "c/b2": 3}
    est = floors.set_index("code")["attrs"].map(lambda a: a["estimated"])
    assert not est["c/b1/f00"] and est["c/b2/f02"]
    assert floors.set_index("code").loc["c/b1/f03", "z_max"] == 14.0
