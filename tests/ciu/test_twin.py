"""Roll-ups and the feature cube on the tiny generated city."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ciu.errors import UnknownUnit, UnknownVariable


def test_every_level_present(city):
    counts = city.store.count_units()
    assert counts["city"] == 1 and all(n > 0 for n in counts.values())
    districts = city.units(level="district")
    assert districts.crs.to_epsg() == 4326
    for code, row in districts.iterrows():
        assert row["parent_code"] == "tiny" and code.startswith("tiny/")


@pytest.mark.parametrize("level", ["building", "grid", "district", "city"])
def test_sum_rollup_equals_sum_over_children(city, level):
    """For every level, people = the sum over its children, computed from the stored floors."""
    levels = city.levels
    child_level = levels[levels.index(level) - 1]
    parent = city.rollup("people", level=level, freq="h")
    children = city.rollup("people", level=child_level, freq="h")
    units = city.units(level=child_level)
    children["parent"] = units.loc[children["code"], "parent_code"].to_numpy()
    expected = children.groupby(["parent", "time"])["value"].sum()
    got = parent.set_index(["code", "time"])["value"]
    got.index.names = ["parent", "time"]
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False)
    # and the whole city holds every floor's people
    floors = city.observations("people")
    assert np.isclose(parent["value"].sum(), floors["value"].sum())


def test_mean_rollup_is_area_weighted(city):
    """Temperature is stored per district; the city's is the area-weighted mean."""
    districts = city.units(level="district")
    temp = city.observations("temperature", level="district")
    temp["area"] = districts.loc[temp["code"], "area_m2"].to_numpy()
    expected = temp.groupby("time").apply(lambda g: np.average(g["value"], weights=g["area"]), include_groups=False)
    got = city.rollup("temperature", level="city", freq="h").set_index("time")["value"]
    np.testing.assert_allclose(got.sort_index().to_numpy(), expected.sort_index().to_numpy())
    plain_mean = temp.groupby("time")["value"].mean()
    assert not np.allclose(got.sort_index().to_numpy(), plain_mean.sort_index().to_numpy())


def test_external_features_reach_units_below(city):
    rain_city = city.rollup("rain", level="city", freq="D")
    rain_floor = city.rollup("rain", level="floor", freq="D")
    n_floors = len(city.units(level="floor"))
    assert len(rain_floor) == n_floors * len(rain_city)
    per_time = rain_floor.groupby("time")["value"].agg(["min", "max"])
    assert (per_time["min"] == per_time["max"]).all()
    np.testing.assert_allclose(per_time["min"].to_numpy(), rain_city.set_index("time")["value"].to_numpy())


def test_time_resampling_rules(city):
    hourly = city.rollup("rain", level="city", freq="h")
    daily = city.rollup("rain", level="city", freq="D")
    # rain resamples by sum: a day's total equals the sum of its hours
    by_day = hourly.groupby(hourly["time"].dt.floor("D"))["value"].sum()
    np.testing.assert_allclose(daily.set_index("time")["value"].to_numpy(), by_day.to_numpy())
    people_daily = city.rollup("people", level="city", freq="D")
    people_hourly = city.rollup("people", level="city", freq="h")
    means = people_hourly.groupby(people_hourly["time"].dt.floor("D"))["value"].mean()
    np.testing.assert_allclose(people_daily["value"].to_numpy(), means.to_numpy())
    weekly = city.rollup("people", level="city", freq="W")
    assert (weekly["time"].dt.day_of_week == 0).all()


def test_cube_equals_stored_observations(city):
    cube = city.cube(level="floor", variables=["people"])
    assert cube["people"].dims == ("unit", "time")
    stored = city.observations("people")
    pivot = stored.pivot(index="code", columns="time", values="value")
    got = cube["people"].to_pandas()
    got.columns = pd.to_datetime(got.columns).tz_localize("UTC")
    pd.testing.assert_frame_equal(got.loc[pivot.index, pivot.columns], pivot, check_names=False)
    assert cube["people"].attrs["rollup"] == "sum"
    assert set(cube.coords["parent"].to_numpy()) <= set(city.units(level="building").index)


def test_cube_of_upper_level_matches_rollup(city):
    cube = city.cube(level="district", variables=["people", "temperature", "holiday"], freq="D")
    roll = city.rollup("people", level="district", freq="D")
    first = roll[roll["code"] == cube.unit.values[0]]["value"].to_numpy()
    np.testing.assert_allclose(cube["people"].isel(unit=0).to_numpy(), first)
    assert np.isfinite(cube["temperature"]).all()


def test_unknowns_are_named(city):
    with pytest.raises(UnknownUnit, match="no unit with code 'tiny/nowhere'"):
        city.unit("tiny/nowhere")
    with pytest.raises(UnknownVariable, match="'noise'"):
        city.rollup("noise", level="city")


def test_restricted_attributes_only_on_request(city):
    buildings = city.units(level="building")
    assert "restricted" not in buildings.columns
    full = city.units(level="building", include_restricted=True)
    assert {"tax_status", "security_level"} <= set(full["restricted"].iloc[0])
