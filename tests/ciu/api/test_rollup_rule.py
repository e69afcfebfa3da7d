"""The current values of the API's tiles follow the one roll-up rule of ``ciu.rollup``, for every rule.

The tile query aggregates a unit's base descendants in one SQL step where that
equals the level-by-level rule (sum, max, min); a mean of means is not the mean
of all leaves, so those rules go level by level. Both are held against
:meth:`ciu.store.Store.rollup` here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ciu.domain import Variable
from ciu.store import ApiStore
from ciu.twin import Twin

T0 = pd.Timestamp("2030-01-07 09:00", tz="UTC")


@pytest.fixture
def measured(city_url: str):
    twin = Twin.connect(city_url, migrate=False)
    rules = {"rule_sum": "sum", "rule_max": "max", "rule_min": "min", "rule_mean": "mean",
             "rule_area": "area_weighted_mean"}
    twin.store.register_variables([Variable(name, "1", "physical", rule) for name, rule in rules.items()])
    bottom = twin.units(level=twin.levels[0])
    rng = np.random.default_rng(3)
    # not every bottom unit reports: subtrees of unequal size make a mean of means differ from a plain mean
    codes = [c for c in bottom.index if rng.random() < 0.7]
    frame = pd.concat([pd.DataFrame({"code": codes, "variable": name, "time": T0,
                                     "value": rng.gamma(2.0, 10.0, len(codes)).round(3)}) for name in rules])
    twin.load_observations(frame)
    yield twin, rules
    twin.close()


def test_tile_values_equal_the_roll_up_at_every_level_for_every_rule(measured) -> None:
    twin, rules = measured
    api = ApiStore(twin.store.conn)
    codes = pd.Series(twin.store.hierarchy().code, index=twin.store.hierarchy().id)
    differs = 0
    for name in rules:
        for level in twin.levels[1:]:
            context = api.tile_context(level=level, variable=name)
            ids, values = api.current_values(context, time=T0.to_pydatetime())
            ids = [int(i) for i in ids.strip("{}").split(",") if i]
            got = pd.Series([float(v) for v in values.strip("{}").split(",") if v], index=codes.loc[ids].to_numpy())
            want = twin.rollup(name, level=level, start=T0, end=T0 + pd.Timedelta(hours=1)).set_index("code")["value"]
            assert len(want) > 0 and set(got.index) == set(want.index), (name, level)
            np.testing.assert_allclose(got.loc[want.index].to_numpy(), want.to_numpy(), rtol=1e-9, err_msg=name)
            if rules[name] == "mean" and level != twin.levels[1]:
                # what one step over all the leaves would have said
                leaves = twin.rollup(name, level=twin.levels[0], start=T0, end=T0 + pd.Timedelta(hours=1))
                top = twin.units(level=level).index
                plain = {c: leaves[leaves["code"].str.startswith(c + "/")]["value"].mean() for c in top}
                differs += sum(abs(plain[c] - want[c]) > 1e-9 for c in want.index)
    assert differs > 0  # the test city's subtrees are uneven enough for the two to disagree


def test_tiles_protect_counts_only(measured) -> None:
    import mapbox_vector_tile

    from tests.ciu.api.conftest import tile_of

    twin, rules = measured
    api = ApiStore(twin.store.conn)
    level = twin.levels[-2]
    units = twin.units(level=level)
    centre = units.geometry.union_all().centroid
    x, y = tile_of(centre.x, centre.y, 10)
    shown = {}
    for name in ("rule_mean", "people"):
        context = api.tile_context(level=level, variable=name)
        assert context["counted"] is (name == "people")
        at = T0.to_pydatetime() if name != "people" else None
        current = api.current_values(context, time=at)
        tile = api.tile(context, z=10, x=x, y=y, current=current, forecast=api.forecast_values(context, horizon=1),
                        allowed=[], exact=False, k=1e9, epsilon=None)  # k above every value: counts all withheld
        layer = mapbox_vector_tile.decode(tile)[level]
        shown[name] = [f["properties"].get("current") for f in layer["features"]]
    assert shown["people"] and all(v is None for v in shown["people"])
    assert shown["rule_mean"] and all(v is not None for v in shown["rule_mean"])  # a mean is not a count
