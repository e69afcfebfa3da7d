"""The sample-city generator: deterministic, complete, consistent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ciu.errors import ConfigError
from ciu.ingest.generator import SampleConfig, build_sample, generate
from tests.conftest import TINY_CITY, fingerprint


@pytest.fixture(scope="module")
def tiny():
    return generate(TINY_CITY)


def test_same_seed_same_city(tiny):
    again = generate(TINY_CITY)
    pd.testing.assert_frame_equal(tiny.observations, again.observations)
    assert list(tiny.units["code"]) == list(again.units["code"])
    other = generate(TINY_CITY.model_copy(update={"seed": 8}))
    assert not tiny.observations["value"].equals(other.observations["value"])


def test_units_follow_the_rules(tiny):
    units = tiny.units.set_index("code")
    floors = units[units["level"] == "floor"]
    buildings = units[units["level"] == "building"]
    assert len(buildings) == TINY_CITY.buildings
    # floors stack without gaps up to the roof, and match the floor count
    for code, b in buildings.iterrows():
        mine = floors[floors["parent_code"] == code].sort_values("z_min")
        assert len(mine) == b["attrs"]["floors"]
        assert mine["z_min"].iloc[0] == 0
        np.testing.assert_allclose(mine["z_min"].to_numpy()[1:], mine["z_max"].to_numpy()[:-1])
        assert mine["z_max"].iloc[-1] == pytest.approx(b["z_max"], abs=0.01)
        # building → grid: a point on the footprint lies in its grid cell
        cell = units.loc[b["parent_code"]]
        assert cell["level"] == "grid"
        assert cell.geometry.intersects(b.geometry.point_on_surface())
    assert {"tax_status", "security_level", "assessed_value_eur"} <= set(buildings["restricted"].iloc[0])


def test_rhythms_weather_and_holidays(tiny):
    obs = tiny.observations
    people = obs[obs["variable"] == "people"].groupby("time")["value"].sum()
    local = people.index.tz_convert(TINY_CITY.timezone)
    weekday_noon = people[(local.day_of_week < 5) & (local.hour == 12)].mean()
    weekday_3am = people[(local.day_of_week < 5) & (local.hour == 3)].mean()
    assert weekday_noon != weekday_3am
    temp = obs[obs["variable"] == "temperature"]
    assert temp["code"].nunique() == TINY_CITY.districts
    assert set(obs[obs["variable"] == "holiday"]["value"].unique()) <= {0.0, 1.0}
    assert (obs[obs["variable"] == "people"]["value"] >= 0).all()


def test_bad_config_is_named(tmp_path):
    bad = tmp_path / "city.toml"
    bad.write_text('name = "Not Safe"\n')
    with pytest.raises(ConfigError, match="city.toml"):
        SampleConfig.from_toml(bad)
    with pytest.raises(ConfigError, match="buildings fit"):
        generate(SampleConfig(buildings=60, radius_m=120, weeks=1))


def test_build_is_idempotent(city):
    before = fingerprint(city)
    report = build_sample(city, TINY_CITY)
    assert report.skipped_source
    assert fingerprint(city) == before
    source = city.sources()[0]
    assert source.loader == "ingest.generator" and source.rows > 0 and len(source.sha256) == 64
