"""Baselines on the same split as the tower: every forecast is bottom-level, summed up the hierarchy.

- :func:`persistence`: the last observed hour, for every horizon;
- :func:`seasonal_naive`: the same hour one week earlier;
- :func:`historical_average`: the mean of the training hours with the same weekday and hour;
- :func:`fit_unit_lstm`: one LSTM shared by all bottom units, no hierarchy, no neighbours;
- :class:`STResNet` / :func:`fit_stresnet`: a residual CNN over closeness, period and trend
  frames, for data on a regular grid (Zhang et al., AAAI 2017, family).
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.data import HierSeries, Level, Split
from models.train import FitResult, Prepared, TrainConfig, fit, pick_device, predict, seed_everything


def roll_up(bottom: np.ndarray, series: HierSeries) -> list[np.ndarray]:
    """Bottom forecasts ``(B, N0, H, C)`` summed to every level."""
    out = [bottom]
    for lv, up in zip(series.levels[:-1], series.levels[1:]):
        agg = np.zeros((bottom.shape[0], up.n) + bottom.shape[2:])
        np.add.at(agg, (slice(None), lv.parent), out[-1])
        out.append(agg)
    return out


def _bottom(series: HierSeries) -> np.ndarray:
    return np.nan_to_num(series.values)


def persistence(series: HierSeries, ts: np.ndarray, horizons: int) -> np.ndarray:
    """The value of hour ``t - 1`` for hours ``t .. t + H - 1``."""
    v = _bottom(series)[ts - 1]  # (B, N, C)
    return np.repeat(v[:, :, None], horizons, axis=2)


def seasonal_naive(series: HierSeries, ts: np.ndarray, horizons: int, *, season: int = 168) -> np.ndarray:
    """The value one season (a week) before each target hour."""
    idx = ts[:, None] + np.arange(horizons)[None] - season
    return _bottom(series)[idx].transpose(0, 2, 1, 3)


def historical_average(series: HierSeries, ts: np.ndarray, horizons: int, *, fit_stop: int) -> np.ndarray:
    """Mean of the usable hours before ``fit_stop`` with the same weekday and hour."""
    key = series.times.day_of_week.to_numpy() * 24 + series.times.hour.to_numpy()
    v = series.values[:fit_stop]
    ok = series.mask[:fit_stop] & ~np.isnan(v).any(axis=(1, 2))  # type: ignore[index]
    table = np.zeros((168,) + v.shape[1:])
    for k in range(168):
        rows = ok & (key[:fit_stop] == k)
        if rows.any():
            table[k] = v[rows].mean(axis=0)
    idx = ts[:, None] + np.arange(horizons)[None]
    return table[key[idx]].transpose(0, 2, 1, 3)


def bottom_only(series: HierSeries) -> HierSeries:
    """The same series with the bottom level alone (no hierarchy, no neighbours)."""
    lv = series.levels[0]
    alone = Level(lv.name, lv.codes, None, lv.static)
    return HierSeries([alone], series.values, series.times, series.channels, series.external, series.external_names,
                      series.covariates, series.mask)


def fit_unit_lstm(series: HierSeries, split: Split, config: TrainConfig, *, fit_stop: int | None = None) -> FitResult:
    """A per-unit LSTM: the tower's encoder and head on the bottom level only, weights shared by units."""
    cfg = replace(config, neighbours=False, top_down=False, risk_weight=0.0)
    return fit(bottom_only(series), split, cfg, fit_stop=fit_stop)


def predict_unit_lstm(result: FitResult, ts: np.ndarray) -> np.ndarray:
    return predict(result.model, result.prep, ts)[0][0]


class ResUnit(nn.Module):
    """BN → ReLU → conv, twice, plus the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.bn1, self.bn2 = nn.BatchNorm2d(channels), nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in (self.bn1, self.bn2, self.conv1, self.conv2):
            m.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))


class STResNet(nn.Module):
    """Closeness, period and trend frames → residual CNN, fused with external features.

    Parameters
    ----------
    in_channels
        Stacked input frames × channels.
    out_channels
        Channels per forecast frame (× horizons).
    ext_channels
        External features of the target hours.
    grid
        ``(rows, cols)``.
    hidden
        Filters per convolution.
    units
        Residual units.
    """

    def __init__(self, in_channels: int, out_channels: int, ext_channels: int, grid: tuple[int, int], *,
                 hidden: int = 32, units: int = 4) -> None:
        super().__init__()
        self.grid = grid
        self.out_channels = out_channels
        self.inp = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.res = nn.Sequential(*[ResUnit(hidden) for _ in range(units)])
        self.out = nn.Conv2d(hidden, out_channels, 3, padding=1)
        self.ext = nn.Sequential(nn.Linear(ext_channels, 16), nn.ReLU(),
                                 nn.Linear(16, out_channels * grid[0] * grid[1]))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.inp.reset_parameters()
        self.out.reset_parameters()
        for m in self.res:
            m.reset_parameters()
        for m in self.ext:
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def forward(self, x: Tensor, ext: Tensor) -> Tensor:
        y = self.out(F.relu(self.res(self.inp(x))))
        return y + self.ext(ext).reshape(-1, self.out_channels, *self.grid)


#: lags (hours) of the ST-ResNet frames: closeness, period (days), trend (weeks)
STRESNET_LAGS: tuple[int, ...] = (1, 2, 3, 24, 48, 72, 168, 336)


def _frames(prep: Prepared, ts: Tensor, grid: tuple[int, int], horizons: int) -> tuple[Tensor, Tensor, Tensor]:
    v = prep.data.values[0]  # (T, N, C) scaled, N = rows * cols in row-major order
    c = v.shape[2]
    x = torch.stack([v[ts - lag] for lag in STRESNET_LAGS], dim=1)  # (B, K, N, C)
    x = x.permute(0, 1, 3, 2).reshape(len(ts), len(STRESNET_LAGS) * c, *grid)
    fut = ts[:, None] + torch.arange(horizons, device=ts.device)
    y = v[fut].permute(0, 1, 3, 2).reshape(len(ts), horizons * c, *grid)
    ext = prep.data.external[fut].flatten(1)
    return x, y, ext


def fit_stresnet(prep: Prepared, split: Split, grid: tuple[int, int], config: TrainConfig) -> tuple[STResNet, dict]:
    """Train an :class:`STResNet` on the bottom level (scaled), early stopping on validation."""
    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    device = pick_device(config.device)
    c = prep.data.values[0].shape[2]
    e = prep.data.external.shape[1]
    model = STResNet(len(STRESNET_LAGS) * c, config.horizons * c, config.horizons * e, grid,
                     hidden=config.hidden).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    best, best_val, best_epoch, bad = copy.deepcopy(model.state_dict()), float("inf"), -1, 0
    history = []
    train_ts = split.train[split.train >= max(STRESNET_LAGS)]
    val_ts = torch.as_tensor(split.val, device=device)
    t0, seen = time.perf_counter(), 0
    for epoch in range(config.epochs):
        model.train()
        order = train_ts[torch.randperm(len(train_ts), generator=gen).numpy()]
        steps = range(0, len(order), config.batch_size)
        if config.max_steps_per_epoch is not None:
            steps = steps[: config.max_steps_per_epoch]
        for s in steps:
            ts = torch.as_tensor(order[s:s + config.batch_size], device=device)
            x, y, ext = _frames(prep, ts, grid, config.horizons)
            opt.zero_grad()
            loss = F.mse_loss(model(x, ext), y)
            loss.backward()
            opt.step()
            seen += len(ts)
        model.eval()
        with torch.no_grad():
            x, y, ext = _frames(prep, val_ts, grid, config.horizons)
            val = float(F.mse_loss(model(x, ext), y))
        history.append({"epoch": epoch, "val_loss": val})
        if val < best_val - 1e-7:
            best, best_val, best_epoch, bad = copy.deepcopy(model.state_dict()), val, epoch, 0
        else:
            bad += 1
            if bad >= config.patience:
                break
    model.load_state_dict(best)
    info = {"best_epoch": best_epoch, "best_val_loss": best_val, "epochs": len(history),
            "seconds": time.perf_counter() - t0, "samples_per_s": seen / max(time.perf_counter() - t0, 1e-9)}
    return model, info


@torch.no_grad()
def predict_stresnet(model: STResNet, prep: Prepared, ts: np.ndarray, grid: tuple[int, int],
                     horizons: int) -> np.ndarray:
    """Forecasts ``(B, N0, H, C)`` on the original scale."""
    model.eval()
    out = []
    device = prep.data.external.device
    for i in range(0, len(ts), 256):
        t = torch.as_tensor(ts[i:i + 256], device=device)
        x, _, ext = _frames(prep, t, grid, horizons)
        y = model(x, ext)  # (B, H*C, rows, cols)
        c = prep.data.values[0].shape[2]
        y = y.reshape(len(t), horizons, c, -1).permute(0, 3, 1, 2).clamp_min(0.0)
        out.append((y * prep.data.scales[0]).cpu().numpy())
    return np.concatenate(out)
