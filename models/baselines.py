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
- :class:`GradientBoosting`: LightGBM on the same features, one model for all units;
- :class:`Neural`: the tower, or the per-unit LSTM (the tower's encoder and head on
  the bottom level alone, no hierarchy, no neighbours, no unit embeddings).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch

from ciu.models.data import HierSeries, Scaler, Split
from ciu.models.inputs import Inputs
from ciu.models.tower import Tower, TowerConfig
from ciu.models.train import FitResult, TrainConfig, fit, pick_device, predict, progress_bar, thin


class Forecaster(Protocol):
    """What the harness trains, compares and publishes."""

    name: str
    learned: bool

    def fit(self, inputs: Inputs, split: Split) -> dict[str, Any]: ...

    def predict(self, inputs: Inputs, ts: np.ndarray) -> np.ndarray: ...

    def state(self) -> dict[str, Any]: ...


def roll_up(bottom: np.ndarray, series: HierSeries, *, axis: int = 1) -> list[np.ndarray]:
    """Bottom values (units on ``axis``) summed to every level: one array per level, bottom first."""
    from scipy import sparse

    out = [bottom]
    for lv, up in zip(series.levels[:-1], series.levels[1:]):
        moved = np.moveaxis(out[-1], axis, 0)
        member = sparse.csr_matrix((np.ones(lv.n), (lv.parent, np.arange(lv.n))), shape=(up.n, lv.n))
        agg = np.asarray(member @ moved.reshape(lv.n, -1), dtype=np.float64).reshape((up.n,) + moved.shape[1:])
        out.append(np.moveaxis(agg, 0, axis))
    return out


def _unscale(inputs: Inputs, z: np.ndarray) -> np.ndarray:
    """Bottom standardised values ``(B, N0, H, C)`` to the original scale, never below zero for counts."""
    y = inputs.unscale(0, z)
    return np.clip(y, 0.0, None) if _nonnegative(inputs) else y


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
        from ciu.models.data import fit_stop

        val = thin(split.val, 512)
        truth = inputs.truth(val)[0]
        seen = ~np.isnan(truth)
        tried: dict[str, float] = {}
        best = None
        for transform in self.transforms if _nonnegative(inputs) else ("identity",):
            scaler = inputs.scaler if transform == inputs.scaler.transform else Scaler.fit(
                inputs.series, stop=fit_stop(split, inputs.horizons), transform=transform)
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
        view = inputs if self.scaler is None or self.scaler.transform == inputs.scaler.transform else \
            inputs.view(self.scaler)
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


# -- gradient boosting -----------------------------------------------------------------------
@dataclass
class GradientBoosting:
    """LightGBM on the same features as the ridge (calendar as integer codes, the unit as a category).

    One model per horizon and channel for all units, on standardised values,
    units weighing in by their spread; early stopping on the validation steps.
    """

    name: str = "lightgbm"
    learned: bool = True
    loss_power: float = 2.0
    max_rows: int = 400_000
    rounds: int = 800
    learning_rate: float = 0.1
    leaves: int = 63
    seed: int = 0
    threads: int | None = None
    progress: bool = True
    budget_minutes: float | None = None
    boosters: list[list[str]] = field(default_factory=list)  # [h][c] model strings

    def _rows(self, inputs: Inputs, ts: np.ndarray, h: int, c: int, most: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = inputs.z[0].shape[1]
        x = self._features(inputs, ts, h)
        y, seen = inputs.table_target(ts, h)
        sd = inputs.scaler.sd[0][:, c]
        w = np.broadcast_to(((sd / sd.mean()) ** self.loss_power)[None], (len(ts), n)) * seen[:, :, c]
        x, y, w = x.reshape(len(ts) * n, -1), y[:, :, c].ravel(), w.ravel()
        keep = np.flatnonzero(w > 0)
        if len(keep) > most:
            keep = np.sort(rng.choice(keep, size=most, replace=False))
        return x[keep], y[keep], w[keep]

    def _features(self, inputs: Inputs, ts: np.ndarray, h: int) -> np.ndarray:
        x = inputs.table(ts, h, one_hot=False)
        unit = np.broadcast_to(np.arange(x.shape[1], dtype=np.float32)[None, :, None], (x.shape[0], x.shape[1], 1))
        return np.concatenate([x, unit], axis=2)

    @_timed
    def fit(self, inputs: Inputs, split: Split) -> dict[str, Any]:
        import lightgbm as lgb

        rng = np.random.default_rng(self.seed)
        n = inputs.z[0].shape[1]
        most_train = self.max_rows
        train_ts = split.train
        if len(train_ts) * n > 4 * most_train:  # features only for the issue steps that can be drawn
            train_ts = np.sort(rng.choice(train_ts, size=max(1, 4 * most_train // n), replace=False))
        val_ts = thin(split.val, max(1, 100_000 // n))
        params = {"objective": "regression", "learning_rate": self.learning_rate, "num_leaves": self.leaves,
                  "min_data_in_leaf": 50, "feature_fraction": 0.9, "lambda_l2": 1.0, "verbose": -1,
                  "num_threads": self.threads or os.cpu_count() or 1, "deterministic": True,
                  "force_row_wise": True, "seed": self.seed}
        self.boosters, rounds = [], []
        total = inputs.horizons * inputs.channels
        with progress_bar(total, desc=self.name, unit="model", enabled=self.progress) as bar:
            for h in range(1, inputs.horizons + 1):
                row = []
                for c in range(inputs.channels):
                    x, y, w = self._rows(inputs, train_ts, h, c, most_train, rng)
                    xv, yv, wv = self._rows(inputs, val_ts, h, c, 100_000, rng)
                    cat = [x.shape[1] - 1]
                    train = lgb.Dataset(x, y, weight=w, categorical_feature=cat, free_raw_data=True)
                    valid = lgb.Dataset(xv, yv, weight=wv, categorical_feature=cat, reference=train)
                    callbacks = [lgb.early_stopping(50, verbose=False)]
                    if self.budget_minutes is not None:
                        callbacks.append(_time_limit(60.0 * self.budget_minutes / total))
                    booster = lgb.train(params, train, self.rounds, valid_sets=[valid], callbacks=callbacks)
                    rounds.append(int(booster.best_iteration))
                    row.append(booster.model_to_string(num_iteration=booster.best_iteration))
                    bar.update(1)
                    bar.set_postfix_str(f"h{h} channel {c}: {booster.best_iteration} rounds")
                self.boosters.append(row)
        self.__dict__.pop("_parsed", None)
        return {"rounds": rounds, "rows": int(min(len(train_ts) * n, most_train))}

    def predict(self, inputs: Inputs, ts: np.ndarray) -> np.ndarray:
        import lightgbm as lgb

        ts = np.asarray(ts)
        n = inputs.z[0].shape[1]
        out = np.zeros((len(ts), n, inputs.horizons, inputs.channels), dtype=np.float32)
        models = self.__dict__.get("_parsed")
        if models is None or len(models) != len(self.boosters):  # parsing a model string takes seconds: once
            models = self.__dict__["_parsed"] = [[lgb.Booster(model_str=s) for s in row] for row in self.boosters]
        for h in range(1, inputs.horizons + 1):
            x = self._features(inputs, ts, h).reshape(len(ts) * n, -1)
            for c in range(inputs.channels):
                out[:, :, h - 1, c] = models[h - 1][c].predict(
                    x, num_threads=self.threads or os.cpu_count() or 1).reshape(len(ts), n)
        return _unscale(inputs, out)

    def state(self) -> dict[str, Any]:
        return {"kind": "lightgbm", "name": self.name, "boosters": self.boosters, "loss_power": self.loss_power}


def _time_limit(seconds: float):
    """A LightGBM callback that stops boosting after ``seconds``, at the best validation round so far."""
    import lightgbm as lgb

    state: dict[str, Any] = {"start": time.perf_counter(), "best": None}

    def callback(env: Any) -> None:
        score = env.evaluation_result_list[0][2]
        if state["best"] is None or score < state["best"][1]:
            state["best"] = (env.iteration, score, env.evaluation_result_list)
        if time.perf_counter() - state["start"] > seconds:
            best = state["best"]
            raise lgb.callback.EarlyStopException(best[0], best[2])

    callback.order = 40  # after early stopping (30)
    return callback


# -- neural ------------------------------------------------------------------------------------
@dataclass
class Neural:
    """The tower (``bottom_only=False``) or the per-unit LSTM (``bottom_only=True``)."""

    config: TrainConfig
    bottom_only: bool = False
    name: str = "tower"
    learned: bool = True
    model: Tower | None = None
    result: FitResult | None = None

    @classmethod
    def tower(cls, config: TrainConfig, *, name: str = "tower") -> Neural:
        return cls(config, False, name)

    @classmethod
    def unit_lstm(cls, config: TrainConfig, *, name: str = "unit_lstm") -> Neural:
        return cls(replace(config, neighbours=False, top_down=False, use_unit_embedding=False), True, name)

    def fit(self, inputs: Inputs, split: Split) -> dict[str, Any]:
        self.result = fit(inputs, split, self.config, name=self.name, levels=1 if self.bottom_only else None)
        self.model = self.result.model
        return self.result.info()

    def predict(self, inputs: Inputs, ts: np.ndarray, *, bottom_mask: np.ndarray | None = None) -> np.ndarray:
        assert self.model is not None, "fit first"
        device = next(self.model.parameters()).device
        mask = None if bottom_mask is None else torch.as_tensor(bottom_mask, dtype=torch.float32, device=device)
        return predict(self.model, inputs.tensors(device), np.asarray(ts), bottom_mask=mask)  # type: ignore[return-value]

    def state(self) -> dict[str, Any]:
        assert self.model is not None, "fit first"
        return {"kind": "neural", "name": self.name, "bottom_only": self.bottom_only,
                "train": self.config.to_dict(), "tower": self.model.config.to_dict(),
                "state_dict": {k: v.cpu() for k, v in self.model.state_dict().items()}}


def from_state(state: dict[str, Any]) -> Forecaster:
    """A fitted forecaster back from :meth:`state` (checkpoints)."""
    kind = state["kind"]
    if kind == "persistence":
        return Persistence()
    if kind == "seasonal_naive":
        return SeasonalNaive(days=int(state.get("days", 7)))
    if kind == "historical_average":
        return HistoricalAverage(table=np.asarray(state["table"]))
    if kind == "ridge":
        return Ridge(per_unit=bool(state["per_unit"]), name=state["name"], loss_power=state["loss_power"],
                     coef=[np.asarray(c) for c in state["coef"]], penalty=list(state["penalty"]),
                     scaler=None if state.get("scaler") is None else Scaler.from_state(state["scaler"]))
    if kind == "lightgbm":
        return GradientBoosting(name=state["name"], boosters=state["boosters"], loss_power=state["loss_power"])
    if kind == "neural":
        device = pick_device(None)
        model = Tower(TowerConfig.from_dict(state["tower"])).to(device)
        model.load_state_dict(state["state_dict"])
        model.eval()
        return Neural(TrainConfig.from_dict(state["train"]), bool(state["bottom_only"]), state["name"], True, model)
    raise ValueError(f"unknown forecaster kind {kind!r}")
