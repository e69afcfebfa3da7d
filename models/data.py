"""Hierarchical time series for the tower model: levels, parents, windows.

A :class:`HierSeries` holds one target variable (one or more channels) at
every level of a unit hierarchy, bottom to top, with each level's parent
index into the level above. Upper-level truth is the sum of the bottom level
(the roll-up rule of counts), so the truth is coherent by construction.
It is built from a torch-geometric ``HeteroData`` (:func:`models.graph.build_graph`)
or straight from arrays (benchmarks on real data).

Windows: a sample issued at hour index ``t`` sees hours ``t-L .. t-1`` and
predicts hours ``t .. t+H-1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ciu.errors import ValidationError

#: seasonal lags (hours) whose values at each target hour are handed to the model
SEASONAL_LAGS: tuple[int, ...] = (24, 168)


@dataclass
class Level:
    """One level of the hierarchy.

    Attributes
    ----------
    name
        Level name (``"floor"``, ``"zone"``, ...).
    codes
        Unit codes, in node order.
    parent
        Index of each unit's parent in the next level up (``None`` at the top).
    static
        Static features ``(N, S)``, already standardised.
    neighbours
        Same-level adjacency as an ``edge_index`` ``(2, M)`` (both directions).
    """

    name: str
    codes: list[str]
    parent: np.ndarray | None
    static: np.ndarray
    neighbours: np.ndarray = field(default_factory=lambda: np.zeros((2, 0), dtype=np.int64))

    @property
    def n(self) -> int:
        return len(self.codes)


@dataclass
class HierSeries:
    """A target variable at every level of a hierarchy, with external features.

    Attributes
    ----------
    levels
        Bottom to top.
    values
        Bottom-level values ``(T, N0, C)``; NaN where unknown.
    times
        Hourly time index (UTC, naive).
    channels
        Channel names (``["people"]``, ``["departures", "arrivals"]``).
    external
        Known external features per hour ``(T, E)`` (calendar, holiday, weather).
    external_names
        Names of the external feature columns.
    covariates
        Known-future per-unit covariates at the bottom level ``(T, N0, K)``
        (announced event attendance), summed up the hierarchy like the target.
    mask
        ``(T,)`` booleans: hours usable as training targets (False for gaps
        and zero-filled duplicates).
    """

    levels: list[Level]
    values: np.ndarray
    times: pd.DatetimeIndex
    channels: list[str]
    external: np.ndarray
    external_names: list[str]
    covariates: np.ndarray | None = None
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        t, n0, _ = self.values.shape
        if n0 != self.levels[0].n:
            raise ValidationError(f"values have {n0} units, level {self.levels[0].name!r} has {self.levels[0].n}",
                                  field="values")
        if len(self.times) != t or self.external.shape[0] != t:
            raise ValidationError("values, times and external features differ in length", field="times")
        for lo, hi in zip(self.levels[:-1], self.levels[1:]):
            if lo.parent is None or len(lo.parent) != lo.n or (lo.parent < 0).any() or (lo.parent >= hi.n).any():
                raise ValidationError(f"level {lo.name!r} needs a parent in {hi.name!r} for every unit", field="parent")
        if self.mask is None:
            self.mask = np.ones(t, dtype=bool)

    @property
    def level_names(self) -> list[str]:
        return [lv.name for lv in self.levels]

    def membership(self) -> list[np.ndarray]:
        """For each level, the index of every bottom unit's ancestor at that level."""
        idx = np.arange(self.levels[0].n)
        out = [idx]
        for lv in self.levels[:-1]:
            idx = lv.parent[idx]  # type: ignore[index]
            out.append(idx)
        return out

    def level_values(self, values: np.ndarray | None = None) -> list[np.ndarray]:
        """Bottom values summed to every level: a list of ``(T, N_l, C)`` arrays (NaN stays NaN)."""
        v = self.values if values is None else values
        out = []
        for lv, member in zip(self.levels, self.membership()):
            agg = np.zeros((v.shape[0], lv.n, v.shape[2]), dtype=np.float64)
            np.add.at(agg, (slice(None), member), np.nan_to_num(v, nan=0.0))
            nan_any = np.zeros((v.shape[0], lv.n), dtype=bool)
            np.logical_or.at(nan_any.T, member, np.isnan(v).any(axis=2).T)
            agg[nan_any] = np.nan
            out.append(agg)
        return out

    def subset(self, start: int, stop: int) -> HierSeries:
        """The hours ``start .. stop-1`` (levels shared)."""
        return HierSeries(self.levels, self.values[start:stop], self.times[start:stop], self.channels,
                          self.external[start:stop], self.external_names,
                          None if self.covariates is None else self.covariates[start:stop],
                          None if self.mask is None else self.mask[start:stop])


def calendar_features(times: pd.DatetimeIndex, holidays: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
    """Hour and weekday on the circle, weekend and holiday flags: ``(T, 6)``."""
    hour = times.hour.to_numpy()
    dow = times.day_of_week.to_numpy()
    hol = np.zeros(len(times)) if holidays is None else np.asarray(holidays, dtype=float)
    feats = np.stack([np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24),
                      np.sin(2 * np.pi * dow / 7), np.cos(2 * np.pi * dow / 7),
                      (dow >= 5).astype(float), hol], axis=1)
    return feats.astype(np.float32), ["hour_sin", "hour_cos", "dow_sin", "dow_cos", "weekend", "holiday"]


@dataclass
class Split:
    """Chronological split of issue hours into train / validation / test."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def issue_hours(series: HierSeries, *, history: int, horizons: int, start: int = 0, stop: int | None = None,
                need_lags: bool = True) -> np.ndarray:
    """Issue hours ``t`` in ``[start, stop)`` whose inputs and targets all exist and are unmasked."""
    t_total = len(series.times)
    stop = t_total if stop is None else stop
    first = max(start, history, max(SEASONAL_LAGS) if need_lags else 0)
    ts = np.arange(first, stop - horizons + 1)
    if len(ts) == 0:
        return ts
    ok = series.mask.astype(bool) & ~np.isnan(series.values).any(axis=(1, 2))  # type: ignore[union-attr]
    good = np.ones(len(ts), dtype=bool)
    for k in range(horizons):
        good &= ok[ts + k]
    return ts[good]


def chronological_split(series: HierSeries, *, history: int, horizons: int, fractions: tuple[float, float] = (0.7, 0.1),
                        test_start: int | None = None, val_hours: int | None = None) -> Split:
    """Split by time: train, then validation, then test; targets never cross a boundary.

    Either ``fractions`` of the hours (train, validation; the rest is test) or
    an explicit ``test_start`` hour index with ``val_hours`` before it.
    """
    t_total = len(series.times)
    if test_start is None:
        a = int(round(t_total * fractions[0]))
        b = int(round(t_total * (fractions[0] + fractions[1])))
    else:
        b = test_start
        a = b - (val_hours if val_hours is not None else int(0.1 * b))
    return Split(issue_hours(series, history=history, horizons=horizons, stop=a),
                 issue_hours(series, history=history, horizons=horizons, start=a, stop=b),
                 issue_hours(series, history=history, horizons=horizons, start=b))


@dataclass
class Tensors:
    """Everything a model needs on one device, scaled; windows are cut on the fly."""

    values: list[Tensor]  # per level (T, N_l, C), scaled, NaN -> 0
    covariates: list[Tensor] | None  # per level (T, N_l, K), scaled
    external: Tensor  # (T, E)
    static: list[Tensor]  # per level (N_l, S)
    parent: list[Tensor]  # child -> parent index per level below the top
    neighbours: list[Tensor]  # per level (2, M)
    scales: Tensor  # (n_levels, C)
    history: int
    horizons: int

    @property
    def n_levels(self) -> int:
        return len(self.values)


def fit_scales(series: HierSeries, *, stop: int, quantile: float = 0.99) -> np.ndarray:
    """Per-level, per-channel scale: a high quantile of the unit values in hours ``< stop``.

    A quantile rather than the maximum, so that one glitch in the data (TaxiNYC
    has cells with a single hour twenty times their usual peak) does not squeeze
    every other value towards zero.
    """
    out = []
    for lv in series.level_values(series.values[:stop]):
        kept = lv[series.mask[:stop]]  # type: ignore[index]
        m = np.nanquantile(kept.reshape(-1, kept.shape[-1]), quantile, axis=0) if len(kept) else np.ones(lv.shape[-1])
        out.append(np.where(np.isfinite(m) & (m > 0), m, 1.0))
    return np.stack(out).astype(np.float32)


def to_tensors(series: HierSeries, *, scales: np.ndarray, history: int, horizons: int,
               device: torch.device | str = "cpu") -> Tensors:
    """Scale every level and move it to ``device``."""
    levels = series.level_values()
    vals = [torch.tensor(np.nan_to_num(v / scales[i], nan=0.0), dtype=torch.float32, device=device)
            for i, v in enumerate(levels)]
    cov = None
    if series.covariates is not None:
        # covariates count persons like the target: scaled by the level's first channel scale
        cov = [torch.tensor(np.nan_to_num(v / scales[i][:1], nan=0.0), dtype=torch.float32, device=device)
               for i, v in enumerate(series.level_values(series.covariates))]
    return Tensors(
        values=vals, covariates=cov,
        external=torch.tensor(np.nan_to_num(series.external), dtype=torch.float32, device=device),
        static=[torch.tensor(lv.static, dtype=torch.float32, device=device) for lv in series.levels],
        parent=[torch.tensor(lv.parent, dtype=torch.long, device=device) for lv in series.levels[:-1]],
        neighbours=[torch.tensor(lv.neighbours, dtype=torch.long, device=device) for lv in series.levels],
        scales=torch.tensor(scales, dtype=torch.float32, device=device), history=history, horizons=horizons)


@dataclass
class Batch:
    """Model inputs and targets for a batch of issue hours."""

    seq: list[Tensor]  # per level (B, N, L, C + Eh)
    aux: list[Tensor]  # per level (B, N, A): seasonal lags at target hours, covariates, static
    ext: Tensor  # (B, H * E)
    target: list[Tensor]  # per level (B, N, H, C), scaled


def make_batch(data: Tensors, ts: Tensor | np.ndarray) -> Batch:
    """Cut windows for the issue hours ``ts``."""
    ts = torch.as_tensor(ts, dtype=torch.long, device=data.external.device)
    L, H = data.history, data.horizons
    hist = ts[:, None] + torch.arange(-L, 0, device=ts.device)  # (B, L)
    fut = ts[:, None] + torch.arange(0, H, device=ts.device)  # (B, H)
    ext_hist = data.external[hist][..., :4]  # calendar of the input hours
    seqs, auxs, targets = [], [], []
    for i, v in enumerate(data.values):
        n = v.shape[1]
        x = v[hist].permute(0, 2, 1, 3)  # (B, N, L, C)
        e = ext_hist[:, None].expand(-1, n, -1, -1)
        seqs.append(torch.cat([x, e], dim=-1))
        parts = [v[fut - lag].permute(0, 2, 1, 3).flatten(2) for lag in SEASONAL_LAGS]
        if data.covariates is not None:
            parts.append(data.covariates[i][fut].permute(0, 2, 1, 3).flatten(2))
        parts.append(data.static[i][None].expand(len(ts), -1, -1))
        auxs.append(torch.cat(parts, dim=-1))
        targets.append(v[fut].permute(0, 2, 1, 3))
    return Batch(seqs, auxs, data.external[fut].flatten(1), targets)
