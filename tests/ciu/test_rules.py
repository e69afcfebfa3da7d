"""The pure rules of the core, without a database: the clock and the roll-up arithmetic."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from ciu import rollup
from ciu.clock import forecast_times, naive_utc, utc, utc_or_none


def test_a_time_without_a_zone_is_utc_and_a_zoned_one_is_converted() -> None:
    assert utc("2026-03-29 02:30") == pd.Timestamp("2026-03-29 02:30", tz="UTC")
    # the hour after Central Europe's spring-forward gap: 03:30 CEST is 01:30 UTC
    assert utc(pd.Timestamp("2026-03-29 03:30").tz_localize("Europe/Amsterdam")) == pd.Timestamp(
        "2026-03-29 01:30", tz="UTC")
    assert utc(datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=10)))).hour == 2
    assert utc_or_none(None) is None and utc_or_none("2026-01-01T00:00Z").tzinfo is not None
    assert naive_utc("2026-10-25T03:30+01:00") == pd.Timestamp("2026-10-25 02:30")  # after the clocks went back


def test_horizon_h_is_h_steps_after_the_issue_time() -> None:
    times = forecast_times("2026-03-29T00:00Z", 3, pd.Timedelta(minutes=15))
    assert list(times) == [pd.Timestamp(f"2026-03-29 00:{m}", tz="UTC") for m in ("15", "30", "45")]


def _tree() -> rollup.Hierarchy:
    # two parents (10, 11) under a root (1); children 100, 101 under 10, child 102 under 11
    return rollup.Hierarchy(id=np.array([1, 10, 11, 100, 101, 102]), parent=np.array([-1, 1, 1, 10, 10, 11]),
                            rank=np.array([2, 1, 1, 0, 0, 0]), area=np.array([6.0, 3.0, 3.0, 1.0, 2.0, 3.0]),
                            code=np.array(["c", "c/a", "c/b", "c/a/x", "c/a/y", "c/b/z"]))


@pytest.mark.parametrize(("rule", "want"), [("sum", {10: 3.0, 11: 5.0}), ("mean", {10: 1.5, 11: 5.0}),
                                            ("max", {10: 2.0, 11: 5.0}), ("min", {10: 1.0, 11: 5.0}),
                                            ("area_weighted_mean", {10: (1 * 1 + 2 * 2) / 3, 11: 5.0})])
def test_one_level_up_by_each_rule(rule: str, want: dict[int, float]) -> None:
    unit, t, value = np.array([100, 101, 102]), np.zeros(3, dtype=np.int64), np.array([1.0, 2.0, 5.0])
    parents, _, values = rollup.step_up(_tree(), unit, t, value, rule=rule)
    assert dict(zip(parents.tolist(), values.tolist())) == pytest.approx(want)


def test_buckets_resampling_and_inheritance_down_the_tree() -> None:
    hour = 3_600_000_000
    unit = np.array([100, 100, 100])
    t = np.array([0, hour // 2, hour + 1])
    _, starts, sums = rollup.resample(unit, t, np.array([1.0, 2.0, 4.0]), step_us=hour, origin_us=0, how="sum")
    assert starts.tolist() == [0, hour] and sums.tolist() == [3.0, 4.0]
    targets, _, values = rollup.inherit_down(_tree(), np.array([1]), np.array([0]), np.array([7.5]),
                                             source_rank=2, target_rank=0)
    assert targets.tolist() == [100, 101, 102] and values.tolist() == [7.5, 7.5, 7.5]
    with pytest.raises(ValueError, match="unknown roll-up rule"):
        rollup.step_up(_tree(), unit, t, t.astype(float), rule="median")
