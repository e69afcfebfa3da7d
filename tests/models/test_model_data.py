"""Series, the city's clock, the forecast contract's windows, missing values and scaling (no database)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ciu.errors import ValidationError
from ciu.models.data import (HOLIDAY_CLASS, ExternalScaler, HierSeries, Level, Scaler, chronological_split, fit_stop,
                         forward_filled, infer_step, issue_steps, target_index, window_index)
from ciu.models.inputs import Inputs
from ciu.models.metrics import alert_skill, metrics
from ciu.models.train import TrainConfig, build_tower, loss_fn, unit_weights


def series_of(times: pd.DatetimeIndex, values: np.ndarray, *, timezone: str | None = None,
              holiday: np.ndarray | None = None) -> HierSeries:
    n = values.shape[1]
    levels = [Level("cell", [f"c{i}" for i in range(n)], np.zeros(n, dtype=np.int64), np.zeros((n, 0), np.float32)),
              Level("city", ["x"], None, np.zeros((1, 0), np.float32))]
    hol = np.zeros(len(times)) if holiday is None else holiday
    return HierSeries(levels, values, times, ["count"], hol[:, None].astype(np.float32), ["holiday"],
                      timezone=timezone)


@pytest.mark.parametrize("freq, per_day", [("15min", 96), ("h", 24), ("4h", 6)])
def test_any_regular_step(freq: str, per_day: int) -> None:
    times = pd.date_range("2026-03-02", periods=per_day * 10, freq=freq)
    s = series_of(times, np.ones((len(times), 3, 1)))
    assert s.step == pd.Timedelta(freq if freq[0].isdigit() else "1" + freq) and s.steps_per_day == per_day
    slot, day = s.calendar()
    assert slot.max() == per_day - 1 and slot[per_day] == 0 and day[per_day] == 1  # Tuesday
    week = s.season_index(7)
    assert week[7 * per_day] == 0 and week[7 * per_day - 1] == -1
    split = chronological_split(s, history=4, horizons=2)
    # horizons count the series' own steps
    assert (target_index(split.val[:1], 2) == split.val[0] + np.array([1, 2])).all()


def test_irregular_times_are_refused_with_the_place() -> None:
    times = pd.DatetimeIndex(["2026-01-01 00:00", "2026-01-01 01:00", "2026-01-01 02:30"])
    with pytest.raises(ValidationError, match="irregular.*2026-01-01 01:00:00.*2026-01-01 02:30:00"):
        infer_step(times)
    with pytest.raises(ValidationError, match="sorted"):
        infer_step(pd.DatetimeIndex(["2026-01-01 01:00", "2026-01-01 00:00"]))
    with pytest.raises(ValidationError, match="does not divide a day"):
        infer_step(pd.date_range("2026-01-01", periods=5, freq="7h"))
    # a gap of whole steps is missing data, not a second frequency
    assert infer_step(pd.DatetimeIndex(["2026-01-01 00:00", "2026-01-01 01:00", "2026-01-01 04:00"])) == \
        pd.Timedelta("1h")


def test_seasonal_lags_are_local_wall_clock_time_across_daylight_saving() -> None:
    # Amsterdam springs forward on 2026-03-29: a week after, the same local hour is 167 UTC hours earlier
    times = pd.date_range("2026-03-20", "2026-04-10", freq="h", inclusive="left")
    s = series_of(times, np.zeros((len(times), 2, 1)), timezone="Europe/Amsterdam")
    local = s.local_times()
    week = s.season_index(7)
    t = int(np.flatnonzero(local == pd.Timestamp("2026-04-02 09:00"))[0])
    assert local[week[t]] == pd.Timestamp("2026-03-26 09:00") and t - week[t] == 167
    t = int(np.flatnonzero(local == pd.Timestamp("2026-04-09 09:00"))[0])
    assert t - week[t] == 168
    slot, _ = s.calendar()
    assert slot[t] == 9  # the calendar is local too


def test_holidays_are_their_own_day_class() -> None:
    times = pd.date_range("2026-04-20", periods=24 * 14, freq="h")
    holiday = (times.normalize() == pd.Timestamp("2026-04-27")).astype(float)
    s = series_of(times, np.zeros((len(times), 2, 1)), holiday=holiday)
    _, day = s.calendar()
    assert set(day[holiday > 0]) == {HOLIDAY_CLASS} and set(day[holiday == 0]) == set(range(7))


def test_the_contract_windows() -> None:
    times = pd.date_range("2026-01-05", periods=24 * 21, freq="h")
    s = series_of(times, np.arange(len(times) * 2, dtype=float).reshape(-1, 2, 1))
    split = chronological_split(s, history=6, horizons=3)
    a = int(round(len(times) * 0.7))
    # a sample issued at t sees t-5 .. t and forecasts t+1 .. t+3; no target crosses a boundary
    assert (window_index(np.array([10]), 6) == np.arange(5, 11)).all()
    assert target_index(split.train, 3).max() < a <= target_index(split.val, 3).min()
    assert fit_stop(split, 3) == a
    assert split.train.min() == 7 * 24 - 1  # a week of history before the first target


def test_a_missing_unit_drops_only_itself() -> None:
    times = pd.date_range("2026-01-05", periods=24 * 21, freq="h")
    rng = np.random.default_rng(0)
    values = rng.poisson(20, (len(times), 4, 1)).astype(float)
    values[300:340, 1] = np.nan  # one unit misses 40 hours
    s = series_of(times, values)
    steps = issue_steps(s, history=6, horizons=3)
    assert {t for t in range(297, 340)} <= set(steps)  # those hours still serve the other units
    stop = 250
    inputs = Inputs.build(s, scaler=Scaler.fit(s, stop=stop), ext_scaler=ExternalScaler.fit(s.external, stop=stop),
                          history=6, horizons=3)
    assert inputs.seen[0][300:340, 1].sum() == 0 and inputs.seen[0][300:340, [0, 2, 3]].all()
    assert inputs.seen[1][300:340].sum() == 0  # the city's sum is unknown there
    # the gap holds the unit's last observed value as input, flagged as not observed
    np.testing.assert_allclose(forward_filled(values)[320, 1], values[299, 1])
    cfg = TrainConfig(history=6, horizons=3, hidden=8, threads=1, progress=False)
    model = build_tower(inputs, cfg)
    tin = inputs.tensors()
    w = unit_weights(tin, cfg.loss_power)
    ts = np.array([300, 320])
    with torch.no_grad():
        before = float(loss_fn(model.eval(), tin, ts, cfg, w))
        for t in ts:  # whatever stands in the missing unit's targets (not inputs) changes nothing
            tin.z[0][t + 1:t + 4, 1] = 1e3
        after = float(loss_fn(model, tin, ts, cfg, w))
    assert before == pytest.approx(after, rel=1e-6)
    # and metrics leave the missing truth out
    pred = np.zeros((1, 4, 1, 1))
    truth = np.array([np.nan, 2.0, 2.0, 2.0]).reshape(1, 4, 1, 1)
    assert metrics(pred, truth)["rmse_all"] == pytest.approx(2.0) and metrics(pred, truth)["n"] == 3


def test_scaler_is_per_unit_and_fitted_on_training_steps() -> None:
    times = pd.date_range("2026-01-05", periods=100, freq="h")
    values = np.stack([np.full(100, 5.0), np.arange(100.0)], axis=1)[:, :, None]
    values[60:, 0] = 500.0  # a change after the fit window does not reach the scaler
    s = series_of(times, values)
    scaler = Scaler.fit(s, stop=50)
    assert scaler.mean[0][0, 0] == 5.0 and scaler.sd[0][0, 0] == 1.0  # a constant unit keeps sd 1
    assert scaler.mean[0][1, 0] == pytest.approx(24.5)
    z = scaler.scale(0, values[:50])
    np.testing.assert_allclose(scaler.unscale(0, z), values[:50])
    log = Scaler.fit(s, stop=50, transform="log1p")
    np.testing.assert_allclose(log.unscale(0, log.scale(0, values[:50])), values[:50], rtol=1e-9)
    assert torch.is_tensor(Inputs.build(s, scaler=scaler, ext_scaler=ExternalScaler.fit(s.external, stop=50),
                                        history=3, horizons=1).tensors().z[0])


def test_alert_skill_counts_per_unit_and_target_step_and_per_episode() -> None:
    # two units, issue steps 10..19, two horizons: unit 0 holds an event at target steps 14-16, unit 1 none
    ts = np.arange(10, 20)
    truth = np.full((10, 2, 2, 1), 5.0)
    risk = np.zeros((10, 2, 2, 1))
    for b, t in enumerate(ts):
        for h in (1, 2):
            if 14 <= t + h <= 16:
                truth[b, 0, h - 1, 0] = 50.0  # above the threshold of 10
    risk[3, 0, 1, 0] = 0.9  # issued at 13, horizon 2: target 15 (an event step) alerted at horizon 2 only
    risk[8, 1, 0, 0] = 0.95  # issued at 18, horizon 1: target 19 alerted at unit 1, where nothing happens
    events = np.zeros((40, 2), dtype=bool)
    events[14:17, 0] = True
    out = alert_skill(risk, truth, np.full((2, 1), 10.0), ts, level=0.8, events=events)
    assert out["alerts"] == 2 and out["exceedances"] == 3
    assert out["precision"] == pytest.approx(0.5) and out["recall"] == pytest.approx(1 / 3)
    ev = out["events"]
    assert ev["steps"] == 3 and ev["recall"] == pytest.approx(1 / 3) and ev["precision"] == pytest.approx(0.5)
    assert (ev["episodes"], ev["episodes_caught"], ev["alert_episodes"], ev["alert_episodes_right"]) == (1, 1, 2, 1)
    assert ev["episode_recall"] == 1.0 and ev["episode_precision"] == pytest.approx(0.5)
    # an unseen truth is not scored
    truth[:, 1] = np.nan
    assert alert_skill(risk, truth, np.full((2, 1), 10.0), ts, level=0.8)["alerts"] == 1
