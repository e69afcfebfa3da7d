"""Every forecaster of the harness, behind one interface, on the same inputs and split.

A forecaster has a ``name``, ``fit(inputs, split) -> info`` (training steps
only; validation for early stopping and hyper-parameters; never the test
steps), ``predict(inputs, ts) -> (B, N0, H, C)`` bottom-level forecasts on the
original scale for issue steps ``ts`` (the forecast contract: horizon ``h`` is
step ``t + h``), and ``state()`` for its checkpoint. Upper levels are the sums
of the bottom forecasts (:func:`roll_up`), so every forecaster is coherent.

- :class:`Persistence`: the last observed value, for every horizon;
- :class:`SeasonalNaive`: the same local wall-clock time one week earlier;
- :class:`HistoricalAverage`: the training mean of the same local weekday and time of day;
- :class:`Ridge`: ridge regression on the input window, seasonal lags, the
  target step's calendar (one-hot), weather, holiday and covariates; one per
  unit (``per_unit``) or one for all units on standardised values (pooled);
- :class:`~ciu.models.boosting.GradientBoosting` (its own module): LightGBM on
  the same features, one model for all units;
- :class:`Neural`: the tower, or the per-unit LSTM (the tower's encoder and head on
  the bottom level alone, no hierarchy, no neighbours, no unit embeddings); one
  that loses to its ridge on validation learns the ridge's correction instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch

from ciu.errors import ValidationError
from ciu.models.data import HierSeries, Scaler, Split, fit_stop
from ciu.models.inputs import Inputs
from ciu.models.tower import Tower
from ciu.models.train import FitResult, TrainConfig, base_loss, fit, predict, thin


class Forecaster(Protocol):
    """What the harness trains, compares and publishes."""

    name: str
    learned: bool

    def fit(self, inputs: Inputs, split: Split) -> dict[str, Any]: ...

    def predict(self, inputs: Inputs, ts: np.ndarray) -> np.ndarray: ...

    def state(self) -> dict[str, Any]: ...


def roll_up(bottom: np.ndarray, series: HierSeries, *, axis: int = 1) -> list[np.ndarray]:
    """Bottom forecasts (units on ``axis``) summed to every level, bottom first (:meth:`HierSeries.sum_up`)."""
    return series.sum_up(bottom, axis=axis)


def _unscale(inputs: Inputs, z: np.ndarray) -> np.ndarray:
    """Bottom standardised values ``(B, N0, H, C)`` to the original scale, never below zero for counts."""
    y = inputs.unscale(0, z)
    return np.clip(y, 0.0, None) if _nonnegative(inputs) else y


def scaler_for(inputs: Inputs, split: Split, transform: str) -> Scaler | None:
    """A scaler of ``transform`` fitted on the training steps (shared by the models that ask for it), or ``None``
    when the inputs' own is that one."""
    if transform == inputs.scaler.transform:
        return None
    return inputs.fitted_scaler(transform, fit_stop(split, inputs.horizons))


def view_of(inputs: Inputs, scaler: Scaler | None) -> Inputs:
    """The inputs standardised by a model's own ``scaler`` (the inputs themselves without one)."""
    return inputs if scaler is None or scaler.transform == inputs.scaler.transform else inputs.view(scaler)


def _nonnegative(inputs: Inputs) -> bool:
    v = inputs.series.values
    return not np.isfinite(v).any() or bool(np.nanmin(v) >= 0)


def _timed(fn):
    def wrapper(self, inputs: Inputs, split: Split) -> dict[str, Any]:
        t0, c0 = time.perf_counter(), time.process_time()
        info = fn(self, inputs, split) or {}
        return {**info, "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}
    return wrapper


# -- naive ---------------------------------------------------------------------------------
@dataclass
class Persistence:
    """The last observed value of each unit, for every horizon."""

    name: str = "persistence"
    learned: bool = False

    @_timed
    def fit(self, inputs: Inputs, split: Split) -> dict[str, Any]:
        return {}

    def predict(self, inputs: Inputs, ts: np.ndarray) -> np.ndarray:
        z = inputs.z[0][np.asarray(ts)]  # (B, N, C), gaps hold the last observed value
        return _unscale(inputs, np.repeat(z[:, :, None], inputs.horizons, axis=2))

    def state(self) -> dict[str, Any]:
        return {"kind": "persistence"}


@dataclass
class SeasonalNaive:
    """The value at the same local wall-clock time one week before each target step."""

    name: str = "seasonal_naive"
    learned: bool = False
    days: int = 7

    @_timed
    def fit(self, inputs: Inputs, split: Split) -> dict[str, Any]:
        return {}

    def predict(self, inputs: Inputs, ts: np.ndarray) -> np.ndarray:
        lag = inputs.series.seasonal_days(inputs.horizons).index(
            max(self.days, inputs.series.seasonal_days(inputs.horizons)[0]))
        tgt = np.asarray(ts)[:, None] + np.arange(1, inputs.horizons + 1)[None]
        z = inputs.z[0][inputs.season[lag][tgt]]  # (B, H, N, C)
        return _unscale(inputs, z.transpose(0, 2, 1, 3))

    def state(self) -> dict[str, Any]:
        return {"kind": "seasonal_naive", "days": self.days}


@dataclass
class HistoricalAverage:
    """The mean of the training steps with the same local weekday and time of day, per unit."""

    name: str = "historical_average"
    learned: bool = False
    table: np.ndarray | None = None  # (7 * slots, N0, C)

    def _key(self, series: HierSeries) -> np.ndarray:
        local = series.local_times()
        slot, _ = series.calendar()
        return local.day_of_week.to_numpy() * series.steps_per_day + slot

    @_timed
    def fit(self, inputs: Inputs, split: Split) -> dict[str, Any]:
        s = inputs.series
        stop = int(split.train.max()) + inputs.horizons + 1
        v = s.level_values()[0][:stop]
        ok = s.mask[:stop]  # type: ignore[index]
        key = self._key(s)[:stop]
        n_keys = 7 * s.steps_per_day
        sums = np.zeros((n_keys,) + v.shape[1:])
        counts = np.zeros((n_keys,) + v.shape[1:])
        seen = ~np.isnan(v) & ok[:, None, None]
        np.add.at(sums, key, np.where(seen, v, 0.0))
        np.add.at(counts, key, seen)
        overall = sums.sum(0) / np.maximum(counts.sum(0), 1)
        self.table = np.where(counts > 0, sums / np.maximum(counts, 1), overall[None])
        return {}

    def predict(self, inputs: Inputs, ts: np.ndarray) -> np.ndarray:
        assert self.table is not None, "fit first"
        key = self._key(inputs.series)
        tgt = np.asarray(ts)[:, None] + np.arange(1, inputs.horizons + 1)[None]
        return self.table[key[tgt]].transpose(0, 2, 1, 3)

    def state(self) -> dict[str, Any]:
        return {"kind": "historical_average", "table": self.table}


# -- ridge ---------------------------------------------------------------------------------
#: ridge penalties tried; the one with the lowest validation loss is kept (per horizon)
RIDGE_PENALTIES = (0.1, 1.0, 10.0, 100.0, 1000.0)


def _chunk_size(n_units: int, n_features: int, *, budget: int = 4_000_000) -> int:
    """Issue steps per chunk so that a chunk's features hold about ``budget`` numbers."""
    return max(1, budget // max(1, n_units * n_features))


def _chunks(ts: np.ndarray, n_units: int, n_features: int) -> list[np.ndarray]:
    size = _chunk_size(n_units, n_features)
    return [ts[i:i + size] for i in range(0, len(ts), size)]


@dataclass
class Ridge:
    """Ridge regression of each horizon's standardised value on the same features as the other models.

    ``per_unit``: one regression per unit and channel; otherwise one for all
    units (pooled), each unit weighing in by its spread like in the tower's loss.
    For counts the values may be modelled as they are or on the ``log1p``
    scale: both are fitted and the one with the lower validation error is kept,
    like the penalty (chosen per horizon from :data:`RIDGE_PENALTIES`).
    """

    per_unit: bool = True
    name: str = "ridge_unit"
    learned: bool = True
    loss_power: float = 2.0
    transforms: tuple[str, ...] = ("identity", "log1p")
    coef: list[np.ndarray] = field(default_factory=list)  # per horizon: (N, C, F) or (C, F)
    penalty: list[float] = field(default_factory=list)
    scaler: Scaler | None = None

    def _design(self, inputs: Inputs, ts: np.ndarray, h: int) -> np.ndarray:
        x = inputs.table(ts, h)
        return np.concatenate([x, np.ones(x.shape[:2] + (1,), dtype=np.float32)], axis=2)

    def _weights(self, inputs: Inputs) -> np.ndarray:
        sd = inputs.scaler.sd[0]
        return (sd / sd.mean()) ** self.loss_power if inputs.scaler.transform == "identity" else np.ones_like(sd)

    def _gram(self, inputs: Inputs, ts: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
        n = inputs.z[0].shape[1]
        f = self._design(inputs, ts[:1], h).shape[2]
        w_unit = self._weights(inputs)
        c = inputs.channels
        if self.per_unit:
            g, r = np.zeros((n, c, f, f)), np.zeros((n, c, f))
        else:
            g, r = np.zeros((c, f, f)), np.zeros((c, f))
        for chunk in _chunks(ts, n, f):
            x = self._design(inputs, chunk, h)  # (B, N, F), float32 products summed in float64
            y, seen = inputs.table_target(chunk, h)  # (B, N, C)
            xt = x.transpose(1, 2, 0)  # (N, F, B): the Gram matrices are batched matrix products
            for k in range(c):
                w = seen[:, :, k]
                if self.per_unit:
                    xw = (x * w[:, :, None]).transpose(1, 0, 2)  # (N, B, F)
                    g[:, k] += xt @ xw
                    r[:, k] += (xw * y[:, :, k].T[:, :, None]).sum(axis=1)
                else:
                    xw = (x * (w * w_unit[None, :, k])[:, :, None]).reshape(-1, f)
                    g[k] += xw.T @ x.reshape(-1, f)
                    r[k] += xw.T @ y[:, :, k].reshape(-1)
        return g, r

    def _solve(self, g: np.ndarray, r: np.ndarray, penalty: float) -> np.ndarray:
        f = g.shape[-1]
        eye = np.eye(f)
        eye[-1, -1] = 0.0  # the intercept is not penalised
        return np.linalg.solve(g + penalty * eye + 1e-8 * np.eye(f), r[..., None])[..., 0]

    def _apply(self, coef: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``(B, N, C)`` standardised predictions from features ``(B, N, F)``."""
        if self.per_unit:  # (N, B, F) @ (N, F, C): one matrix product per unit
            return np.matmul(x.transpose(1, 0, 2), coef.transpose(0, 2, 1)).transpose(1, 0, 2)
        return x @ coef.T

    def _fit_view(self, view: Inputs, split: Split, val: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
        w_unit = self._weights(view)
        coefs, penalties = [], []
        for h in range(1, view.horizons + 1):
            g, r = self._gram(view, split.train, h)
            xv = self._design(view, val, h)
            yv, sv = view.table_target(val, h)
            best = None
            for lam in RIDGE_PENALTIES:
                coef = self._solve(g, r, lam)
                w = sv * w_unit[None]
                loss = float((w * (self._apply(coef, xv) - yv) ** 2).sum() / max(w.sum(), 1e-9))
                if best is None or loss < best[0]:
                    best = (loss, lam, coef)
            assert best is not None
            penalties.append(best[1])
            coefs.append(best[2].astype(np.float32))
        return coefs, penalties

    @_timed
    def fit(self, inputs: Inputs, split: Split) -> dict[str, Any]:
        val = thin(split.val, 512)
        truth = inputs.truth(val)[0]
        seen = ~np.isnan(truth)
        tried: dict[str, float] = {}
        best = None
        for transform in self.transforms if _nonnegative(inputs) else ("identity",):
            scaler = scaler_for(inputs, split, transform) or inputs.scaler
            view = inputs.view(scaler)
            self.coef, self.penalty, self.scaler = *self._fit_view(view, split, val), scaler
            err = float(np.mean((self.predict(inputs, val)[seen] - truth[seen]) ** 2))
            tried[transform] = err
            if best is None or err < best[0]:
                best = (err, transform, self.coef, self.penalty, scaler)
        assert best is not None
        _, transform, self.coef, self.penalty, self.scaler = best
        return {"penalty": self.penalty, "transform": transform, "validation_mse": tried}

    def predict(self, inputs: Inputs, ts: np.ndarray) -> np.ndarray:
        ts = np.asarray(ts)
        view = view_of(inputs, self.scaler)
        n = view.z[0].shape[1]
        out = np.zeros((len(ts), n, view.horizons, view.channels), dtype=np.float32)
        for h in range(1, view.horizons + 1):
            size = _chunk_size(n, self.coef[h - 1].shape[-1])
            for i in range(0, len(ts), size):
                out[i:i + size, :, h - 1] = self._apply(self.coef[h - 1], self._design(view, ts[i:i + size], h))
        return _unscale(view, out)

    def state(self) -> dict[str, Any]:
        return {"kind": "ridge", "per_unit": self.per_unit, "name": self.name, "loss_power": self.loss_power,
                "coef": self.coef, "penalty": self.penalty,
                "scaler": None if self.scaler is None else self.scaler.to_state()}


# -- announced events ----------------------------------------------------------------------
@dataclass
class Announced:
    """A forecaster of the city without its announced events, with the announced people counted back in.

    The announced attendance of planned events (the series' covariate, spread
    over the bottom units below the venue by :func:`ciu.forecast.event_shares`,
    the rule of a scenario's event) is not left to be learned from the few
    events of the training steps: ``model`` learns the series less it
    (:meth:`HierSeries.less_announced`) and every forecast adds it back at its
    target steps, so an event of N announced people adds N at its venue and at
    every unit above it, in stored forecasts and scenarios alike.
    """

    model: Any

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def learned(self) -> bool:
        return self.model.learned

    def fit(self, inputs: Inputs, split: Split) -> dict[str, Any]:
        return self.model.fit(inputs.less_announced(), split)

    def predict(self, inputs: Inputs, ts: np.ndarray, **kw: Any) -> np.ndarray | list[np.ndarray]:
        """The inner model's forecasts plus the announced people (``kw``: the inner model's options; with
        ``levels=True`` every level's, the announced people summed up like the forecasts)."""
        ts = np.asarray(ts)
        out = self.model.predict(inputs.less_announced(), ts, **kw)
        more = inputs.announced(ts).astype(np.float32)
        if isinstance(out, list):
            return [o + m for o, m in zip(out, roll_up(more, inputs.series))]
        return out + more

    def state(self) -> dict[str, Any]:
        return {"kind": "announced", "name": self.name, "model": self.model.state()}


def inner(model: Any) -> Any:
    """The forecaster itself, without the :class:`Announced` wrapper."""
    return model.model if isinstance(model, Announced) else model


# -- neural ------------------------------------------------------------------------------------
#: what a neural model may learn on top of: the better ridge on validation, or one of them. The per-unit LSTM
#: takes "ridge" as the per-unit ridge: on Manhattan taxi (2020) the pooled ridge won the validation race by
#: 0.1 %, and on top of it the LSTM's validation RMSE at h3 was 6.09/7.12 (dropoffs/pickups) against 6.07/6.95
#: on the per-unit ridge; a per-unit model corrects a per-unit model's forecasts best
BASES = ("ridge", "ridge_unit", "ridge_pooled")
#: a budgeted network whose validation loss is still this many times its ridge's halfway through its budget
#: stops training alone and spends the rest of its budget on top of the ridge
GIVE_UP = 2.0
#: the share of its budget that a network that lost to its ridge only at the end trains again on top of it
BASE_SHARE = 0.25


@dataclass
class Neural:
    """The tower (``bottom_only=False``) or the per-unit LSTM (``bottom_only=True``).

    With a ``config.base`` (a ridge: the harness gives it its best ridge on
    validation; without one it fits its own), validation decides what the
    network forecasts. It is first trained alone. If, halfway through its
    budget, its best validation loss is still :data:`GIVE_UP` times the ridge's
    or more, it stops and spends the other half learning the correction to the
    ridge instead; if it loses to the ridge only at the end, it learns the
    correction for what is left of its budget, and at least :data:`BASE_SHARE`
    of it more. A residual network
    starts from the ridge itself and keeps a round only where it beats the ridge
    on validation. A network alone is the better forecaster where it learns the
    city's rhythm (TaxiNYC, Manhattan bikes); the ridge on the log scale is where
    the levels shift far from the training years (Manhattan taxis in 2020), see
    ``docs/model.md``.
    """

    config: TrainConfig
    bottom_only: bool = False
    name: str = "tower"
    learned: bool = True
    model: Tower | None = None
    result: FitResult | None = None
    base: Ridge | None = None

    @classmethod
    def tower(cls, config: TrainConfig, *, name: str = "tower") -> Neural:
        return cls(config, False, name)

    @classmethod
    def unit_lstm(cls, config: TrainConfig, *, name: str = "unit_lstm") -> Neural:
        """The per-unit LSTM; where it falls back on a ridge, the per-unit one (the better-of-two choice is kept
        for the tower, which pools the units; see :data:`BASES`)."""
        base = "ridge_unit" if config.base == "ridge" else config.base
        return cls(replace(config, neighbours=False, top_down=False, use_unit_embedding=False, base=base), True, name)

    @_timed
    def fit(self, inputs: Inputs, split: Split) -> dict[str, Any]:
        cfg, levels = self.config, 1 if self.bottom_only else None
        if cfg.base is not None and cfg.base not in BASES:
            raise ValidationError(f"unknown base {cfg.base!r}; known: {list(BASES)} or none", field="base")
        info: dict[str, Any] = {"base": None}
        base = base_val = None
        if cfg.base is not None:
            if self.base is None:
                per_unit = cfg.base != "ridge_pooled"
                self.base = Ridge(per_unit=per_unit, name="ridge_unit" if per_unit else "ridge_pooled",
                                  loss_power=cfg.loss_power)
                info["base_fit"] = self.base.fit(inputs, split)
            base = lambda ts: self._base_z(inputs, ts)  # noqa: E731
            base_val = info["base_val_loss"] = base_loss(inputs, split, cfg, base, levels=levels)
        alone = fit(inputs, split, cfg, name=self.name, levels=levels,
                    give_up=None if base_val is None else GIVE_UP * base_val)
        self.result = alone
        if base is not None and base_val is not None and alone.best_val >= base_val:
            budget = cfg.budget_minutes
            if budget is not None:  # what is left of the budget (half when it gave up), at least a share more
                budget = max(budget - alone.seconds / 60, BASE_SHARE * budget)
            self.result = fit(inputs, split, replace(cfg, budget_minutes=budget),
                              name=f"{self.name} on {self.base.name}", levels=levels, base=base)
            info.update(base=self.base.name, alone=alone.info())
        self.model = self.result.model
        if info["base"] is None:
            self.base = None  # not part of this forecaster
        return {**self.result.info(), **info}

    def _base_z(self, inputs: Inputs, ts: np.ndarray) -> np.ndarray:
        """The base's forecasts of issue steps ``ts``, standardised like the network's bottom level."""
        assert self.base is not None
        mean, sd = inputs.scaler.mean[0][None, :, None], inputs.scaler.sd[0][None, :, None]
        return ((self.base.predict(inputs, ts) - mean) / sd).astype(np.float32)

    def predict(self, inputs: Inputs, ts: np.ndarray, *, bottom_mask: np.ndarray | None = None,
                levels: bool = False) -> np.ndarray:
        """Bottom forecasts ``(B, N0, H, C)``; with ``levels`` the network's own forecast of every level."""
        assert self.model is not None, "fit first"
        ts = np.asarray(ts)
        device = next(self.model.parameters()).device
        mask = None if bottom_mask is None else torch.as_tensor(bottom_mask, dtype=torch.float32, device=device)
        base = None
        if self.model.config.residual:
            base = torch.as_tensor(self._base_z(inputs, ts), device=device)
        return predict(self.model, inputs.tensors(device), ts, bottom_mask=mask, base=base,  # type: ignore[return-value]
                       levels=levels)

    def state(self) -> dict[str, Any]:
        assert self.model is not None, "fit first"
        return {"kind": "neural", "name": self.name, "bottom_only": self.bottom_only,
                "train": self.config.to_dict(), "tower": self.model.config.to_dict(),
                "state_dict": {k: v.cpu() for k, v in self.model.state_dict().items()},
                "base": None if self.base is None else self.base.state()}
