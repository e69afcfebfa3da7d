"""The tower on the tiny test city: graph, shapes, gradients, coherence, seeds, training, budget."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ciu.errors import UnknownVariable
from ciu.models.baselines import Neural, roll_up
from ciu.models.data import chronological_split, fit_stop
from ciu.models.graph import build_graph, to_hetero
from ciu.models.inputs import Inputs
from ciu.models.train import (Plan, TrainConfig, build_tower, fit, forward, loss_fn, predict, seed_everything, thin,
                          unit_weights, validation_loss)

CONFIG = TrainConfig(history=6, horizons=3, hidden=16, lstm_hidden=8, epochs=4, batch_size=8, lr=5e-3, patience=10,
                     seed=3, max_val_samples=16, threads=1, progress=False)


@pytest.fixture
def series(city):
    return build_graph(city, target="people")


@pytest.fixture
def setup(series):
    from ciu.models.data import ExternalScaler, Scaler

    split = chronological_split(series, history=CONFIG.history, horizons=CONFIG.horizons)
    stop = fit_stop(split, CONFIG.horizons)
    inputs = Inputs.build(series, scaler=Scaler.fit(series, stop=stop),
                          ext_scaler=ExternalScaler.fit(series.external, stop=stop), history=CONFIG.history,
                          horizons=CONFIG.horizons)
    return split, inputs


def test_graph_has_every_level_edges_clock_and_capacity(city, series):
    levels = list(city.levels)
    assert series.level_names == levels
    units = {lv: city.units(level=lv) for lv in levels}
    for lo, hi in zip(series.levels[:-1], series.levels[1:]):
        assert lo.codes == list(units[lo.name].index) and len(lo.parent) == lo.n
        assert [hi.codes[j] for j in lo.parent] == units[lo.name]["parent_code"].tolist()
    # same-level adjacency is symmetric and has no self loops
    for lv in series.levels:
        if lv.name in ("floor", "grid", "district"):
            ei = lv.neighbours
            assert ei.shape[1] > 0
            assert not (ei[0] == ei[1]).any()
            assert set(map(tuple, ei.T.tolist())) == set(map(tuple, ei[::-1].T.tolist()))
    # series of each level is the sum of its children; external features, the clock and capacity present
    values = series.level_values()
    for i, lo in enumerate(series.levels[:-1]):
        summed = np.zeros_like(values[i + 1])
        np.add.at(summed, (slice(None), lo.parent), np.nan_to_num(values[i]))
        np.testing.assert_allclose(np.nan_to_num(values[i + 1]), summed, atol=1e-3)
    assert series.external_names == ["holiday", "temperature", "rain"]
    assert series.step == pd.Timedelta("1h") and series.timezone == "Europe/Amsterdam"
    assert np.abs(series.covariates).sum() > 0  # announced events reach the floors
    # once each, by capacity: a venue's floors hold its announcement between them (not each the whole of it)
    ann = city.observations("event_expected")
    at = ann.groupby(["code", "time"])["value"].sum()
    times = series.times.tz_localize("UTC") if series.times.tz is None else series.times
    floors = units["floor"]
    checked = 0
    for (venue, t), people in at.items():
        if t not in times:
            continue
        below = np.flatnonzero(floors["parent_code"].to_numpy() == venue)
        got = series.covariates[times.get_loc(t), below, 0]
        cap = np.array([floors.iloc[i]["attrs"]["capacity"] for i in below], dtype=float)
        np.testing.assert_allclose(got, people * cap / cap.sum(), rtol=1e-5)
        checked += 1
    assert checked > 0
    np.testing.assert_allclose(series.covariates.sum(), at[at.index.get_level_values("time").isin(times)].sum(),
                               rtol=1e-5)
    assert series.levels[0].static.shape[0] == len(units["floor"]) and series.levels[0].static.shape[1] > 3
    assert (series.capacity > 0).all() and len(series.capacity) == len(units["floor"])


def test_graph_as_torch_geometric_heterodata(series):
    data = to_hetero(series)
    assert list(data.node_types) == series.level_names
    for i, (lo, hi) in enumerate(zip(series.levels[:-1], series.levels[1:])):
        ei = data[lo.name, "in", hi.name].edge_index
        assert ei.shape == (2, lo.n) and ei[1].tolist() == lo.parent.tolist()
        assert torch.equal(data[hi.name, "has", lo.name].edge_index, ei.flip(0))
        child = torch.nan_to_num(data[lo.name].series)
        summed = torch.zeros_like(data[hi.name].series).index_add_(0, ei[1], child)
        assert torch.allclose(torch.nan_to_num(data[hi.name].series), summed, atol=1e-3)
    for lv in series.levels:
        assert data[lv.name].code == lv.codes and data[lv.name].x.shape == lv.static.shape
        assert data[lv.name, "near", lv.name].edge_index.tolist() == lv.neighbours.tolist()
    bottom = series.levels[0].name
    np.testing.assert_array_equal(data[bottom].series.numpy().transpose(1, 0, 2), series.values.astype(np.float32))
    assert data[bottom].covariates.shape == (series.levels[0].n, len(series.times), 1)
    assert data.external_names == series.external_names and data.step == series.step
    assert data.timezone == series.timezone and list(data.time) == list(series.times)


def test_graph_rejects_unknown_variable(city):
    with pytest.raises(UnknownVariable):
        build_graph(city, target="no_such_variable")


def test_shapes_and_gradients_reach_every_level(series, setup):
    split, inputs = setup
    seed_everything(0)
    model = build_tower(inputs, CONFIG)
    tin = inputs.tensors()
    ts = split.train[:4]
    _, out = forward(model, tin, ts)
    for i, lv in enumerate(series.levels):
        assert out.value[i].shape == (4, lv.n, CONFIG.horizons, 1)
        assert out.z[i].shape == out.value[i].shape
    for alpha, lv in zip(out.attention, series.levels[:-1]):
        assert alpha.shape == (4, lv.n)
    # the LSTM's share starts at zero: one step opens its path, then gradients reach every part of every level
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    w = unit_weights(tin, CONFIG.loss_power)
    loss_fn(model, tin, ts, CONFIG, w).backward()
    opt.step()
    opt.zero_grad()
    loss_fn(model, tin, ts, CONFIG, w).backward()
    for i, enc in enumerate(model.encoders):
        for name, part in (("lstm", enc.temporal), ("unit", enc.unit), ("slot", enc.slot), ("day", enc.day),
                           ("proj", enc.proj)):
            grads = [p.grad for p in part.parameters()]
            assert all(g is not None for g in grads), (series.levels[i].name, name)
            assert sum(float(g.abs().sum()) for g in grads) > 0, f"no gradient to {name} at {series.levels[i].name}"
    for pool in model.pools:
        assert sum(float(p.grad.abs().sum()) for p in pool.parameters() if p.grad is not None) > 0


def test_forecasts_are_coherent_at_every_level(series, setup):
    split, inputs = setup
    model = build_tower(inputs, CONFIG)
    levels = predict(model, inputs.tensors(), split.val[:5], levels=True)
    summed = roll_up(levels[0], series)
    for i in range(1, len(levels)):
        np.testing.assert_allclose(levels[i], summed[i], rtol=1e-6, atol=1e-4)
        assert (levels[i] >= 0).all()


def test_same_seed_same_result(setup):
    split, inputs = setup
    cfg = TrainConfig(**{**CONFIG.to_dict(), "epochs": 2, "max_samples_per_epoch": 24})
    a = fit(inputs, split, cfg)
    b = fit(inputs, split, cfg)
    assert [h["val_loss"] for h in a.history] == [h["val_loss"] for h in b.history]
    np.testing.assert_array_equal(predict(a.model, a.tin, split.test[:3]), predict(b.model, b.tin, split.test[:3]))
    c = fit(inputs, split, TrainConfig(**{**cfg.to_dict(), "seed": 4}))
    assert [h["val_loss"] for h in c.history] != [h["val_loss"] for h in a.history]


def test_short_training_lowers_validation_loss(setup):
    split, inputs = setup
    cfg = TrainConfig(**{**CONFIG.to_dict(), "epochs": 4})
    seed_everything(cfg.seed)
    tin = inputs.tensors()
    untrained = validation_loss(build_tower(inputs, cfg), tin, thin(split.val, cfg.max_val_samples), cfg,
                                unit_weights(tin, cfg.loss_power))
    result = fit(inputs, split, cfg)
    assert result.best_val < untrained
    assert 0 <= result.best_epoch < len(result.history) <= cfg.epochs
    assert result.cpu_seconds > 0 and result.samples_seen == len(result.history) * len(split.train)


def test_a_budgeted_plan_uses_the_time_that_the_first_steps_misjudged():
    # full rounds: after the slow first ones, as many more as fit, never more than the epochs
    plan = Plan(rounds=5, steps=100)
    plan.stretch(left=100.0, done=2, most=40, per_step=0.1, per_check=1.0)
    assert (plan.rounds, plan.steps) == (2 + int(97.0 // 11.0), 100)
    plan.stretch(left=1e6, done=3, most=40, per_step=0.1, per_check=1.0)
    assert plan.rounds == 40
    plan.stretch(left=5.0, done=4, most=40, per_step=0.1, per_check=1.0)
    assert plan.rounds == 4  # no time for another full round: the run ends
    # shortened rounds: the same number of checks, each round longer, at most a full pass
    plan = Plan(rounds=10, steps=1000)
    plan.fit_budget(60.0, 2.0, 0.1, 1.0)
    rounds, steps = plan.rounds, plan.steps
    assert steps < 1000
    plan.stretch(left=80.0, done=1, most=40, per_step=0.05, per_check=1.0)
    assert plan.rounds == rounds and steps < plan.steps <= 1000


def test_a_time_budget_stops_cleanly_with_the_best_weights(setup, capsys):
    split, inputs = setup
    cfg = TrainConfig(**{**CONFIG.to_dict(), "epochs": 500, "patience": 500, "budget_minutes": 0.05,
                         "progress": True, "base": None})  # the network alone (its base: test_model_baselines)
    model = Neural.tower(cfg)
    info = model.fit(inputs, split)
    assert info["stopped"] == "budget" and info["epochs"] < 500
    assert info["seconds"] < 3 * 60 * cfg.budget_minutes + 5
    # the kept weights are those of the best validation epoch
    assert validation_loss(model.model, model.result.tin, thin(split.val, cfg.max_val_samples), cfg,
                           unit_weights(model.result.tin, cfg.loss_power)) == pytest.approx(info["best_val_loss"],
                                                                                           rel=1e-5)
    err = capsys.readouterr().err
    assert "tower:" in err and "stopped by budget" in err and "best validation loss" in err


def test_under_a_budget_patience_waits_for_the_last_quarter(setup):
    from ciu.models.train import PATIENCE_AFTER

    split, inputs = setup
    # a network that cannot learn has no validation gain after its first round: patience 1 would stop it at once
    cfg = TrainConfig(**{**CONFIG.to_dict(), "epochs": 10_000, "patience": 1, "lr": 1e-12, "budget_minutes": 0.05,
                         "base": None})
    info = Neural.tower(cfg).fit(inputs, split)
    assert info["stopped"] == "patience" and info["epochs"] > 2
    assert info["history"][-1]["seconds"] >= PATIENCE_AFTER * 60 * cfg.budget_minutes  # not before its last quarter
    unbudgeted = Neural.tower(TrainConfig(**{**cfg.to_dict(), "budget_minutes": None, "epochs": 50})).fit(inputs, split)
    assert unbudgeted["stopped"] == "patience" and unbudgeted["epochs"] == 2
