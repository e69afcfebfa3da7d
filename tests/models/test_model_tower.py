"""The tower on the tiny test city: graph, shapes, gradients, coherence, seeds, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ciu.errors import UnknownVariable
from models.data import make_batch
from models.graph import build_graph, series_from_graph
from models.train import (TrainConfig, build_model, chronological_split_for, fit, loss_fn, predict, prepare,
                          seed_everything, validation_hours, validation_loss)

CONFIG = TrainConfig(history=6, horizons=3, hidden=16, epochs=6, batch_size=8, lr=5e-3, patience=10, seed=3,
                     max_val_samples=16, threads=1)


@pytest.fixture
def series(city):
    return series_from_graph(build_graph(city, target="people"))


def test_graph_has_every_level_and_edges(city):
    data = build_graph(city, target="people")
    levels = list(city.levels)
    assert set(data.node_types) == set(levels)
    units = {lv: city.units(level=lv) for lv in levels}
    for lo, hi in zip(levels[:-1], levels[1:]):
        ei = data[lo, "in", hi].edge_index
        assert ei.shape == (2, len(units[lo]))
        parents = [data[hi].code[j] for j in ei[1].tolist()]
        assert parents == units[lo]["parent_code"].tolist()
        assert torch.equal(data[hi, "has", lo].edge_index, ei.flip(0))
    # same-level adjacency is symmetric and has no self loops
    for lv in ("floor", "grid", "district"):
        ei = data[lv, "near", lv].edge_index
        assert ei.shape[1] > 0
        assert not (ei[0] == ei[1]).any()
        assert set(map(tuple, ei.t().tolist())) == set(map(tuple, ei.flip(0).t().tolist()))
    # series of each level is the sum of its children; external features present
    for lo, hi in zip(levels[:-1], levels[1:]):
        child = torch.nan_to_num(data[lo].series)
        summed = torch.zeros_like(data[hi].series).index_add_(0, data[lo, "in", hi].edge_index[1], child)
        assert torch.allclose(summed, data[hi].series, atol=1e-3)
    assert {"hour_sin", "holiday", "temperature", "rain"} <= set(data.external_names)
    assert data["floor"].covariates.abs().sum() > 0  # announced events reach the floors
    assert data["floor"].x.shape[0] == len(units["floor"]) and data["floor"].x.shape[1] > 3


def test_graph_rejects_unknown_variable(city):
    with pytest.raises(UnknownVariable):
        build_graph(city, target="no_such_variable")


def test_shapes_and_gradients_reach_every_level(series):
    torch.manual_seed(0)
    split = chronological_split_for(series, CONFIG)
    prep = prepare(series, fit_stop=int(split.val.min()), config=CONFIG, device=torch.device("cpu"))
    model = build_model(prep, series, CONFIG)
    ts = torch.as_tensor(split.train[:4])
    batch = make_batch(prep.data, ts)
    out = model(batch.seq, batch.aux, batch.ext, prep.data.parent, prep.data.neighbours, prep.data.scales)
    for i, lv in enumerate(series.levels):
        assert out.density[i].shape == (4, lv.n, CONFIG.horizons, 1)
        assert out.risk[i].shape == (4, lv.n, CONFIG.horizons)
    # the density head starts at zero (the forecast starts as persistence): one step opens the paths
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn(model, prep, ts, CONFIG).backward()
    opt.step()
    opt.zero_grad()
    loss_fn(model, prep, ts, CONFIG).backward()
    for i in range(len(series.levels)):
        for part in (model.encoders[i], model.aux[i], model.risk[i]):
            grads = [p.grad for p in part.parameters()]
            assert all(g is not None for g in grads)
            assert sum(float(g.abs().sum()) for g in grads) > 0, f"no gradient at level {series.levels[i].name}"
    for pool in model.pools:
        assert sum(float(p.grad.abs().sum()) for p in pool.parameters() if p.grad is not None) > 0


def test_forecasts_are_coherent(series):
    split = chronological_split_for(series, CONFIG)
    prep = prepare(series, fit_stop=int(split.val.min()), config=CONFIG, device=torch.device("cpu"))
    model = build_model(prep, series, CONFIG)
    dens, risk = predict(model, prep, split.val[:5])
    for i, lv in enumerate(series.levels[:-1]):
        summed = np.zeros_like(dens[i + 1])
        np.add.at(summed, (slice(None), lv.parent), dens[i])
        np.testing.assert_allclose(summed, dens[i + 1], rtol=1e-4, atol=1e-3)
        assert (dens[i] >= 0).all()
    assert all(((r >= 0) & (r <= 1)).all() for r in risk)


def test_same_seed_same_result(series):
    split = chronological_split_for(series, CONFIG)
    cfg = TrainConfig(**{**CONFIG.to_dict(), "epochs": 2, "max_steps_per_epoch": 3})
    a = fit(series, split, cfg)
    b = fit(series, split, cfg)
    assert a.history == b.history
    pa, _ = predict(a.model, a.prep, split.test[:3])
    pb, _ = predict(b.model, b.prep, split.test[:3])
    for x, y in zip(pa, pb):
        np.testing.assert_array_equal(x, y)


def test_short_training_lowers_validation_loss(series):
    split = chronological_split_for(series, CONFIG)
    cfg = TrainConfig(**{**CONFIG.to_dict(), "epochs": 3, "max_steps_per_epoch": 6})
    seed_everything(cfg.seed)
    prep = prepare(series, fit_stop=int(split.val.min()), config=cfg, device=torch.device("cpu"))
    untrained = validation_loss(build_model(prep, series, cfg), prep, validation_hours(split, cfg), cfg)
    result = fit(series, split, cfg)
    assert result.best_val < untrained
    assert 0 <= result.best_epoch < len(result.history) <= cfg.epochs
