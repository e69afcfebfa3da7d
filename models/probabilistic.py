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

Both are then calibrated (:class:`Calibration`) with nothing but the past:

- the p10–p90 band of every level and horizon is stretched or narrowed around
  its p50 by the factor that made the same band hold 80 % of the truths of the
  most recent :data:`WINDOW` issue steps whose targets were all observed by the
  issue time (a rolling conformal correction: it follows a regime shift that the
  validation residuals did not see, and the discreteness of small counts);
- the risk is recalibrated per level, fitted on the validation steps: first
  the paths' share through an isotonic (monotone, free-form) map to the share
  of those steps that exceeded, then a logistic regression on that and the
  unit's climatology. The monotone map lets the two ends differ: the paths can
  be over-confident at middling shares (the noise of small counts) and right
  at the top (an announced crowd far above a capacity), which one logistic
  slope would average into a risk that never reaches an alert.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ciu.models.baselines import roll_up
from ciu.models.data import HierSeries
from ciu.models.metrics import brier, coverage

#: the quantiles every forecast carries
QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)
#: the share of truths the p10–p90 band is calibrated to hold
NOMINAL = 0.8
#: recent issue steps whose realised coverage sets the band's width
WINDOW = 168
#: fewest scored truths per level and horizon before a band is stretched (else it is left as drawn)
LEAST = 48


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


def band_factors(quantiles: list[np.ndarray], truth: list[np.ndarray], active: list[np.ndarray] | None = None, *,
                 nominal: float = NOMINAL, least: int = LEAST,
                 fallback: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """Per level ``(H,)``: the factor by which each band, stretched around its p50, held ``nominal`` of ``truth``.

    ``quantiles`` per level ``(B, N_l, H, C, Q)`` and ``truth`` ``(B, N_l, H, C)``
    of past issue steps (NaN truth is not scored; nor are units not ``active``).
    A truth's score is how far out it lies in units of its half-band, and the
    factor is the ``nominal`` quantile of the scores. With fewer than ``least``
    scored truths the factor is ``fallback``'s, else 1 (the band as drawn).
    """
    lo, mid, hi = QUANTILES.index(0.1), QUANTILES.index(0.5), QUANTILES.index(0.9)
    out = []
    for i, (q, t) in enumerate(zip(quantiles, truth)):
        if active is not None:
            t = np.where(active[i][None, :, None], t, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            below = (q[..., mid] - t) / (q[..., mid] - q[..., lo])
            above = (t - q[..., mid]) / (q[..., hi] - q[..., mid])
        score = np.fmax(np.nan_to_num(below, nan=0.0, posinf=np.inf, neginf=-np.inf),
                        np.nan_to_num(above, nan=0.0, posinf=np.inf, neginf=-np.inf))
        factors = np.ones(q.shape[2]) if fallback is None else np.array(fallback[i], dtype=float)
        for h in range(q.shape[2]):
            kept = score[:, :, h][~np.isnan(t[:, :, h])]
            if kept.size >= least:
                factors[h] = float(np.clip(np.quantile(kept, nominal, method="higher"), 0.1, 20.0))
        out.append(factors)
    return out


def widen(quantiles: list[np.ndarray], factors: list[np.ndarray], *, nonnegative: bool = True) -> list[np.ndarray]:
    """Every quantile moved away from (or towards) the p50 by its level's factor per horizon; order is kept."""
    mid = QUANTILES.index(0.5)
    out = []
    for q, f in zip(quantiles, factors):
        m = q[..., mid:mid + 1]
        w = m + f[None, None, :, None, None] * (q - m)
        out.append(np.clip(w, 0.0, None) if nonnegative else w)
    return out


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-3, 1 - 1e-3)
    return np.log(p / (1 - p))


@dataclass
class Calibration:
    """What corrects the paths' quantiles and risk (see the module's notes); fitted on the validation steps."""

    coef: list[np.ndarray]  # per level (3,): intercept, weight of the mapped risk, weight of climatology (logits)
    rates: list[np.ndarray]  # per level (N_l, C): climatology
    active: list[np.ndarray]  # per level (N_l, C): units scored
    factors: list[np.ndarray]  # per level (H,): the band factors of the validation steps (used without history)
    nonnegative: bool = True
    #: per level (2, K): the isotonic map of the paths' risk (its knots and values), the identity where too few exceeded
    curves: list[np.ndarray] | None = None

    @classmethod
    def fit(cls, dist: Distribution, truth: list[np.ndarray], limits: list[np.ndarray], rates: list[np.ndarray],
            active: list[np.ndarray], *, nonnegative: bool = True) -> Calibration:
        coef, curves = [], []
        for i, (r, t, thr, rate) in enumerate(zip(dist.risk, truth, limits, rates)):
            keep = ~np.isnan(t) & active[i][None, :, None]
            event = (np.nan_to_num(t) > thr[None, :, None])[keep].astype(float)
            enough = min(event.sum(), event.size - event.sum()) >= 5
            curve = monotone_map(r[keep], event) if enough else IDENTITY
            x = np.stack([np.ones(event.size), _logit(np.interp(r[keep], *curve)),
                          _logit(np.broadcast_to(rate[None, :, None], t.shape)[keep])], axis=1)
            coef.append(_logistic(x, event) if enough else np.array([0.0, 1.0, 0.0]))
            curves.append(curve)
        return cls(coef, rates, active, band_factors(dist.quantiles, truth, active), nonnegative, curves)

    def risk(self, risk: list[np.ndarray]) -> list[np.ndarray]:
        """The paths' risk per level, recalibrated."""
        out = []
        for i, (r, c, rate) in enumerate(zip(risk, self.coef, self.rates)):
            curve = IDENTITY if self.curves is None else self.curves[i]
            z = c[0] + c[1] * _logit(np.interp(r, *curve)) + c[2] * _logit(rate)[None, :, None]
            out.append(1.0 / (1.0 + np.exp(-z)))
        return out

    def apply(self, dist: Distribution, factors: list[np.ndarray] | None = None) -> Distribution:
        """Bands stretched by ``factors`` (default: the validation's) and risk recalibrated."""
        return Distribution(widen(dist.quantiles, self.factors if factors is None else factors,
                                  nonnegative=self.nonnegative), self.risk(dist.risk))

    def to_state(self) -> dict[str, Any]:
        return {"coef": self.coef, "rates": self.rates, "active": self.active, "factors": self.factors,
                "nonnegative": self.nonnegative, "curves": self.curves}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Calibration:
        curves = state.get("curves")  # none in runs stored before the isotonic map: the logistic alone
        return cls(*[[np.asarray(a) for a in state[k]] for k in ("coef", "rates", "active", "factors")],
                   bool(state["nonnegative"]), None if curves is None else [np.asarray(c) for c in curves])


#: the map that leaves the paths' risk as it is
IDENTITY = np.array([[0.0, 1.0], [0.0, 1.0]])


def monotone_map(risk: np.ndarray, event: np.ndarray) -> np.ndarray:
    """``(2, K)``: the non-decreasing map from the paths' risk to the share of ``event`` (isotonic regression).

    The paths' risk takes few distinct values (a share of a few hundred paths),
    so the regression runs over those values weighted by their counts.
    """
    from scipy.optimize import isotonic_regression

    values, inverse = np.unique(np.round(risk, 6), return_inverse=True)
    weight = np.bincount(inverse).astype(float)
    share = np.bincount(inverse, weights=event) / weight
    return np.stack([values, isotonic_regression(share, weights=weight).x])


def _logistic(x: np.ndarray, y: np.ndarray, *, ridge: float = 1e-3, steps: int = 50) -> np.ndarray:
    """Logistic regression by Newton's method (a small ridge keeps separable data finite)."""
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) + ridge * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + ridge * np.eye(x.shape[1])
        delta = np.linalg.solve(hess, grad)
        w -= delta
        if np.max(np.abs(delta)) < 1e-8:
            break
    return w


def rolling(ts: np.ndarray, point: np.ndarray, truth: list[np.ndarray], first: int, bank: ResidualBank,
            series: HierSeries, limits: list[np.ndarray], calibration: Calibration, *, horizons: int,
            window: int = WINDOW, every: int = 24, samples: int = 200, seed: int = 0) -> Distribution:
    """Calibrated distributions of the issue steps ``ts[first:]``, bands read from the issues before each.

    ``ts`` are sorted issue steps with their bottom point forecasts ``point``
    and truths per level (``(B, N_l, H, C)``); those before ``first`` are history
    only. Each block of ``every`` issue steps gets the band factors of the last
    ``window`` issue steps whose targets all lie at or before the block's first
    issue step (the validation's factors when there are too few).
    """
    raw = distribution(point, bank, series, limits, samples=samples, seed=seed)
    quantiles, risk = [], []
    for i in range(first, len(ts), every):
        done = int(np.searchsorted(ts, ts[i] - horizons, side="right"))
        past = slice(max(0, done - window), done)
        factors = band_factors([q[past] for q in raw.quantiles], [t[past] for t in truth], calibration.active,
                               fallback=calibration.factors)
        block = slice(i, min(i + every, len(ts)))
        quantiles.append(widen([q[block] for q in raw.quantiles], factors, nonnegative=calibration.nonnegative))
        risk.append([r[block] for r in raw.risk])
    return Distribution([np.concatenate([b[j] for b in quantiles]) for j in range(len(raw.quantiles))],
                        calibration.risk([np.concatenate([b[j] for b in risk]) for j in range(len(raw.risk))]))
