"""Baselines and real-data graphs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ciu.errors import ValidationError
from models.baselines import (STRESNET_LAGS, STResNet, fit_stresnet, fit_unit_lstm, historical_average, persistence,
                              predict_stresnet, predict_unit_lstm, roll_up, seasonal_naive)
from models.data import HierSeries, Level, calendar_features, chronological_split
from models.datasets import manhattan_districts, manhattan_flows, shared_data
from models.graph import series_from_graph
from models.train import TrainConfig, prepare


def toy_series(hours: int = 24 * 21, n: int = 8) -> HierSeries:
    """Four cells per block, two blocks, one city; a daily rhythm per cell."""
    times = pd.date_range("2024-01-01", periods=hours, freq="h")
    rng = np.random.default_rng(0)
    base = 10 + 5 * np.sin(2 * np.pi * times.hour.to_numpy() / 24)
    values = (base[:, None, None] * (1 + np.arange(n))[None, :, None] / n + rng.normal(0, 0.1, (hours, n, 2)))
    cal, names = calendar_features(times)
    levels = [Level("cell", [f"c{i}" for i in range(n)], np.arange(n) // 4, np.zeros((n, 1), np.float32),
                    np.array([[0, 1], [1, 0]])),
              Level("block", ["b0", "b1"], np.zeros(2, dtype=np.int64), np.zeros((2, 1), np.float32)),
              Level("city", ["x"], None, np.zeros((1, 1), np.float32))]
    return HierSeries(levels, values, times, ["in", "out"], cal, names)


def test_naive_baselines_are_what_they_say():
    s = toy_series()
    ts = np.array([200, 300])
    p = persistence(s, ts, 3)
    assert p.shape == (2, 8, 3, 2)
    np.testing.assert_array_equal(p[:, :, 2], s.values[ts - 1])
    sn = seasonal_naive(s, ts, 3)
    np.testing.assert_array_equal(sn[:, :, 1], s.values[ts + 1 - 168])
    ha = historical_average(s, ts, 1, fit_stop=168 * 2)
    same = [t for t in range(0, 336) if t % 168 == 200 % 168]
    np.testing.assert_allclose(ha[0, :, 0], s.values[same].mean(axis=0))


def test_roll_up_sums_to_every_level():
    s = toy_series()
    bottom = np.random.default_rng(1).random((3, 8, 2, 2))
    levels = roll_up(bottom, s)
    np.testing.assert_allclose(levels[1][:, 0], bottom[:, :4].sum(axis=1))
    np.testing.assert_allclose(levels[2][:, 0], bottom.sum(axis=1))


def test_stresnet_and_unit_lstm_train_and_predict():
    s = toy_series(hours=24 * 28, n=8)
    cfg = TrainConfig(history=6, horizons=1, hidden=8, epochs=2, batch_size=16, max_steps_per_epoch=3, seed=0)
    split = chronological_split(s, history=6, horizons=1, fractions=(0.7, 0.15))
    prep = prepare(s, fit_stop=int(split.val.min()), config=cfg, device=torch.device("cpu"))
    model, info = fit_stresnet(prep, split, (2, 4), cfg)
    assert info["epochs"] == 2 and info["best_epoch"] in (0, 1)
    pred = predict_stresnet(model, prep, split.test, (2, 4), 1)
    assert pred.shape == (len(split.test), 8, 1, 2) and (pred >= 0).all()
    net = STResNet(len(STRESNET_LAGS) * 2, 2, 3, (2, 4), hidden=4, units=1)
    out = net(torch.randn(5, len(STRESNET_LAGS) * 2, 2, 4), torch.randn(5, 3))
    out.sum().backward()
    assert out.shape == (5, 2, 2, 4) and net.inp.weight.grad is not None
    res = fit_unit_lstm(s, split, cfg)
    assert res.model.config.levels == ("cell",)
    assert predict_unit_lstm(res, split.test[:4]).shape == (4, 8, 1, 2)


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
    data = manhattan_flows(mode="bike")
    raw = np.load(shared_data() / "nyc" / "flows" / "201901-202012-NYCbike-inoutflow.npz")["arr_0"]
    assert torch.equal(data["zone"].series, torch.tensor(raw.transpose(1, 0, 2), dtype=torch.float32))
    s = series_from_graph(data)
    city = s.level_values()[2]
    np.testing.assert_allclose(city[:, 0], raw.sum(axis=1), rtol=1e-6)
    assert s.channels == ["departures", "arrivals"]
    assert data["zone", "near", "zone"].edge_index.shape[1] > 69
