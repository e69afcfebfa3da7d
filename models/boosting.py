"""Gradient boosting (LightGBM) in the harness of :mod:`ciu.models.baselines`: same inputs, same contract."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ciu.models.baselines import _nonnegative, _timed, _unscale, scaler_for, view_of
from ciu.models.data import Scaler, Split, window_index
from ciu.models.inputs import NEIGHBOUR_STEPS, Inputs
from ciu.models.train import progress_bar, thin


@dataclass
class GradientBoosting:
    """LightGBM on the same features as the ridge (calendar as integer codes, the unit as a category).

    One model per horizon and channel for all units, on standardised values,
    units weighing in by their spread; early stopping on the validation steps.
    Two variants are fitted and the one with the lower validation error kept:
    values as they are, and counts on the log1p scale (a change of level is a
    shift) taken *relative*: each issue step's window, seasonal lags,
    neighbours and target less the unit's mean over the window, so a level the
    training steps never saw (a city after a shock) is carried by that mean
    instead of by trees that only know the old levels.
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
    #: (transform, relative) pairs tried; the lower validation error is kept
    variants: tuple[tuple[str, bool], ...] = (("identity", False), ("log1p", True))
    transform: str = "identity"  # the kept variant's
    relative: bool = False
    boosters: list[list[str]] = field(default_factory=list)  # [h][c] model strings
    scaler: Scaler | None = None  # the scaler of the model's own transform, when not the inputs'

    def _level(self, inputs: Inputs, ts: np.ndarray) -> np.ndarray:
        """``(B, N)``: each unit's mean over the input window (0 without ``relative``)."""
        if not self.relative:
            return np.zeros((len(ts), inputs.z[0].shape[1]), dtype=np.float32)
        return inputs.z[0][window_index(np.asarray(ts), inputs.history)].mean(axis=(1, 3))

    def _rows(self, inputs: Inputs, ts: np.ndarray, h: int, c: int, most: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = inputs.z[0].shape[1]
        x = self._features(inputs, ts, h)
        y, seen = inputs.table_target(ts, h)
        y = y - self._level(inputs, ts)[..., None]
        sd = inputs.scaler.sd[0][:, c]
        w = np.broadcast_to(((sd / sd.mean()) ** self.loss_power)[None], (len(ts), n)) * seen[:, :, c]
        x, y, w = x.reshape(len(ts) * n, -1), y[:, :, c].ravel(), w.ravel()
        keep = np.flatnonzero(w > 0)
        if len(keep) > most:
            keep = np.sort(rng.choice(keep, size=most, replace=False))
        return x[keep], y[keep], w[keep]

    def _features(self, inputs: Inputs, ts: np.ndarray, h: int) -> np.ndarray:
        x = inputs.table(ts, h, one_hot=False)
        if self.relative:  # the window, the neighbours' recent steps and the seasonal lags, less the level
            c = inputs.channels
            lagged = (inputs.history + NEIGHBOUR_STEPS + inputs.season.shape[0]) * c
            x[..., :lagged] -= self._level(inputs, ts)[..., None]
        unit = np.broadcast_to(np.arange(x.shape[1], dtype=np.float32)[None, :, None], (x.shape[0], x.shape[1], 1))
        return np.concatenate([x, unit], axis=2)

    @_timed
    def fit(self, inputs: Inputs, split: Split) -> dict[str, Any]:
        """Fit each of :attr:`variants` and keep the one with the lower validation error (like the ridge)."""
        val = thin(split.val, 512)
        truth = inputs.truth(val)[0]
        seen = ~np.isnan(truth)
        variants = [v for v in self.variants if _nonnegative(inputs) or v[0] == "identity"] or [("identity", False)]
        tried, best = {}, None
        for transform, relative in variants:
            info = self._fit_variant(inputs, split, transform, relative, len(variants))
            err = float(np.mean((self.predict(inputs, val)[seen] - truth[seen]) ** 2))
            tried[f"{transform}{', relative' if relative else ''}"] = err
            if best is None or err < best[0]:
                best = (err, info, dict(boosters=self.boosters, scaler=self.scaler, transform=transform,
                                        relative=relative))
        assert best is not None
        self.__dict__.update(best[2])
        self.__dict__.pop("_parsed", None)
        return {**best[1], "validation_mse": tried}

    def _fit_variant(self, inputs: Inputs, split: Split, transform: str, relative: bool,
                     shares: int) -> dict[str, Any]:
        import lightgbm as lgb

        rng = np.random.default_rng(self.seed)
        self.transform, self.relative = transform, relative
        self.scaler = scaler_for(inputs, split, transform)
        inputs = view_of(inputs, self.scaler)
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
                        callbacks.append(_time_limit(60.0 * self.budget_minutes / total / shares))
                    booster = lgb.train(params, train, self.rounds, valid_sets=[valid], callbacks=callbacks)
                    rounds.append(int(booster.best_iteration))
                    row.append(booster.model_to_string(num_iteration=booster.best_iteration))
                    bar.update(1)
                    bar.set_postfix_str(f"{transform}{' relative' if relative else ''} h{h} channel {c}: "
                                        f"{booster.best_iteration} rounds")
                self.boosters.append(row)
        self.__dict__.pop("_parsed", None)
        return {"rounds": rounds, "rows": int(min(len(train_ts) * n, most_train)), "transform": transform,
                "relative": relative}

    def predict(self, inputs: Inputs, ts: np.ndarray) -> np.ndarray:
        import lightgbm as lgb

        ts = np.asarray(ts)
        inputs = view_of(inputs, self.scaler)
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
        return _unscale(inputs, out + self._level(inputs, ts)[:, :, None, None])

    def state(self) -> dict[str, Any]:
        return {"kind": "lightgbm", "name": self.name, "boosters": self.boosters, "loss_power": self.loss_power,
                "transform": self.transform, "relative": self.relative,
                "scaler": None if self.scaler is None else self.scaler.to_state()}


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
