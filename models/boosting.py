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
    Variants race on the first horizon and the one with the lower validation
    error there is kept and fitted for the other horizons: values as they are,
    and counts on the log1p scale (a change of level is a shift) taken
    *relative* to an anchor: each issue step's window, seasonal lags,
    neighbours and target less the unit's anchor, so a level the training
    steps never saw (a city after a shock, a city recovering from one) is
    carried by the anchor instead of by trees that only know the old levels.
    Two anchors (:data:`ANCHORS`): the mean over the input window (follows a
    sudden shock at once) and the mean of the seasonal lags at the target step
    (the same hour a day, two days and a week before: the level of that hour
    of the day, which the window's mean over other hours of the day is not).

    With ``budget_minutes`` the whole fit (all variants, their features and
    validation forecasts) keeps to that budget (:class:`Allowance`).
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
    #: (transform, anchor) pairs tried (anchor: one of :data:`ANCHORS` or ``None``); the lowest validation error is kept
    variants: tuple[tuple[str, str | None], ...] = (("identity", None), ("log1p", "window"), ("log1p", "season"))
    transform: str = "identity"  # the kept variant's
    relative: str | None = None  # the kept variant's anchor
    boosters: list[list[str]] = field(default_factory=list)  # [h][c] model strings
    scaler: Scaler | None = None  # the scaler of the model's own transform, when not the inputs'

    def _level(self, inputs: Inputs, ts: np.ndarray, h: int) -> np.ndarray:
        """``(B, N)``: each unit's anchor for horizon ``h`` of issue steps ``ts`` (0 without :attr:`relative`)."""
        ts = np.asarray(ts)
        if not self.relative:
            return np.zeros((len(ts), inputs.z[0].shape[1]), dtype=np.float32)
        if self.relative == "window":
            return inputs.z[0][window_index(ts, inputs.history)].mean(axis=(1, 3))
        return inputs.z[0][inputs.season[:, ts + h]].mean(axis=(0, 3))

    def _rows(self, inputs: Inputs, ts: np.ndarray, h: int, c: int, most: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = inputs.z[0].shape[1]
        anchor = self._level(inputs, ts, h)
        x = self._features(inputs, ts, h, anchor)
        y, seen = inputs.table_target(ts, h)
        y = y - anchor[..., None]
        sd = inputs.scaler.sd[0][:, c]
        w = np.broadcast_to(((sd / sd.mean()) ** self.loss_power)[None], (len(ts), n)) * seen[:, :, c]
        x, y, w = x.reshape(len(ts) * n, -1), y[:, :, c].ravel(), w.ravel()
        keep = np.flatnonzero(w > 0)
        if len(keep) > most:
            keep = np.sort(rng.choice(keep, size=most, replace=False))
        return x[keep], y[keep], w[keep]

    def _features(self, inputs: Inputs, ts: np.ndarray, h: int, anchor: np.ndarray) -> np.ndarray:
        """The table of horizon ``h``, its lagged values less ``anchor`` (:meth:`_level`, computed once by the
        caller, which needs it too)."""
        x = inputs.table(ts, h, one_hot=False)
        if self.relative:  # the window, the neighbours' recent steps and the seasonal lags, less the anchor
            c = inputs.channels
            lagged = (inputs.history + NEIGHBOUR_STEPS + inputs.season.shape[0]) * c
            x[..., :lagged] -= anchor[..., None]
        unit = np.broadcast_to(np.arange(x.shape[1], dtype=np.float32)[None, :, None], (x.shape[0], x.shape[1], 1))
        return np.concatenate([x, unit], axis=2)

    @_timed
    def fit(self, inputs: Inputs, split: Split) -> dict[str, Any]:
        """Race :attr:`variants` on the first horizon, then fit the other horizons of the winner only.

        Each variant's first-horizon boosters are scored on the validation steps
        (mean squared error of that horizon, original scale); the lowest is kept
        and goes on, so a budget is spent on one variant's horizons, not on all.
        """
        n = inputs.z[0].shape[1]
        val = thin(split.val, min(512, max(32, 200_000 // n)))  # about 200,000 unit steps score the race
        truth = inputs.truth(val)[0][:, :, :1]
        seen = ~np.isnan(truth)
        variants = [v for v in self.variants if _nonnegative(inputs) or v[0] == "identity"] or [("identity", False)]
        allowance = Allowance(None if self.budget_minutes is None else 60.0 * self.budget_minutes,
                              (len(variants) + inputs.horizons - 1) * inputs.channels)
        tried, best = {}, None
        for transform, relative in variants:
            self.transform, self.relative = transform, relative
            self.scaler = scaler_for(inputs, split, transform)
            info = self._fit_variant(inputs, split, allowance, range(1, 2))
            err = float(np.mean((self.predict(inputs, val, horizons=1)[seen] - truth[seen]) ** 2))
            tried[variant_name(transform, relative)] = err
            if best is None or err < best[0]:
                best = (err, info, dict(boosters=self.boosters, scaler=self.scaler, transform=transform,
                                        relative=relative))
        assert best is not None
        self.__dict__.update(best[2])
        self.__dict__.pop("_parsed", None)
        info = best[1]
        if inputs.horizons > 1:
            first = self.boosters
            more = self._fit_variant(inputs, split, allowance, range(2, inputs.horizons + 1))
            self.boosters = first + self.boosters
            info = {**info, "rounds": info["rounds"] + more["rounds"]}
        self.__dict__.pop("_parsed", None)
        return {**info, "validation_mse": tried}

    def _fit_variant(self, inputs: Inputs, split: Split, allowance: Allowance, horizons: range) -> dict[str, Any]:
        """Boosters of ``horizons`` for the variant set (:attr:`transform`, :attr:`relative`, :attr:`scaler`);
        the same training issue steps whichever horizons."""
        import lightgbm as lgb

        rng = np.random.default_rng(self.seed)
        transform, relative = self.transform, self.relative
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
        variant = variant_name(transform, relative)
        with progress_bar(len(horizons) * inputs.channels, desc=f"{self.name} {variant}", unit="model",
                          enabled=self.progress) as bar:
            for h in horizons:
                row = []
                for c in range(inputs.channels):
                    x, y, w = self._rows(inputs, train_ts, h, c, most_train, rng)
                    xv, yv, wv = self._rows(inputs, val_ts, h, c, 100_000, rng)
                    cat = [x.shape[1] - 1]
                    train = lgb.Dataset(x, y, weight=w, categorical_feature=cat, free_raw_data=True)
                    valid = lgb.Dataset(xv, yv, weight=wv, categorical_feature=cat, reference=train)
                    callbacks = [lgb.early_stopping(50, verbose=False)]
                    seconds = allowance.next()
                    if seconds is not None:
                        callbacks.append(_time_limit(seconds))
                    booster = lgb.train(params, train, self.rounds, valid_sets=[valid], callbacks=callbacks)
                    allowance.finished()
                    rounds.append(int(booster.best_iteration))
                    row.append(booster.model_to_string(num_iteration=booster.best_iteration))
                    bar.update(1)
                    bar.set_postfix_str(f"h{h} channel {c}: {booster.best_iteration} rounds")
                self.boosters.append(row)
        self.__dict__.pop("_parsed", None)
        return {"rounds": rounds, "rows": int(min(len(train_ts) * n, most_train)), "transform": transform,
                "relative": relative}

    def predict(self, inputs: Inputs, ts: np.ndarray, *, horizons: int | None = None) -> np.ndarray:
        """Forecasts ``(B, N, H, C)`` (``horizons``: the first ones only)."""
        import lightgbm as lgb

        ts = np.asarray(ts)
        inputs = view_of(inputs, self.scaler)
        n = inputs.z[0].shape[1]
        horizons = horizons or inputs.horizons
        out = np.zeros((len(ts), n, horizons, inputs.channels), dtype=np.float32)
        models = self.__dict__.get("_parsed")
        if models is None or len(models) != len(self.boosters):  # parsing a model string takes seconds: once
            models = self.__dict__["_parsed"] = [[lgb.Booster(model_str=s) for s in row] for row in self.boosters]
        for h in range(1, horizons + 1):
            anchor = self._level(inputs, ts, h)
            x = self._features(inputs, ts, h, anchor).reshape(len(ts) * n, -1)
            for c in range(inputs.channels):
                out[:, :, h - 1, c] = models[h - 1][c].predict(
                    x, num_threads=self.threads or os.cpu_count() or 1).reshape(len(ts), n) + anchor
        return _unscale(inputs, out)

    def state(self) -> dict[str, Any]:
        return {"kind": "lightgbm", "name": self.name, "boosters": self.boosters, "loss_power": self.loss_power,
                "transform": self.transform, "relative": self.relative,
                "scaler": None if self.scaler is None else self.scaler.to_state()}


#: what a relative variant's values are taken relative to: ``"window"``, the unit's mean over the input window;
#: ``"season"``, the mean of its seasonal lags at the target step
ANCHORS = ("window", "season")


def variant_name(transform: str, relative: str | None) -> str:
    """How a variant is named in a run's record, e.g. ``"log1p, relative to the season"``."""
    return f"{transform}, relative to the {relative}" if relative else transform


def anchor_of(state: dict[str, Any]) -> str | None:
    """The anchor a stored model was fitted with (models stored before anchors were named used the window)."""
    relative = state.get("relative")
    if relative is True:
        return "window"
    if relative in ANCHORS:
        return relative
    if relative:
        raise ValueError(f"unknown anchor {relative!r}; one of {', '.join(ANCHORS)}")
    return None


@dataclass
class Allowance:
    """Boosting seconds for each of ``models`` fits so that the whole fit keeps to ``seconds``.

    Before each fit (its features built) it shares what is left of the budget
    among the fits still to come, less the time each of them will spend outside
    boosting (features, validation forecasts: the mean of the fits so far);
    never less than a quarter of an even share.
    """

    seconds: float | None
    models: int
    start: float = field(default_factory=time.perf_counter)
    done: int = 0
    boosted: float = 0.0  # seconds spent boosting so far
    _since: float = 0.0

    def next(self) -> float | None:
        """The boosting time of the next fit (``None``: no budget); call :meth:`finished` after it."""
        if self.seconds is None:
            return None
        now = time.perf_counter()
        elapsed = now - self.start
        aside = (elapsed - self.boosted) / (self.done + 1)  # per fit, outside boosting (this one's features too)
        remaining = max(1, self.models - self.done)
        share = (self.seconds - elapsed - aside * (remaining - 1)) / remaining
        self._since = now
        return max(share, 0.25 * self.seconds / max(1, self.models))

    def finished(self) -> None:
        if self.seconds is not None:
            self.boosted += time.perf_counter() - self._since
            self.done += 1


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
