"""The forecasters of the harness, the champion on validation, probabilistic forecasts, real-data graphs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ciu.errors import ValidationError
from ciu.models.baselines import Announced, HistoricalAverage, Neural, Persistence, Ridge, SeasonalNaive, roll_up
from ciu.models.boosting import GradientBoosting, anchor_of, variant_name
from ciu.models.champion import (BENCHMARK_MODELS, DEFAULT_MODELS, compete, from_state, load_forecaster, make,
                                 share_budget)
from ciu.models.data import ExternalScaler, HierSeries, Level, Scaler, chronological_split, fit_stop
from ciu.models.datasets import manhattan_districts, manhattan_flows, shared_data
from ciu.models.inputs import Inputs
from ciu.models.metrics import coverage
from ciu.models.probabilistic import (QUANTILES, Calibration, Distribution, _logistic, band_factors, distribution,
                                     rolling, widen)
from ciu.models.train import TrainConfig

CONFIG = TrainConfig(history=6, horizons=2, hidden=8, lstm_hidden=4, epochs=2, threads=1, progress=False,
                     max_val_samples=32)


def toy_series(hours: int = 24 * 28, n: int = 8, seed: int = 0) -> HierSeries:
    """Four cells per block, two blocks, one city; a daily rhythm and a slow wave per cell, two channels."""
    times = pd.date_range("2024-01-01", periods=hours, freq="h")
    rng = np.random.default_rng(seed)
    base = 10 + 5 * np.sin(2 * np.pi * times.hour.to_numpy() / 24)
    wave = np.cumsum(rng.normal(0, 0.3, hours))
    values = ((base + wave)[:, None, None] * (1 + np.arange(n))[None, :, None] / n
              + rng.normal(0, 0.3, (hours, n, 2))).clip(0)
    levels = [Level("cell", [f"c{i}" for i in range(n)], np.arange(n) // 4, np.zeros((n, 1), np.float32),
                    np.array([[0, 1], [1, 0]])),
              Level("block", ["b0", "b1"], np.zeros(2, dtype=np.int64), np.zeros((2, 1), np.float32)),
              Level("city", ["x"], None, np.zeros((1, 1), np.float32))]
    return HierSeries(levels, values, times, ["in", "out"], np.zeros((hours, 1), np.float32), ["holiday"])


def inputs_of(s: HierSeries, cfg: TrainConfig = CONFIG):
    split = chronological_split(s, history=cfg.history, horizons=cfg.horizons)
    stop = fit_stop(split, cfg.horizons)
    return split, Inputs.build(s, scaler=Scaler.fit(s, stop=stop), ext_scaler=ExternalScaler.fit(s.external, stop=stop),
                               history=cfg.history, horizons=cfg.horizons)


def test_naive_baselines_are_what_they_say():
    s = toy_series()
    split, inputs = inputs_of(s)
    ts = np.array([200, 300])
    p = Persistence().predict(inputs, ts)
    assert p.shape == (2, 8, 2, 2)
    np.testing.assert_allclose(p[:, :, 1], s.values[ts], rtol=1e-5)  # the last observed step, t itself
    sn = SeasonalNaive().predict(inputs, ts)
    np.testing.assert_allclose(sn[:, :, 1], s.values[ts + 2 - 168], rtol=1e-5)  # a week before the target
    ha = HistoricalAverage()
    ha.fit(inputs, split)
    got = ha.predict(inputs, ts)
    stop = fit_stop(split, 2)
    same = [t for t in range(stop) if t % 168 == (200 + 1) % 168]
    np.testing.assert_allclose(got[0, :, 0], s.values[same].mean(axis=0))


def test_roll_up_sums_to_every_level():
    s = toy_series()
    bottom = np.random.default_rng(1).random((3, 8, 2, 2))
    levels = roll_up(bottom, s)
    np.testing.assert_allclose(levels[1][:, 0], bottom[:, :4].sum(axis=1))
    np.testing.assert_allclose(levels[2][:, 0], bottom.sum(axis=1))


def test_the_models_roll_up_is_the_twins_sum_rule_and_an_unknown_child_makes_an_unknown_parent():
    from ciu.rollup import combine

    s = toy_series(hours=48)
    bottom = np.random.default_rng(2).random((48, 8, 2))
    ours = s.sum_up(bottom)
    units, times = np.meshgrid(np.arange(8), np.arange(48))  # (T, N) grids of unit and time
    for i, member in enumerate(s.membership()):
        for c in range(2):
            groups, at, value = combine((member[units.ravel()], times.ravel()), bottom[:, :, c].ravel(), "sum")
            np.testing.assert_allclose(value.reshape(s.levels[i].n, 48).T, ours[i][:, :, c])
    np.testing.assert_allclose(roll_up(bottom.transpose(1, 0, 2), s, axis=0)[2], ours[2].transpose(1, 0, 2))
    bottom[5, 3, 0] = np.nan
    gap = s.sum_up(bottom)
    assert np.isnan(gap[1][5, 0, 0]) and not np.isnan(gap[1][5, 1, 0]) and np.isnan(gap[2][5, 0, 0])


def test_learned_models_fit_predict_and_come_back_from_their_state():
    from dataclasses import replace

    s = toy_series()
    split, inputs = inputs_of(s)
    truth = inputs.truth(split.val)[0]
    persistence = float(np.nanmean((Persistence().predict(inputs, split.val) - truth) ** 2))
    for model in (Ridge(per_unit=True), Ridge(per_unit=False, name="ridge_pooled"),
                  GradientBoosting(max_rows=5000, rounds=60, threads=1, progress=False),
                  Neural.tower(CONFIG), Neural.unit_lstm(CONFIG)):
        info = model.fit(inputs, split)
        assert info["seconds"] > 0 and info["cpu_seconds"] >= 0
        pred = model.predict(inputs, split.val)
        assert pred.shape == (len(split.val), 8, 2, 2) and (pred >= 0).all()
        again = from_state(model.state()).predict(inputs, split.val)
        np.testing.assert_allclose(again, pred, rtol=1e-5, atol=1e-5)
        if isinstance(model, Ridge):  # a linear model sees the rhythm and the wave
            assert float(np.nanmean((pred - truth) ** 2)) < persistence
    assert Neural.unit_lstm(CONFIG).config.neighbours is False
    # the per-unit LSTM falls back on the per-unit ridge; the tower on the better ridge, or as told
    assert CONFIG.base == "ridge" and Neural.unit_lstm(CONFIG).config.base == "ridge_unit"
    assert Neural.tower(CONFIG).config.base == "ridge"
    assert Neural.unit_lstm(replace(CONFIG, base="ridge_pooled")).config.base == "ridge_pooled"
    assert Neural.unit_lstm(replace(CONFIG, base=None)).config.base is None


def test_a_network_that_loses_to_its_ridge_on_validation_learns_the_ridges_correction_instead():
    from dataclasses import replace

    s = toy_series()
    split, inputs = inputs_of(s)
    ridge = Ridge(per_unit=True)
    ridge.fit(inputs, split)
    frozen = replace(CONFIG, lr=1e-9, epochs=1)  # a network that cannot learn loses to the ridge...
    model = Neural(frozen, base=ridge)
    info = model.fit(inputs, split)
    assert info["base"] == "ridge_unit" and info["alone"]["best_val_loss"] >= info["base_val_loss"]
    assert model.model.config.residual and info["best_val_loss"] <= info["base_val_loss"]
    # ... and is trained again on top of it, starting from the ridge itself
    np.testing.assert_allclose(model.predict(inputs, split.val), ridge.predict(inputs, split.val), rtol=1e-4, atol=1e-4)
    back = from_state(model.state())
    np.testing.assert_allclose(back.predict(inputs, split.val), model.predict(inputs, split.val), rtol=1e-5, atol=1e-5)
    # with a budget, a network still far behind the ridge halfway through it gives up training alone there and
    # spends the rest on top of the ridge
    budgeted = Neural(replace(frozen, epochs=10_000, patience=10_000, budget_minutes=0.05), base=ridge)
    info = budgeted.fit(inputs, split)
    assert info["alone"]["stopped"] == "give_up" and info["alone"]["best_val_loss"] >= 2 * info["base_val_loss"]
    assert info["alone"]["epochs"] >= 1 and budgeted.model.config.residual and info["base"] == "ridge_unit"
    useless = Ridge(per_unit=True, coef=[np.zeros_like(c) for c in ridge.coef], penalty=ridge.penalty,
                    scaler=ridge.scaler)  # forecasts each unit's mean
    model = Neural(replace(CONFIG, epochs=8), base=useless)
    info = model.fit(inputs, split)  # a network that beats its ridge stands alone
    assert info["base"] is None and info["best_val_loss"] < info["base_val_loss"]
    assert not model.model.config.residual and model.state()["base"] is None
    with pytest.raises(ValidationError, match="unknown base"):
        Neural(replace(CONFIG, base="lasso")).fit(inputs, split)


def test_lightgbm_keeps_the_variant_that_wins_on_validation_and_follows_a_shock():
    s = toy_series(hours=24 * 35)
    split, _ = inputs_of(s)
    values = s.values.copy()
    values[int(split.val.min()) - 24 * 3:] *= 0.3  # the city empties three days before the validation steps
    split, inputs = inputs_of(HierSeries(s.levels, values, s.times, s.channels, s.external, s.external_names))
    model = GradientBoosting(max_rows=20_000, rounds=100, threads=1, progress=False)
    tried = model.fit(inputs, split)["validation_mse"]
    assert set(tried) == {"identity", "log1p, relative to the window", "log1p, relative to the season"}
    kept = variant_name(model.transform, model.relative)
    assert tried[kept] == min(tried.values())
    # the level moves with the window; a week's seasonal lags still hold the full city the first days
    assert kept == "log1p, relative to the window" and tried[kept] < 0.5 * tried["identity"]
    back = from_state(model.state())
    assert back.relative == "window" and back.transform == "log1p"
    np.testing.assert_allclose(back.predict(inputs, split.val), model.predict(inputs, split.val), rtol=1e-5, atol=1e-5)
    # the other anchor: the same hour a day, two days and a week before the target step
    seasonal = GradientBoosting(relative="season")
    ts = split.val[:5]
    lags = np.stack([inputs.z[0][ts + 2 - 24 * d] for d in inputs.seasonal_days])
    np.testing.assert_allclose(seasonal._level(inputs, ts, 2), lags.mean(axis=(0, 3)), rtol=1e-6)
    assert anchor_of({"relative": True}) == "window" and anchor_of({"relative": False}) is None


def test_the_training_budget_is_shared_among_the_learned_candidates():
    shares = share_budget(5.0, DEFAULT_MODELS)
    assert shares == {"lightgbm": {"budget_minutes": pytest.approx(2.0)}, "tower": {"budget_minutes": pytest.approx(3.0)}}
    assert sum(o["budget_minutes"] for o in share_budget(3.0, BENCHMARK_MODELS).values()) == pytest.approx(3.0)
    assert share_budget(None, DEFAULT_MODELS) == {} and share_budget(2.0, ("ridge_unit", "persistence")) == {}
    cfg = TrainConfig(**{**CONFIG.to_dict(), "budget_minutes": 5.0})
    assert make("lightgbm", cfg, **shares["lightgbm"]).budget_minutes == pytest.approx(2.0)
    assert make("tower", cfg, **shares["tower"]).config.budget_minutes == pytest.approx(3.0)
    assert make("tower", cfg).config.budget_minutes == 5.0


def test_champion_selection_never_reads_the_test_split():
    s = toy_series(hours=24 * 24)
    cfg = TrainConfig(**{**CONFIG.to_dict(), "epochs": 1})
    models = ("persistence", "seasonal_naive", "historical_average", "ridge_unit", "tower")
    split = chronological_split(s, history=cfg.history, horizons=cfg.horizons)
    a = compete(s, split, cfg, models=models)
    spoiled = HierSeries(s.levels, s.values.copy(), s.times, s.channels, s.external, s.external_names)
    first_test_target = int(split.test.min()) + 1
    spoiled.values[first_test_target:] = 1e6 * np.random.default_rng(9).random(spoiled.values[first_test_target:].shape)
    b = compete(spoiled, split, cfg, models=models)
    assert a.champion == b.champion
    assert a.scores == pytest.approx(b.scores)
    assert (a.blend is None) == (b.blend is None) and (a.blend is None or a.blend.weights == pytest.approx(
        b.blend.weights))
    for model in models:
        assert a.validation[model]["cell"]["rmse_all"] == pytest.approx(b.validation[model]["cell"]["rmse_all"])
    assert a.test is None  # the test split is scored only when asked, after the choice
    test = a.score_test()
    assert set(test) >= set(models) and a.probabilistic["test"]["cell"]["quantiles_ordered"]


def test_quantiles_are_ordered_and_paths_coherent_at_every_level():
    s = toy_series()
    split, inputs = inputs_of(s)
    comp = compete(s, split, CONFIG, models=("persistence", "seasonal_naive", "ridge_unit", "ridge_pooled"))
    point = comp.forecaster().predict(comp.inputs, split.test[:20])
    dist = distribution(point, comp.bank, s, comp.limits, samples=100)
    for i, q in enumerate(dist.quantiles):
        assert q.shape == (20, s.levels[i].n, 2, 2, len(QUANTILES))
        assert (np.diff(q, axis=-1) >= -1e-9).all()
        assert ((dist.risk[i] >= 0) & (dist.risk[i] <= 1)).all()
    # the blend is a champion like any other: coherent by the same sums, and back from its state
    if comp.blend is not None:
        blend = load_forecaster(comp.blend.state())
        np.testing.assert_allclose(blend.predict(comp.inputs, split.test[:5]),
                                   comp.blend.predict(comp.inputs, split.test[:5]), rtol=1e-5)
    scores = comp.score_test() and comp.probabilistic["test"]
    for level, p in scores.items():
        assert 0.0 <= p["coverage_p10_p90"] <= 1.0 and p["brier"] >= 0, level


def test_bands_hold_their_share_and_are_calibrated_on_the_past_only():
    s = toy_series(hours=24 * 24)
    split, _ = inputs_of(s)
    comp = compete(s, split, CONFIG, models=("persistence", "seasonal_naive", "ridge_unit"))
    steps = np.concatenate([split.val, split.test])
    point = comp.forecaster().predict(comp.inputs, steps)
    truth = comp.inputs.truth(steps)
    raw = distribution(point, comp.bank, s, comp.limits, samples=100)
    # stretched by their factors, the bands hold at least 80 % of the truths they were read from, at every level
    wide = widen(raw.quantiles, band_factors(raw.quantiles, truth))
    for q, t in zip(wide, truth):
        for h in range(CONFIG.horizons):
            assert 0.8 <= coverage(q[:, :, h, :, 0], q[:, :, h, :, -1], t[:, :, h]) <= 0.9
    # a block's bands read only the truths observed by its first issue step: spoiling later truths leaves them
    first, cut, every = len(split.val), len(split.val) + 12, 6
    a = rolling(steps, point, truth, first, comp.bank, s, comp.limits, comp.calibration, horizons=2, every=every)
    spoiled = [t.copy() for t in truth]
    for t in spoiled:
        t[cut - CONFIG.horizons + 1:] = 1e6
    b = rolling(steps, point, spoiled, first, comp.bank, s, comp.limits, comp.calibration, horizons=2, every=every)
    kept = cut + every - first
    for qa, qb in zip(a.quantiles, b.quantiles):
        np.testing.assert_array_equal(qa[:kept], qb[:kept])
        assert not np.array_equal(qa[kept:], qb[kept:])
    back = Calibration.from_state(comp.calibration.to_state())
    np.testing.assert_array_equal(back.risk(raw.risk)[0], comp.calibration.risk(raw.risk)[0])


def test_risk_recalibration_recovers_known_odds():
    rng = np.random.default_rng(3)
    x = np.column_stack([np.ones(20_000), rng.normal(size=20_000), rng.normal(size=20_000)])
    y = (rng.random(20_000) < 1 / (1 + np.exp(-(x @ np.array([-1.0, 2.0, 0.5]))))).astype(float)
    np.testing.assert_allclose(_logistic(x, y), [-1.0, 2.0, 0.5], atol=0.1)


def test_risk_that_is_right_at_the_top_reaches_an_alert_when_middling_risk_is_over_confident():
    """Paths that say 0.2 to 0.8 where 10 % exceed (the noise of small counts) and 1.0 where every one does (a crowd
    far above capacity): the recalibrated risk keeps the top near 1 and brings the middle down to its 10 % (one
    logistic slope over the paths' risk gives the top 0.69 here: no alert)."""
    rng = np.random.default_rng(5)
    b, n = 4000, 10
    u = rng.random((b, n, 1, 1))
    risk = np.where(u < 0.005, 1.0, np.where(u < 0.6, rng.choice([0.2, 0.4, 0.6, 0.8], size=u.shape), 0.0))
    exceed = np.where(risk == 1.0, True, np.where(risk > 0, rng.random(risk.shape) < 0.1, False))
    truth = np.where(exceed, 20.0, 5.0)
    limits, rates, active = np.full((n, 1), 10.0), np.full((n, 1), 0.05), np.ones((n, 1), dtype=bool)
    dist = Distribution([np.repeat(truth[..., None], len(QUANTILES), axis=-1)], [risk])
    cal = Calibration.fit(dist, [truth], [limits], [rates], [active])
    got = cal.risk([np.resize([1.0, 0.8, 0.4, 0.0], n).reshape(1, n, 1, 1)])[0].ravel()
    assert got[0] > 0.95 and abs(got[1] - 0.1) < 0.03 and abs(got[2] - 0.1) < 0.03 and got[3] < 0.01
    back = Calibration.from_state(cal.to_state())
    np.testing.assert_allclose(back.risk([risk])[0], cal.risk([risk])[0])


def test_series_checks_its_hierarchy():
    s = toy_series()
    bad = Level("cell", s.levels[0].codes, np.full(8, 5), s.levels[0].static)
    with pytest.raises(ValidationError):
        HierSeries([bad] + s.levels[1:], s.values, s.times, s.channels, s.external, s.external_names)


def test_manhattan_zones_map_to_community_districts():
    cd = manhattan_districts()
    assert len(cd) == 69 and list(cd["graph_id"]) == list(range(69))
    assert sorted(cd["district"].unique()) == list(range(101, 113))
    assert set(cd.loc[cd["graph_id"].isin([18, 19, 20]), "district"]) == {101}  # the harbour islands


def test_manhattan_graph_matches_the_flow_file():
    s = manhattan_flows(mode="bike")
    raw = np.load(shared_data() / "nyc" / "flows" / "201901-202012-NYCbike-inoutflow.npz")["arr_0"]
    np.testing.assert_array_equal(s.values, raw)
    city = s.level_values()[2]
    np.testing.assert_allclose(city[:, 0], raw.sum(axis=1), rtol=1e-6)
    assert s.channels == ["departures", "arrivals"] and s.step == pd.Timedelta("1h")
    assert s.level_names == ["zone", "district", "city"] and s.levels[0].neighbours.shape[1] > 69


def test_announced_people_are_counted_in_by_the_event_rule_not_learned():
    """Announced attendance (the covariate) is taken out of what the models learn and added back to every forecast:
    N announced people add N at the venue's units and at every unit above them, whatever the model."""
    s = toy_series()
    cov = np.zeros(s.values.shape[:2] + (1,), dtype=np.float32)
    cov[300:303, :2, 0] = [30.0, 10.0]  # an event of 40 at block b0's first two cells, spread by capacity 3:1
    s.covariates = cov
    s.values[300:303, :2, 0] += cov[300:303, :2, 0]
    less = s.less_announced()
    assert less.covariates is None and np.allclose(less.values[300:303, :2, 0], s.values[300:303, :2, 0] - [30, 10])
    np.testing.assert_array_equal(less.values[:, :, 1], s.values[:, :, 1])  # only the first channel counts people
    split, inputs = inputs_of(s)
    ts = np.array([298])  # targets 299 and 300: the event starts at the second horizon
    for model in (Announced(HistoricalAverage()), Announced(Ridge(per_unit=False, name="ridge_pooled"))):
        model.fit(inputs, split)
        got = model.predict(inputs, ts)
        alone = model.model.predict(inputs.less_announced(), ts)
        np.testing.assert_allclose(got[0, :, 0], alone[0, :, 0], rtol=1e-6)  # nothing before the event
        np.testing.assert_allclose(got[0, :2, 1, 0] - alone[0, :2, 1, 0], [30, 10], rtol=1e-5)
        extra = [lv[0, :, 1, 0] for lv in roll_up(got - alone, s)]
        assert extra[1][0] == pytest.approx(40) and extra[2][0] == pytest.approx(40) and extra[1][1] == 0
        back = from_state(model.state())
        assert isinstance(back, Announced)
        np.testing.assert_allclose(back.predict(inputs, ts), got, rtol=1e-5)


def test_an_announced_event_is_spread_over_its_venue_by_capacity_else_evenly():
    from ciu.forecast import event_shares, shares_by_group

    np.testing.assert_allclose(shares_by_group(np.array([1, 3, 2, np.nan, 5.0]), np.array([0, 0, 1, 1, 2])),
                               [0.25, 0.75, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(event_shares(np.array([1.0, 3.0]), 2), [0.25, 0.75])
    np.testing.assert_allclose(event_shares(None, 4), [0.25] * 4)
