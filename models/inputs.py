"""What every forecaster reads, built once per series: scaled values, observed flags, the calendar, lags.

:class:`Inputs` holds, per level, the standardised values (gaps filled with
the unit's last observed value) and an "observed" flag, the local calendar
of every step, the indices of the seasonal lags and the standardised external
features. Windows are cut from it on demand, by the same index rules for
every model: :meth:`Inputs.batch` for the neural models (torch tensors),
:meth:`Inputs.table` for the tabular ones (ridge, gradient boosting).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ciu.models.data import (HOLIDAY_CLASS, ExternalScaler, HierSeries, Scaler, forward_filled, target_index,
                         window_index)

#: day classes (Monday .. Sunday, holiday)
DAY_CLASSES = HOLIDAY_CLASS + 1
#: the most recent input steps whose neighbours' mean is a tabular feature
NEIGHBOUR_STEPS = 3


@dataclass
class Inputs:
    """Scaled arrays of one series for a model with ``history`` input steps and ``horizons`` output steps."""

    series: HierSeries
    scaler: Scaler
    ext_scaler: ExternalScaler
    history: int
    horizons: int
    z: list[np.ndarray]  # per level (T, N_l, C) float32: standardised, gaps forward-filled
    seen: list[np.ndarray]  # per level (T, N_l, C) float32: 1 where observed
    cov: list[np.ndarray] | None  # per level (T, N_l, K) float32, scaled like the level's first channel
    external: np.ndarray  # (T, E) float32, standardised
    slot: np.ndarray  # (T,) local slot of the day
    day: np.ndarray  # (T,) day class
    season: np.ndarray  # (S, T) index of the seasonal lags (clamped to 0 before the start)
    seasonal_days: tuple[int, ...]

    @classmethod
    def build(cls, series: HierSeries, *, scaler: Scaler, ext_scaler: ExternalScaler, history: int,
              horizons: int) -> Inputs:
        levels = series.level_values()
        z, seen = [], []
        for i, v in enumerate(levels):
            obs = ~np.isnan(v) & series.mask[:, None, None]  # type: ignore[index]
            z.append(scaler.scale(i, forward_filled(v)).astype(np.float32))
            seen.append(obs.astype(np.float32))
        cov = None
        if series.covariates is not None:
            cov = [(np.nan_to_num(c) / _count_scale(scaler, i)).astype(np.float32)
                   for i, c in enumerate(series.level_values(np.nan_to_num(series.covariates)))]
        slot, day = series.calendar()
        days = series.seasonal_days(horizons)
        season = np.stack([series.season_index(d) for d in days])
        return cls(series, scaler, ext_scaler, history, horizons, z, seen, cov, ext_scaler(series.external),
                   slot, day, np.maximum(season, 0), days)

    @property
    def n_levels(self) -> int:
        return len(self.z)

    @property
    def channels(self) -> int:
        return self.z[0].shape[2]

    def unscale(self, level: int, zvalues: np.ndarray) -> np.ndarray:
        """Standardised values ``(B, N_l, H, C)`` back to the original scale."""
        return self.scaler.unscale(level, zvalues.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)

    def view(self, scaler: Scaler) -> Inputs:
        """The same series standardised by another scaler (another transform); built once per scaler."""
        if scaler is self.scaler:
            return self
        views = self.__dict__.setdefault("_views", {})
        key = id(scaler)
        if key not in views:
            views[key] = (scaler, Inputs.build(self.series, scaler=scaler, ext_scaler=self.ext_scaler,
                                               history=self.history, horizons=self.horizons))
        return views[key][1]

    def announced(self, ts: np.ndarray) -> np.ndarray:
        """The announced people at the bottom level at the targets of issue steps ``ts`` ``(B, N0, H, C)``."""
        return self.series.announced()[target_index(np.asarray(ts), self.horizons)].transpose(0, 2, 1, 3)

    def less_announced(self) -> Inputs:
        """The same inputs of the series without its announced events (:meth:`HierSeries.less_announced`),
        standardised by the same scalers; built once."""
        if self.series.covariates is None:
            return self
        if "_less" not in self.__dict__:
            self.__dict__["_less"] = Inputs.build(self.series.less_announced(), scaler=self.scaler,
                                                  ext_scaler=self.ext_scaler, history=self.history,
                                                  horizons=self.horizons)
        return self.__dict__["_less"]

    def fitted_scaler(self, transform: str, stop: int) -> Scaler:
        """A scaler of ``transform`` fitted on the steps before ``stop``; fitted once, so the models that ask
        for the same one share it and its :meth:`view`."""
        scalers = self.__dict__.setdefault("_scalers", {})
        if (transform, stop) not in scalers:
            scalers[(transform, stop)] = Scaler.fit(self.series, stop=stop, transform=transform)
        return scalers[(transform, stop)]

    def truth(self, ts: np.ndarray) -> list[np.ndarray]:
        """The true values of the targets of issue steps ``ts``, per level ``(B, N_l, H, C)`` (NaN where unknown)."""
        tgt = target_index(ts, self.horizons)
        return [v[tgt].transpose(0, 2, 1, 3) for v in self.series.level_values()]

    # -- tabular features -------------------------------------------------------------------
    def table(self, ts: np.ndarray, h: int, *, level: int = 0, one_hot: bool = True) -> np.ndarray:
        """Features ``(B, N, F)`` for horizon ``h`` (1-based) of issue steps ``ts`` at ``level``.

        Columns: the input window (standardised, every channel), the mean of the
        same-level neighbours' last :data:`NEIGHBOUR_STEPS` steps, the seasonal
        lags at the target step, the covariates and external features of the
        target step, static unit features, and the calendar of the target step
        (one-hot slot and day class, or their integer codes with ``one_hot=False``).
        """
        ts = np.asarray(ts)
        z = self.z[level]
        b, n = len(ts), z.shape[1]
        tgt = ts + h
        window = z[window_index(ts, self.history)]  # (B, L, N, C)
        recent = window[:, -NEIGHBOUR_STEPS:].transpose(0, 1, 3, 2)  # (B, K, C, N)
        near = (recent.reshape(-1, n) @ self._neighbour_mean(level).T).reshape(recent.shape)
        parts = [window.transpose(0, 2, 1, 3).reshape(b, n, -1), near.transpose(0, 3, 1, 2).reshape(b, n, -1),
                 z[self.season[:, tgt]].transpose(1, 2, 0, 3).reshape(b, n, -1)]
        if self.cov is not None:
            parts.append(self.cov[level][tgt])
        if self.external.shape[1]:
            parts.append(np.broadcast_to(self.external[tgt][:, None], (b, n, self.external.shape[1])))
        static = self.series.levels[level].static
        if static.shape[1]:
            parts.append(np.broadcast_to(static[None], (b, n, static.shape[1])))
        if one_hot:
            cal = np.concatenate([np.eye(self.series.steps_per_day, dtype=np.float32)[self.slot[tgt]],
                                  np.eye(DAY_CLASSES, dtype=np.float32)[self.day[tgt]]], axis=1)
        else:
            cal = np.stack([self.slot[tgt], self.day[tgt]], axis=1).astype(np.float32)
        parts.append(np.broadcast_to(cal[:, None], (b, n, cal.shape[1])))
        return np.concatenate([np.asarray(p, dtype=np.float32) for p in parts], axis=2)

    def _neighbour_mean(self, level: int):
        """The row-normalised same-level adjacency (sparse): ``A @ x`` is each unit's neighbours' mean."""
        from scipy import sparse

        cache = self.__dict__.setdefault("_adjacency", {})
        if level not in cache:
            n = self.z[level].shape[1]
            src, dst = np.asarray(self.series.levels[level].neighbours, dtype=np.int64).reshape(2, -1)
            a = sparse.csr_matrix((np.ones(len(src), dtype=np.float32), (dst, src)), shape=(n, n))
            deg = np.asarray(a.sum(axis=1)).ravel()
            cache[level] = sparse.diags(np.where(deg > 0, 1.0 / np.maximum(deg, 1), 0.0).astype(np.float32)) @ a
        return cache[level]

    def table_target(self, ts: np.ndarray, h: int, *, level: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Standardised targets ``(B, N, C)`` of horizon ``h`` and their observed flags."""
        tgt = np.asarray(ts) + h
        return self.z[level][tgt], self.seen[level][tgt]

    # -- torch ------------------------------------------------------------------------------
    def tensors(self, device: torch.device | str = "cpu") -> TorchInputs:
        """The arrays as tensors on ``device`` (shared with numpy on the CPU)."""
        def t(a: np.ndarray) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(device)

        s = self.series
        return TorchInputs(
            z=[t(a) for a in self.z], seen=[t(a) for a in self.seen],
            cov=None if self.cov is None else [t(a) for a in self.cov], external=t(self.external),
            slot=t(self.slot), day=t(self.day), season=t(self.season),
            static=[t(lv.static.astype(np.float32)) for lv in s.levels],
            parent=[t(lv.parent.astype(np.int64)) for lv in s.levels[:-1]],  # type: ignore[union-attr]
            neighbours=[t(np.asarray(lv.neighbours, dtype=np.int64)) for lv in s.levels],
            mean=[t(m.astype(np.float32)) for m in self.scaler.mean],
            sd=[t(d.astype(np.float32)) for d in self.scaler.sd],
            history=self.history, horizons=self.horizons)


def _count_scale(scaler: Scaler, level: int) -> np.ndarray:
    """``(N_l, 1)``: what a covariate counted like the target (persons) is divided by."""
    if scaler.transform == "identity":
        return scaler.sd[level][:, :1]
    return np.maximum(np.expm1(scaler.mean[level][:, :1] + scaler.sd[level][:, :1]), 1.0)


@dataclass
class Batch:
    """Model inputs and targets of a batch of issue steps, per level."""

    seq: list[Tensor]  # (B, N, L, 2C): standardised window and observed flags
    lags: list[Tensor]  # (B, N, H * S * C): seasonal lags of every target step
    cov: list[Tensor] | None  # (B, N, H * K)
    slot: Tensor  # (B, H) local slot of every target step
    day: Tensor  # (B, H) day class of every target step
    ext: Tensor  # (B, H * E) external features of the target steps
    target: list[Tensor]  # (B, N, H, C) standardised
    seen: list[Tensor]  # (B, N, H, C) 1 where the target is observed


@dataclass
class TorchInputs:
    """:class:`Inputs` as tensors, with the hierarchy: what a neural model needs on its device."""

    z: list[Tensor]
    seen: list[Tensor]
    cov: list[Tensor] | None
    external: Tensor
    slot: Tensor
    day: Tensor
    season: Tensor
    static: list[Tensor]
    parent: list[Tensor]
    neighbours: list[Tensor]
    mean: list[Tensor]
    sd: list[Tensor]
    history: int
    horizons: int

    def batch(self, ts: Tensor | np.ndarray, *, levels: int | None = None) -> Batch:
        """Cut the windows of issue steps ``ts`` (the first ``levels`` levels)."""
        dev = self.external.device
        ts = torch.as_tensor(np.asarray(ts), dtype=torch.long, device=dev)
        hist = ts[:, None] + torch.arange(-self.history + 1, 1, device=dev)
        tgt = ts[:, None] + torch.arange(1, self.horizons + 1, device=dev)
        lag_idx = self.season[:, tgt]  # (S, B, H)
        seqs, lags, covs, targets, seens = [], [], [], [], []
        for i in range(len(self.z) if levels is None else levels):
            z, seen = self.z[i], self.seen[i]
            seqs.append(torch.cat([z[hist], seen[hist]], dim=-1).permute(0, 2, 1, 3))
            b, n = ts.shape[0], z.shape[1]
            lags.append(z[lag_idx].permute(1, 3, 2, 0, 4).reshape(b, n, -1))
            if self.cov is not None:
                covs.append(self.cov[i][tgt].permute(0, 2, 1, 3).reshape(b, n, -1))
            targets.append(z[tgt].permute(0, 2, 1, 3))
            seens.append(seen[tgt].permute(0, 2, 1, 3))
        return Batch(seqs, lags, covs if self.cov is not None else None, self.slot[tgt], self.day[tgt],
                     self.external[tgt].flatten(1), targets, seens)
