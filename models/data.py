"""Hierarchical time series for forecasting: levels, the city's clock, windows, scaling.

A :class:`HierSeries` holds one target variable (one or more channels) at
every level of a unit hierarchy, bottom to top, with each level's parent
index into the level above. Upper-level truth is the sum of the bottom level
(the roll-up rule of counts), so the truth is coherent by construction.

**The forecast contract.** Every forecaster here follows one rule: a forecast
issued at step ``t`` may use the observations of steps ``.. t`` and its
horizon ``h`` is the step ``t + h`` (``h = 1 .. H``). In time:
``issued_at`` is the last step whose observations may be used and horizon
``h`` is ``issued_at + h · step`` (:func:`ciu.clock.forecast_times`).

**Any regular step.** A series has one fixed ``step`` (15 minutes, an hour,
four hours); horizons, input windows and seasonal lags count its steps. A
day holds :attr:`HierSeries.steps_per_day` steps; seasonal lags are whole
days in the city's local time, so a weekly lag is the same wall-clock time a
week earlier also across a daylight-saving change.

**Missing values** are NaN per unit and step. They are masked in losses and
metrics (a step is dropped only for the units that miss it) and imputed in
inputs, with an "observed" flag beside every input value.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from ciu.errors import ValidationError

#: seasonal lags in days (in the city's local time) whose values at each target step are model inputs
SEASONAL_DAYS: tuple[int, ...] = (1, 2, 7)
#: day classes of the calendar: Monday .. Sunday are 0 .. 6, public holidays 7
HOLIDAY_CLASS = 7


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


def infer_step(times: pd.DatetimeIndex, *, what: str = "series") -> pd.Timedelta:
    """The one fixed step of sorted, unique ``times``; a clear error when they are irregular.

    The step is the smallest gap; every gap must be a whole number of steps
    (gaps are missing values, not a second frequency).

    >>> infer_step(pd.date_range("2026-01-01", periods=4, freq="15min"))
    Timedelta('0 days 00:15:00')
    """
    if len(times) < 2:
        raise ValidationError(f"the {what} has fewer than two time steps: no step can be told", field="time")
    gaps = np.diff(_ns(times))
    if (gaps <= 0).any():
        raise ValidationError(f"the {what}'s times are not sorted and unique", field="time")
    step = int(gaps.min())
    bad = np.flatnonzero(gaps % step != 0)
    if len(bad):
        i = int(bad[0])
        raise ValidationError(
            f"the {what} is irregular: its smallest step is {pd.Timedelta(step)}, but {times[i]} is followed by "
            f"{times[i + 1]} ({pd.Timedelta(int(gaps[i]))} later, not a whole number of steps); resample it to one "
            f"fixed step first", field="time")
    day = pd.Timedelta(days=1).value
    if step < day and day % step != 0:
        raise ValidationError(f"the {what}'s step {pd.Timedelta(step)} does not divide a day", field="time")
    return pd.Timedelta(step)


def _ns(times: pd.DatetimeIndex) -> np.ndarray:
    """Times as integer nanoseconds, whatever the resolution of the index."""
    return times.to_numpy(dtype="datetime64[ns]").astype(np.int64)


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
        Regular time index with one fixed ``step`` (naive; UTC when ``timezone``
        is given, the city's wall-clock time otherwise).
    channels
        Channel names (``["people"]``, ``["departures", "arrivals"]``).
    external
        Known external features per step ``(T, E)`` (holiday, weather).
    external_names
        Names of the external feature columns (``"holiday"`` marks public holidays).
    covariates
        Known-future per-unit covariates at the bottom level ``(T, N0, K)``
        (announced event attendance), summed up the hierarchy like the target.
    mask
        ``(T,)`` booleans: steps usable at all (False for gaps and zero-filled
        duplicates of a whole data set).
    step
        The fixed step of ``times`` (inferred when ``None``).
    timezone
        The city's time zone; ``None`` when ``times`` already are local wall-clock times.
    capacity
        Bottom-level capacity ``(N0,)`` where known (NaN or 0 where not): risk thresholds.
    """

    levels: list[Level]
    values: np.ndarray
    times: pd.DatetimeIndex
    channels: list[str]
    external: np.ndarray
    external_names: list[str]
    covariates: np.ndarray | None = None
    mask: np.ndarray | None = None
    step: pd.Timedelta | None = None
    timezone: str | None = None
    capacity: np.ndarray | None = None

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
        self.times = pd.DatetimeIndex(self.times)
        if self.step is None:
            self.step = infer_step(self.times)
        elif t > 1 and (np.diff(_ns(self.times)) != self.step.value).any():
            raise ValidationError(f"times are not on one regular step of {self.step}", field="time")

    @property
    def level_names(self) -> list[str]:
        return [lv.name for lv in self.levels]

    @property
    def steps_per_day(self) -> int:
        """Steps in a day (1 for steps of a day or longer)."""
        return max(1, int(pd.Timedelta(days=1) // self.step))

    @property
    def steps_per_week(self) -> int:
        return 7 * self.steps_per_day

    def membership(self) -> list[np.ndarray]:
        """For each level, the index of every bottom unit's ancestor at that level."""
        idx = np.arange(self.levels[0].n)
        out = [idx]
        for lv in self.levels[:-1]:
            idx = lv.parent[idx]  # type: ignore[index]
            out.append(idx)
        return out

    def level_values(self, values: np.ndarray | None = None) -> list[np.ndarray]:
        """Bottom values ``(T, N_0, C)`` summed to every level (:meth:`sum_up`): a list of ``(T, N_l, C)`` arrays."""
        return self.sum_up(self.values if values is None else values, axis=1)

    def sum_up(self, bottom: np.ndarray, *, axis: int = 1) -> list[np.ndarray]:
        """Bottom values (units on ``axis``) summed to every level, bottom first: the models' one roll-up.

        Every forecast and every observed series of the models is coherent by
        this sum. A parent is NaN wherever one of its bottom units is (its sum is
        unknown there).
        """
        from scipy import sparse

        v = np.moveaxis(np.asarray(bottom, dtype=np.float64), axis, 0)
        n0, rest = v.shape[0], v.shape[1:]
        flat = v.reshape(n0, -1)  # units first: one sparse product per level
        filled, missing = np.nan_to_num(flat, nan=0.0), np.isnan(flat).astype(np.float64)
        out = [np.asarray(bottom, dtype=np.float64)]
        for lv, member in zip(self.levels[1:], self.membership()[1:]):
            agg = sparse.csr_matrix((np.ones(n0), (member, np.arange(n0))), shape=(lv.n, n0))
            total = np.asarray(agg @ filled)
            total[np.asarray(agg @ missing) > 0] = np.nan
            out.append(np.moveaxis(total.reshape((lv.n,) + rest), 0, axis))
        return out

    def local_times(self) -> pd.DatetimeIndex:
        """The times as the city's wall-clock (naive) times."""
        if self.timezone is None:
            return self.times
        return self.times.tz_localize("UTC").tz_convert(self.timezone).tz_localize(None)

    @cached_property
    def holiday(self) -> np.ndarray:
        """``(T,)`` booleans: public holidays (from the ``holiday`` external column; none without it)."""
        if "holiday" in self.external_names:
            return self.external[:, self.external_names.index("holiday")] > 0.5
        return np.zeros(len(self.times), dtype=bool)

    def calendar(self) -> tuple[np.ndarray, np.ndarray]:
        """Per step: the slot of the local day (``0 .. steps_per_day - 1``) and the day class
        (Monday 0 .. Sunday 6, public holiday :data:`HOLIDAY_CLASS`)."""
        local = self.local_times()
        minutes = local.hour.to_numpy() * 60 + local.minute.to_numpy()
        per_slot = max(1, int(self.step / pd.Timedelta(minutes=1)))
        slot = np.minimum(minutes // per_slot, self.steps_per_day - 1).astype(np.int64)
        day = np.where(self.holiday, HOLIDAY_CLASS, local.day_of_week.to_numpy()).astype(np.int64)
        return slot, day

    def season_index(self, days: int) -> np.ndarray:
        """``(T,)`` index of the step at the same local wall-clock time ``days`` days earlier (-1 before the start).

        Across a daylight-saving change this is not ``days * steps_per_day`` steps back; where the
        earlier wall-clock time does not exist (the skipped hour) the step that many steps back is used.
        """
        idx = np.arange(len(self.times)) - days * self.steps_per_day
        if self.timezone is not None:
            local = pd.Series(np.arange(len(self.times)), index=self.local_times())
            local = local[~local.index.duplicated(keep="last")]
            found = local.reindex(self.local_times() - pd.Timedelta(days=days)).to_numpy()
            idx = np.where(np.isnan(found), idx, np.nan_to_num(found, nan=-1)).astype(np.int64)
        return np.where(idx >= 0, idx, -1)

    def seasonal_days(self, horizons: int) -> tuple[int, ...]:
        """The seasonal lags in days for ``horizons``: every lag reaches back past the issue step."""
        least = int(np.ceil(horizons / self.steps_per_day))
        return tuple(sorted({max(d, least) for d in SEASONAL_DAYS}))

    def announced(self) -> np.ndarray:
        """The announced people ``(T, N0, C)`` at the bottom level: the first covariate (announced event
        attendance) on the first channel, zero elsewhere and without covariates."""
        out = np.zeros(self.values.shape)
        if self.covariates is not None:
            out[..., 0] = np.nan_to_num(self.covariates[..., 0])
        return out

    def less_announced(self) -> HierSeries:
        """The city without its announced events: the bottom values less :meth:`announced` (never below zero,
        gaps kept), no covariates. The forecasters learn this series; the announced people are counted back in by
        the one event rule (:class:`ciu.models.baselines.Announced`)."""
        values = np.where(np.isnan(self.values), np.nan, np.maximum(self.values - self.announced(), 0.0))
        return replace(self, values=values, covariates=None)

    def subset(self, start: int, stop: int) -> HierSeries:
        """The steps ``start .. stop-1`` (levels shared)."""
        return HierSeries(self.levels, self.values[start:stop], self.times[start:stop], self.channels,
                          self.external[start:stop], self.external_names,
                          None if self.covariates is None else self.covariates[start:stop],
                          None if self.mask is None else self.mask[start:stop], self.step, self.timezone,
                          self.capacity)


def calendar_features(times: pd.DatetimeIndex, holidays: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
    """The holiday flag as an external feature column ``(T, 1)`` (the calendar itself comes from the times)."""
    hol = np.zeros(len(times)) if holidays is None else np.asarray(holidays, dtype=float)
    return hol[:, None].astype(np.float32), ["holiday"]


# -- windows ---------------------------------------------------------------------------------
@dataclass
class Split:
    """Chronological split of issue steps into train / validation / test."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def window_index(ts: np.ndarray, history: int) -> np.ndarray:
    """``(B, L)``: the input steps ``t - L + 1 .. t`` of issue steps ``ts``."""
    return np.asarray(ts)[:, None] + np.arange(-history + 1, 1)[None]


def target_index(ts: np.ndarray, horizons: int) -> np.ndarray:
    """``(B, H)``: the target steps ``t + 1 .. t + H`` of issue steps ``ts`` (the forecast contract)."""
    return np.asarray(ts)[:, None] + np.arange(1, horizons + 1)[None]


def warmup(series: HierSeries, *, history: int, horizons: int) -> int:
    """The first issue step with a full input window and every seasonal lag inside the series."""
    longest = max(series.seasonal_days(horizons)) * series.steps_per_day
    return max(history - 1, longest - 1)


def issue_steps(series: HierSeries, *, history: int, horizons: int, start: int = 0,
                stop: int | None = None) -> np.ndarray:
    """Issue steps whose targets all lie in ``[start, stop)`` and are usable.

    A sample needs a full input window and its seasonal lags (:func:`warmup`),
    its target steps must not be masked for the whole data set, and at least
    one bottom unit must be observed at one of them. Missing units are masked
    per unit later, not here.
    """
    t_total = len(series.times)
    stop = t_total if stop is None else min(stop, t_total)
    first = max(start - 1, warmup(series, history=history, horizons=horizons))
    ts = np.arange(first, stop - horizons)
    if len(ts) == 0:
        return ts
    usable = series.mask.astype(bool)  # type: ignore[union-attr]
    seen_any = (~np.isnan(series.values)).any(axis=(1, 2)) & usable
    tgt = target_index(ts, horizons)
    good = usable[tgt].all(axis=1) & seen_any[tgt].any(axis=1)
    return ts[good]


def chronological_split(series: HierSeries, *, history: int, horizons: int,
                        fractions: tuple[float, float] = (0.7, 0.15), test_start: int | None = None,
                        val_steps: int | None = None) -> Split:
    """Split by time: train, then validation, then test; no target crosses a boundary.

    Either ``fractions`` of the steps (train, validation; the rest is test) or
    an explicit ``test_start`` step index with ``val_steps`` before it. Issue
    steps are assigned by their targets: a validation sample's targets all lie
    in the validation period (its inputs may reach back into training).
    """
    t_total = len(series.times)
    if test_start is None:
        a = int(round(t_total * fractions[0]))
        b = int(round(t_total * (fractions[0] + fractions[1])))
    else:
        b = test_start
        a = b - (val_steps if val_steps is not None else int(0.1 * b))
    kw = {"history": history, "horizons": horizons}
    return Split(issue_steps(series, stop=a, **kw), issue_steps(series, start=a, stop=b, **kw),
                 issue_steps(series, start=b, **kw))


def fit_stop(split: Split, horizons: int) -> int:
    """The first step after every training target: statistics are fitted on the steps before it."""
    if len(split.train) == 0:
        raise ValidationError("the split leaves no training samples", field="split")
    return int(split.train.max()) + horizons + 1


# -- scaling -----------------------------------------------------------------------------------
#: value transforms before standardisation: counts may be modelled on the log scale
TRANSFORMS = ("identity", "log1p")


def transform_values(values: np.ndarray, transform: str) -> np.ndarray:
    if transform == "identity":
        return values
    if transform == "log1p":
        return np.log1p(np.clip(values, 0.0, None))
    raise ValidationError(f"unknown transform {transform!r}; use one of {TRANSFORMS}", field="transform")


def inverse_values(values: np.ndarray, transform: str) -> np.ndarray:
    if transform == "identity":
        return values
    if transform == "log1p":
        return np.expm1(np.clip(values, None, 50.0))
    raise ValidationError(f"unknown transform {transform!r}; use one of {TRANSFORMS}", field="transform")


@dataclass
class Scaler:
    """Per-unit, per-channel standardisation at every level (fitted on training steps only).

    ``z = (f(y) - mean) / sd`` with ``f`` the ``transform`` (identity or
    ``log1p``); a unit that never varied gets ``sd = 1``.
    """

    mean: list[np.ndarray]  # per level (N_l, C)
    sd: list[np.ndarray]  # per level (N_l, C)
    transform: str = "identity"

    @classmethod
    def fit(cls, series: HierSeries, *, stop: int, transform: str = "identity") -> Scaler:
        means, sds = [], []
        usable = series.mask[:stop].astype(bool)  # type: ignore[index]
        for lv in series.level_values(series.values[:stop]):
            kept = transform_values(lv[usable], transform)
            if len(kept) == 0 or np.isnan(kept).all():
                raise ValidationError("no observed training steps to fit the scaler on", field="values")
            with np.errstate(invalid="ignore"), _quiet():
                m = np.nanmean(kept, axis=0)
                s = np.nanstd(kept, axis=0)
            m = np.nan_to_num(m, nan=0.0)
            s = np.where(np.isfinite(s) & (s > 1e-6), s, 1.0)
            means.append(m.astype(np.float64))
            sds.append(s.astype(np.float64))
        return cls(means, sds, transform)

    def scale(self, level: int, values: np.ndarray) -> np.ndarray:
        """Original values ``(..., N_l, C)`` to standardised ones."""
        return (transform_values(values, self.transform) - self.mean[level]) / self.sd[level]

    def unscale(self, level: int, z: np.ndarray) -> np.ndarray:
        """Standardised values ``(..., N_l, C)`` back to the original scale."""
        return inverse_values(z * self.sd[level] + self.mean[level], self.transform)

    def to_state(self) -> dict[str, Any]:
        return {"mean": self.mean, "sd": self.sd, "transform": self.transform}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Scaler:
        return cls([np.asarray(m) for m in state["mean"]], [np.asarray(s) for s in state["sd"]],
                   str(state.get("transform", "identity")))


class _quiet:
    """Silence numpy's "mean of empty slice" warnings for all-NaN units (they get NaN, then a default)."""

    def __enter__(self) -> None:
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("ignore", category=RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(*exc)


@dataclass
class ExternalScaler:
    """Standardisation of the external features (fitted on training steps; binary flags kept as they are)."""

    mean: np.ndarray
    sd: np.ndarray

    @classmethod
    def fit(cls, external: np.ndarray, *, stop: int) -> ExternalScaler:
        x = external[:stop]
        with _quiet():
            mean = np.nan_to_num(np.nanmean(x, axis=0)) if len(x) else np.zeros(external.shape[1])
            sd = np.nan_to_num(np.nanstd(x, axis=0)) if len(x) else np.ones(external.shape[1])
        binary = np.all(np.isin(np.nan_to_num(x), (0.0, 1.0)), axis=0) if len(x) else np.ones(external.shape[1], bool)
        mean = np.where(binary, 0.0, mean)
        sd = np.where(binary | (sd <= 1e-9), 1.0, sd)
        return cls(mean, sd)

    def __call__(self, external: np.ndarray) -> np.ndarray:
        return np.nan_to_num((external - self.mean) / self.sd).astype(np.float32)

    def to_state(self) -> dict[str, Any]:
        return {"mean": self.mean, "sd": self.sd}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ExternalScaler:
        return cls(np.asarray(state["mean"]), np.asarray(state["sd"]))


def forward_filled(values: np.ndarray) -> np.ndarray:
    """``values`` with each unit's gaps filled by its last observed value (0 before the first)."""
    t, n, c = values.shape
    flat = values.reshape(t, n * c)
    idx = np.where(~np.isnan(flat), np.arange(t)[:, None], 0)
    np.maximum.accumulate(idx, axis=0, out=idx)
    out = flat[idx, np.arange(n * c)[None]]
    return np.nan_to_num(out, nan=0.0).reshape(t, n, c)
