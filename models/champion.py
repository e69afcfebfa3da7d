"""Champion on validation: every forecaster on the same split, compared at every level, the best one published.

:func:`compete` fits the candidates (the tower and the baselines) on the
training steps, forecasts the validation steps, and also tries a blend of the
learned ones (non-negative weights that sum to one, fitted on validation
forecasts; its validation score is cross-fitted: each half of the validation
steps is scored with weights fitted on the other half). The champion is the
candidate whose validation RMSE, relative to seasonal naive's, is lowest on
average over the levels. The residuals of its validation forecasts become the
:class:`~ciu.models.probabilistic.ResidualBank` of its sample paths.

The test steps are not read until :meth:`Competition.score_test`, which
scores every candidate once, after the champion is chosen.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.optimize import nnls

from ciu.alerts import AlertRule
from ciu.errors import ValidationError
from ciu.models.baselines import (Announced, Forecaster, HistoricalAverage, Neural, Persistence, Ridge, SeasonalNaive,
                                 inner, roll_up)
from ciu.models.boosting import GradientBoosting, anchor_of
from ciu.models.data import ExternalScaler, HierSeries, Scaler, Split, fit_stop
from ciu.models.inputs import Inputs
from ciu.models.metrics import alert_skill, level_metrics, skill
from ciu.models.probabilistic import (WINDOW, Calibration, Distribution, ResidualBank, active_units, base_rates,
                                  distribution, rolling, scores, thresholds)
from ciu.models.tower import Tower, TowerConfig
from ciu.models.train import TrainConfig, pick_device

#: what ``ciu train`` compares by default
DEFAULT_MODELS: tuple[str, ...] = ("persistence", "seasonal_naive", "historical_average", "ridge_unit",
                                   "ridge_pooled", "lightgbm", "tower")
#: what the benchmark compares (adds the per-unit LSTM)
BENCHMARK_MODELS: tuple[str, ...] = DEFAULT_MODELS + ("unit_lstm",)
#: how ``ciu train`` shares its time budget among the learned candidates present (relative weights)
BUDGET_WEIGHTS: dict[str, float] = {"tower": 3.0, "unit_lstm": 2.0, "lightgbm": 2.0}
#: the reference of the skill scores
REFERENCE = "seasonal_naive"
#: sample paths per issue step when the probabilistic forecasts of a whole split are scored
SCORING_SAMPLES = 100


def share_budget(minutes: float | None, models: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Options for :func:`make` that split one budget of ``minutes`` among the learned candidates in ``models``.

    Each gets its share by :data:`BUDGET_WEIGHTS` (the tower 60 % and LightGBM
    40 % of the default candidates), so the training of them all takes about
    ``minutes``. ``None`` (no budget) gives no options.
    """
    present = [m for m in models if m in BUDGET_WEIGHTS]
    if minutes is None or not present:
        return {}
    total = sum(BUDGET_WEIGHTS[m] for m in present)
    return {m: {"budget_minutes": minutes * BUDGET_WEIGHTS[m] / total} for m in present}


def make(name: str, config: TrainConfig, **options: Any) -> Forecaster:
    """A fresh, unfitted forecaster by name.

    ``options``: ``budget_minutes`` (this model's time budget instead of
    ``config.budget_minutes``) and the LightGBM model's settings (e.g. ``max_rows``).
    """
    if "budget_minutes" in options:
        config = replace(config, budget_minutes=options.pop("budget_minutes"))
    if name == "persistence":
        return Persistence()
    if name == "seasonal_naive":
        return SeasonalNaive()
    if name == "historical_average":
        return HistoricalAverage()
    if name == "ridge_unit":
        return Ridge(per_unit=True, name=name, loss_power=config.loss_power)
    if name == "ridge_pooled":
        return Ridge(per_unit=False, name=name, loss_power=config.loss_power)
    if name == "lightgbm":
        return GradientBoosting(name=name, loss_power=config.loss_power, threads=config.threads,
                                progress=config.progress, budget_minutes=config.budget_minutes, **options)
    if name == "tower":
        return Neural.tower(config)
    if name == "unit_lstm":
        return Neural.unit_lstm(config)
    raise ValidationError(f"unknown model {name!r}; known: {list(BENCHMARK_MODELS)}", field="models")


@dataclass
class Blend:
    """A weighted sum of its members' bottom forecasts (weights ≥ 0, summing to one)."""

    members: dict[str, Forecaster]
    weights: dict[str, float]
    name: str = "blend"
    learned: bool = True

    def fit(self, inputs: Inputs, split: Split) -> dict[str, Any]:  # the members are fitted already
        return {"weights": self.weights}

    def predict(self, inputs: Inputs, ts: np.ndarray) -> np.ndarray:
        out = None
        for name, w in self.weights.items():
            if w <= 0:
                continue
            p = w * self.members[name].predict(inputs, ts)
            out = p if out is None else out + p
        assert out is not None
        return out

    def state(self) -> dict[str, Any]:
        used = {n: w for n, w in self.weights.items() if w > 0}
        return {"kind": "blend", "name": self.name, "weights": used,
                "members": {n: self.members[n].state() for n in used}}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Blend:
        return cls({n: from_state(s) for n, s in state["members"].items()}, dict(state["weights"]), state["name"])


def from_state(state: dict[str, Any]) -> Forecaster:
    """A fitted forecaster back from :meth:`state` (checkpoints)."""
    kind = state["kind"]
    if kind == "announced":
        return Announced(from_state(state["model"]))
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
        return GradientBoosting(name=state["name"], boosters=state["boosters"], loss_power=state["loss_power"],
                                transform=state.get("transform", "identity"), relative=anchor_of(state),
                                scaler=None if state.get("scaler") is None else Scaler.from_state(state["scaler"]))
    if kind == "neural":
        device = pick_device(None)
        model = Tower(TowerConfig.from_dict(state["tower"])).to(device)
        model.load_state_dict(state["state_dict"])
        model.eval()
        base = None if state.get("base") is None else from_state(state["base"])
        return Neural(TrainConfig.from_dict(state["train"]), bool(state["bottom_only"]), state["name"], True, model,
                      base=base)  # type: ignore[arg-type]
    raise ValueError(f"unknown forecaster kind {kind!r}")


def load_forecaster(state: dict[str, Any]) -> Forecaster:
    """A champion back from its checkpoint state (a single forecaster or a blend)."""
    return Blend.from_state(state) if state["kind"] == "blend" else from_state(state)


def blend_weights(preds: dict[str, np.ndarray], truth: np.ndarray) -> dict[str, float]:
    """Non-negative weights summing to one that minimise the squared error on the observed truths."""
    names = list(preds)
    seen = ~np.isnan(truth)
    a = np.stack([preds[n][seen] for n in names], axis=1)
    y = truth[seen]
    w, _ = nnls(a, y)
    if w.sum() <= 0:
        w = np.ones(len(names))
    w = w / w.sum()
    return {n: float(x) for n, x in zip(names, w)}


def cross_fitted(preds: dict[str, np.ndarray], truth: np.ndarray) -> np.ndarray:
    """Blend forecasts of the validation steps, each half with weights fitted on the other half."""
    half = len(truth) // 2
    parts = []
    for fit_on, apply_to in ((slice(half, None), slice(None, half)), (slice(None, half), slice(half, None))):
        w = blend_weights({n: p[fit_on] for n, p in preds.items()}, truth[fit_on])
        parts.append(sum(w[n] * p[apply_to] for n, p in preds.items()))
    return np.concatenate(parts)


def best_ridge(done: dict[str, Forecaster], validation: dict[str, dict[str, Any]], kind: str = "ridge") -> Ridge | None:
    """The base of the neural candidates: the fitted ridge ``kind`` (``ridge_unit`` or ``ridge_pooled``), or with
    ``ridge`` the one of them with the best validation score; ``None`` when none was fitted (the network then fits
    its own)."""
    ridges = [n for n, m in done.items() if isinstance(inner(m), Ridge) and n in validation and kind in ("ridge", n)]
    if not ridges:
        return None
    reference = validation.get(REFERENCE) or validation[ridges[0]]
    return inner(done[min(ridges, key=lambda n: _score(validation[n], reference))])


def _score(val: dict[str, Any], reference: dict[str, Any]) -> float:
    """Mean over levels of a candidate's validation RMSE relative to the reference's."""
    ratios = [val[lv]["rmse_all"] / reference[lv]["rmse_all"] for lv in val
              if np.isfinite(val[lv]["rmse_all"]) and reference[lv]["rmse_all"] > 0]
    return float(np.mean(ratios)) if ratios else float("inf")


@dataclass
class Competition:
    """The candidates of one split, their validation comparison and the chosen champion."""

    series: HierSeries
    split: Split
    inputs: Inputs
    config: TrainConfig
    metric_kw: dict[str, Any]
    models: dict[str, Forecaster]
    info: dict[str, dict[str, Any]]
    validation: dict[str, dict[str, Any]]
    scores: dict[str, float]
    champion: str
    blend: Blend | None
    bank: ResidualBank
    limits: list[np.ndarray]
    rates: list[np.ndarray]
    active: list[np.ndarray]
    calibration: Calibration
    samples: int = 200
    test: dict[str, dict[str, Any]] | None = None
    probabilistic: dict[str, Any] = field(default_factory=dict)

    def forecaster(self, name: str | None = None) -> Forecaster:
        """The champion (or the candidate ``name``)."""
        name = name or self.champion
        if name == "blend":
            assert self.blend is not None
            return self.blend
        return self.models[name]

    def score_test(self) -> dict[str, dict[str, Any]]:
        """Score every candidate on the test steps, once, after the champion was chosen."""
        if self.test is not None:
            return self.test
        ts = self.split.test
        if len(ts) == 0:
            self.test = {}
            return self.test
        truth = self.inputs.truth(ts)
        names = self.series.level_names
        self.test = {}
        points = {}
        for name in self.models:
            points[name] = self.models[name].predict(self.inputs, ts)
        if self.blend is not None:  # the members' forecasts, weighted: not predicted twice
            points["blend"] = sum(w * points[m] for m, w in self.blend.weights.items() if w > 0)
        for name, point in points.items():
            self.test[name] = level_metrics(roll_up(point, self.series), truth, names, **self.metric_kw)
        # the bands of the first test steps are calibrated on the last validation steps before them
        prior = self.split.val[-(WINDOW + self.inputs.horizons):]
        steps = np.concatenate([prior, ts])
        point = np.concatenate([self.forecaster().predict(self.inputs, prior), points[self.champion]])
        known = [np.concatenate([a, b]) for a, b in zip(self.inputs.truth(prior), truth)]
        dist = rolling(steps, point, known, len(prior), self.bank, self.series, self.limits, self.calibration,
                       horizons=self.inputs.horizons, samples=SCORING_SAMPLES)
        self.probabilistic["test"] = scores(dist, truth, self.limits, self.rates, names, self.active)
        self.probabilistic["alerts"] = alert_scores(self.series, dist, truth, self.limits, ts)
        return self.test

    def summary(self) -> dict[str, Any]:
        """Everything a model run records: the comparison, the champion, skill, calibration, training, gaps."""
        names = self.series.level_names
        out: dict[str, Any] = {
            "champion": self.champion, "selection": "lowest mean over levels of validation RMSE / seasonal naive's",
            "scores": self.scores, "levels": names, "step": str(self.series.step), "horizons": self.inputs.horizons,
            "blend": None if self.blend is None else self.blend.weights,
            "split": {"train": int(len(self.split.train)), "val": int(len(self.split.val)),
                      "test": int(len(self.split.test))},
            "validation": self.validation, "test": self.test or {}, "training": self.info,
            "probabilistic": self.probabilistic, "missing": missing_counts(self.series, self.split,
                                                                           self.inputs.horizons),
        }
        out["skill"] = {part: {m: {lv: skill(v[lv]["rmse_all"], table[REFERENCE][lv]["rmse_all"]) for lv in names}
                               for m, v in table.items()}
                        for part, table in (("validation", self.validation), ("test", self.test or {}))
                        if REFERENCE in table}
        return out


def alert_scores(series: HierSeries, dist: Distribution, truth: list[np.ndarray], limits: list[np.ndarray],
                 ts: np.ndarray, rule: AlertRule | None = None) -> dict[str, Any]:
    """Per level, the alerts that the one alert rule raises from the calibrated risk of issue steps ``ts``, against
    the exceedances of the units' thresholds and, where the series has known events (its covariates, summed up the
    levels), against the events (:func:`~ciu.models.metrics.alert_skill`)."""
    rule = rule or AlertRule.configured()
    events = None if series.covariates is None else [
        v[..., 0] > 0 for v in series.sum_up(np.nan_to_num(series.covariates[..., :1]))]
    return {name: alert_skill(risk, t, thr, ts, level=rule.threshold, events=None if events is None else events[i])
            for i, (name, risk, t, thr) in enumerate(zip(series.level_names, dist.risk, truth, limits))}


def missing_counts(series: HierSeries, split: Split, horizons: int) -> dict[str, Any]:
    """How many unit-steps are missing, and how many issue steps each part of the split kept."""
    seen = ~np.isnan(series.values)
    usable = series.mask.astype(bool)  # type: ignore[union-attr]
    return {"unit_steps": int(seen.size), "missing_unit_steps": int((~seen).sum()),
            "masked_steps": int((~usable).sum()), "issue_steps": {
                "train": int(len(split.train)), "val": int(len(split.val)), "test": int(len(split.test))}}


def compete(series: HierSeries, split: Split, config: TrainConfig, *, models: Sequence[str] = DEFAULT_MODELS,
            fitted: dict[str, Forecaster] | None = None, metric_kw: dict[str, Any] | None = None,
            blend: bool = True, samples: int = 200, options: dict[str, dict[str, Any]] | None = None,
            log=None) -> Competition:
    """Fit every candidate on the training steps and choose the champion on the validation steps.

    ``fitted`` holds candidates already fitted on the same split (deterministic
    baselines shared by several seeds); ``options`` settings per model name
    (see :func:`make`). The test steps are not read here.
    """
    if len(split.train) == 0 or len(split.val) < 2:
        raise ValidationError("the split leaves too few training or validation samples", field="split")
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True) if config.progress else None)
    metric_kw = dict(metric_kw or {})
    stop = fit_stop(split, config.horizons)
    scaler = Scaler.fit(series, stop=stop)
    inputs = Inputs.build(series, scaler=scaler, ext_scaler=ExternalScaler.fit(series.external, stop=stop),
                          history=config.history, horizons=config.horizons)
    names = series.level_names
    truth = inputs.truth(split.val)
    fitted = dict(fitted or {})
    done: dict[str, Forecaster] = {}
    info: dict[str, dict[str, Any]] = {}
    preds: dict[str, np.ndarray] = {}
    validation: dict[str, dict[str, Any]] = {}
    for name in models:
        model = fitted.get(name)
        if model is None:
            model = make(name, config, **(options or {}).get(name, {}))
            if config.announced and series.covariates is not None:
                model = Announced(model)
        if name not in fitted:
            net = inner(model)
            if isinstance(net, Neural) and net.config.base is not None and net.base is None:
                net.base = best_ridge(done, validation, net.config.base)
            info[name] = model.fit(inputs, split)
            model._info = info[name]  # type: ignore[attr-defined]  # kept for reuse by later seeds
        else:
            info[name] = dict(getattr(model, "_info", {}), shared=True)
        done[name] = model
        preds[name] = model.predict(inputs, split.val)
        validation[name] = level_metrics(roll_up(preds[name], series), truth, names, **metric_kw)
        took = info[name].get("seconds")
        log(f"  {name}: validation RMSE " + ", ".join(f"{lv} {validation[name][lv]['rmse_all']:.3f}" for lv in names)
            + ("" if took is None or info[name].get("shared") else f" (fitted in {took:.0f} s)"))
    learned = [n for n in done if done[n].learned]
    mixed = None
    if blend and len(learned) >= 2:
        sub = {n: preds[n] for n in learned}
        weights = blend_weights(sub, truth[0])
        mixed = Blend({n: done[n] for n in learned}, weights)
        preds["blend"] = cross_fitted(sub, truth[0])
        validation["blend"] = level_metrics(roll_up(preds["blend"], series), truth, names, **metric_kw)
        info["blend"] = {"weights": weights, "validation": "cross-fitted on two halves of the validation steps"}
        log("  blend " + ", ".join(f"{n} {w:.2f}" for n, w in weights.items() if w > 0) + ": validation RMSE "
            + ", ".join(f"{lv} {validation['blend'][lv]['rmse_all']:.3f}" for lv in names))
    reference = validation.get(REFERENCE) or next(iter(validation.values()))
    scored = {n: _score(v, reference) for n, v in validation.items()}
    champion = min(scored, key=lambda n: scored[n])
    log(f"  champion on validation: {champion}")
    champ_val = preds[champion]  # the blend's are cross-fitted: residuals of weights not fitted on them
    level0 = inputs.scaler.mean[0] if inputs.scaler.transform == "identity" else np.ones_like(inputs.scaler.mean[0])
    bank = ResidualBank.fit(champ_val, truth[0], level0, nonnegative=bool(np.nanmin(series.values) >= 0)
                            if np.isfinite(series.values).any() else True, seed=config.seed)
    limits = thresholds(series, stop=stop)
    rates = base_rates(series, limits, stop=stop)
    active = active_units(series, stop=stop)
    dist = distribution(champ_val, bank, series, limits, samples=SCORING_SAMPLES)
    calibration = Calibration.fit(dist, truth, limits, rates, active, nonnegative=bank.nonnegative)
    comp = Competition(series, split, inputs, config, metric_kw, done, info, validation, scored, champion, mixed,
                       bank, limits, rates, active, calibration, samples)
    comp.probabilistic["validation"] = scores(calibration.apply(dist), truth, limits, rates, names, active)
    return comp
