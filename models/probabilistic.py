"""Probabilistic forecasts for any point forecaster: sample paths, quantiles and the risk of exceeding a threshold.

Sample paths are drawn at the bottom level by adding whole validation
residual vectors (every unit, horizon and channel of one validation issue
step at once, so the units' errors keep their correlation) to the point
forecast, each scaled to the forecast's size: a residual is stored as
``(truth - forecast) / spread(forecast)`` with ``spread = sqrt(forecast + c)``
(counts vary more where they are larger; ``c`` is the unit's mean) and put
back as ``forecast + spread · residual``. Every path is summed up the
hierarchy, so the distribution is coherent across levels, and quantiles and
risk are read off the paths at every level. Point forecasts stay the
forecaster's own and stay exactly coherent (children sum to their parent);
a level's quantiles are those of its summed paths, not sums of quantiles.

Risk is the share of paths above the unit's threshold: its capacity where
known (summed up the levels), else a high quantile of its training history.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.baselines import roll_up
from models.data import HierSeries
from models.metrics import brier, coverage

#: the quantiles every forecast carries
QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)


@dataclass
class ResidualBank:
    """Scaled bottom-level residuals of validation forecasts, drawn jointly across units."""

    z: np.ndarray  # (M, N0, H, C)
    offset: np.ndarray  # (N0, C)
    nonnegative: bool = True

    @classmethod
    def fit(cls, forecast: np.ndarray, truth: np.ndarray, offset: np.ndarray, *, nonnegative: bool = True,
            most: int = 512, seed: int = 0) -> ResidualBank:
        """From validation forecasts and truths ``(M, N0, H, C)`` (NaN truth: that unit's residual is 0)."""
        if len(forecast) > most:
            keep = np.sort(np.random.default_rng(seed).choice(len(forecast), size=most, replace=False))
            forecast, truth = forecast[keep], truth[keep]
        offset = np.maximum(np.asarray(offset, dtype=np.float64), 1.0)
        z = (truth - forecast) / cls._spread(forecast, offset)
        return cls(np.nan_to_num(z).astype(np.float32), offset, nonnegative)

    @staticmethod
    def _spread(forecast: np.ndarray, offset: np.ndarray) -> np.ndarray:
        return np.sqrt(np.clip(forecast, 0.0, None) + offset[None, :, None])

    def sample(self, forecast: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` bottom sample paths ``(n, B, N0, H, C)`` around point forecasts ``(B, N0, H, C)``."""
        draw = rng.integers(0, len(self.z), size=(n, forecast.shape[0]))
        paths = forecast[None] + self._spread(forecast, self.offset)[None] * self.z[draw]
        return np.clip(paths, 0.0, None) if self.nonnegative else paths

    def to_state(self) -> dict[str, Any]:
        return {"z": self.z, "offset": self.offset, "nonnegative": self.nonnegative}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ResidualBank:
        return cls(np.asarray(state["z"]), np.asarray(state["offset"]), bool(state["nonnegative"]))


@dataclass
class Distribution:
    """Quantiles ``(B, N_l, H, C, Q)`` and risk ``(B, N_l, H, C)`` at every level."""

    quantiles: list[np.ndarray]
    risk: list[np.ndarray]


def distribution(point: np.ndarray, bank: ResidualBank, series: HierSeries, thresholds: list[np.ndarray], *,
                 samples: int = 200, seed: int = 0, chunk: int | None = None,
                 quantiles: tuple[float, ...] = QUANTILES) -> Distribution:
    """Quantiles and risk at every level from sample paths around bottom point forecasts ``(B, N0, H, C)``.

    ``thresholds`` are per level ``(N_l, C)``; risk is the share of paths above them.
    """
    rng = np.random.default_rng(seed)
    chunk = chunk or max(1, 4_000_000 // max(1, samples * int(np.prod(point.shape[1:]))))
    qs: list[list[np.ndarray]] = [[] for _ in series.levels]
    rs: list[list[np.ndarray]] = [[] for _ in series.levels]
    for i in range(0, len(point), chunk):
        per_level = roll_up(bank.sample(point[i:i + chunk], samples, rng), series, axis=-3)
        ranks = [int(round(q * (samples - 1))) for q in quantiles]
        for j, p in enumerate(per_level):
            # nearest-rank quantiles of the paths: one partial sort for all of them
            qs[j].append(np.moveaxis(np.partition(p, ranks, axis=0)[ranks], 0, -1))
            rs[j].append((p > thresholds[j][None, None, :, None]).mean(axis=0))
    return Distribution([np.concatenate(q) for q in qs], [np.concatenate(r) for r in rs])


def thresholds(series: HierSeries, *, stop: int, quantile: float = 0.9) -> list[np.ndarray]:
    """Per level ``(N_l, C)``: capacity where every bottom unit below has one, else the ``quantile`` of history.

    For counts the threshold is at least one: a unit that was empty most of the time is not "at risk"
    whenever a forecast is a fraction above zero.
    """
    out = []
    cap = series.capacity
    for lv, values, member in zip(series.levels, series.level_values(series.values[:stop]), series.membership()):
        kept = values[series.mask[:stop]]  # type: ignore[index]
        with warnings.catch_warnings():  # a unit never observed has no quantile: NaN, then 0 below
            warnings.simplefilter("ignore", RuntimeWarning)
            q = np.nanquantile(kept, quantile, axis=0) if len(kept) else np.zeros((lv.n, values.shape[2]))
        q = np.nan_to_num(q, nan=0.0)
        if np.isfinite(series.values).any() and np.nanmin(series.values) >= 0:
            q = np.maximum(q, 1.0)  # a count exceeds "usual" only when it is at least one: not 0 > 0
        if cap is not None and values.shape[2] == 1:
            c = np.nan_to_num(np.asarray(cap, dtype=np.float64))
            total = np.bincount(member, weights=c, minlength=lv.n)
            known = np.bincount(member, weights=(c > 0).astype(float), minlength=lv.n) == np.bincount(
                member, minlength=lv.n)
            q = np.where((known & (total > 0))[:, None], total[:, None], q)
        out.append(q)
    return out


def active_units(series: HierSeries, *, stop: int) -> list[np.ndarray]:
    """Per level ``(N_l, C)``: units observed above zero at least once in the training steps."""
    return [np.nan_to_num(v).max(axis=0) > 0 for v in series.level_values(series.values[:stop])]


def base_rates(series: HierSeries, limits: list[np.ndarray], *, stop: int) -> list[np.ndarray]:
    """Per level ``(N_l, C)``: how often each unit exceeded its threshold in the training steps (climatology)."""
    out = []
    for values, thr in zip(series.level_values(series.values[:stop]), limits):
        kept = values[series.mask[:stop]]  # type: ignore[index]
        seen = ~np.isnan(kept)
        out.append(((kept > thr[None]) & seen).sum(0) / np.maximum(seen.sum(0), 1))
    return out


def scores(dist: Distribution, truth: list[np.ndarray], limits: list[np.ndarray], rates: list[np.ndarray],
           names: list[str], active: list[np.ndarray] | None = None) -> dict[str, dict[str, float]]:
    """Per level: p10–p90 coverage, quantile order, and the Brier score of the risk against climatology's.

    ``active`` (per level ``(N_l, C)`` booleans) leaves out units that were never
    above zero in training: their forecast is a point mass at zero and would
    count as covered whatever the band's width.
    """
    out: dict[str, dict[str, float]] = {}
    lo, hi = QUANTILES.index(0.1), QUANTILES.index(0.9)
    for i, (name, q, r, t, thr, rate) in enumerate(zip(names, dist.quantiles, dist.risk, truth, limits, rates)):
        if active is not None:
            t = np.where(active[i][None, :, None], t, np.nan)
        seen = ~np.isnan(t)
        event = (np.nan_to_num(t) > thr[None, :, None]).astype(float)
        clim = np.broadcast_to(rate[None, :, None], t.shape)
        out[name] = {"coverage_p10_p90": coverage(q[..., lo], q[..., hi], t),
                     "quantiles_ordered": bool(np.all(np.diff(q, axis=-1) >= -1e-9)),
                     "brier": brier(r, event, seen), "brier_climatology": brier(clim, event, seen),
                     "event_rate": float(event[seen].mean()) if seen.any() else float("nan")}
    return out
