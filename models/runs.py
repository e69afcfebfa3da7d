"""Training on a twin: the champion on validation recorded as a model run; forecasts and alerts written back."""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ciu.alerts import AlertRule
from ciu.clock import utc
from ciu.errors import NotFound, ValidationError
from ciu.models.champion import DEFAULT_MODELS, Competition, compete, share_budget
from ciu.models.data import chronological_split
from ciu.models.forecaster import ChampionForecaster
from ciu.models.graph import build_graph, target_step
from ciu.models.settings import ModelSettings
from ciu.models.train import TrainConfig
from ciu.skill import FORECAST_KINDS, skill_rows

if TYPE_CHECKING:
    from ciu.twin import Twin

#: the kinds of model run that forecast (``ciu train`` records ``champion``; earlier runs were ``tower``)
RUN_KINDS = FORECAST_KINDS


def code_version() -> str:
    """The git commit of the source checkout, or the package version."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except OSError:
        pass
    from importlib.metadata import version

    return version("ciu-twin")


def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy numbers as Python numbers, NaN and infinity as ``None``."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    return value


def save_checkpoint(path: Path, comp: Competition, *, target: str) -> None:
    """The champion, the fitted statistics and everything a forecast needs, in one file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    s = comp.series
    torch.save({
        "version": 3,
        "champion": comp.champion,
        "forecaster": comp.forecaster().state(),
        "train": comp.config.to_dict(),
        "target": target,
        "levels": s.level_names,
        "codes": [lv.codes for lv in s.levels],
        "channels": s.channels,
        "step": str(s.step),
        "timezone": s.timezone,
        "external_names": s.external_names,
        "covariates": s.covariates is not None,
        "scaler": comp.inputs.scaler.to_state(),
        "ext_scaler": comp.inputs.ext_scaler.to_state(),
        "bank": comp.bank.to_state(),
        "thresholds": comp.limits,
        "calibration": comp.calibration.to_state(),
    }, path)


@dataclass
class TrainReport:
    run_id: int
    metrics: dict[str, Any]
    checkpoint: Path
    competition: Competition


def last_observed(twin: Twin, target: str) -> pd.Timestamp:
    """The last step (UTC) with observations of ``target``: where a forecast of it is issued by default."""
    hour = twin.last_observed_hour(target)
    if hour is None:
        twin.variable(target)  # raises UnknownVariable
        raise ValidationError(f"no observations of {target!r}", field="target")
    extent = twin.series_extent()
    rows = extent[extent["variable"] == target]
    return pd.Timestamp(rows["tmax"].max()).tz_convert("UTC")


def training_window(twin: Twin, target: str, days: float | None) -> tuple[datetime | None, datetime | None]:
    """``(start, end)`` of the last ``days`` days with observations of ``target`` (``None, None``: all of them)."""
    if days is None:
        return None, None
    if days <= 0:
        raise ValidationError("the training window must be longer than zero days", field="window")
    end = last_observed(twin, target) + target_step(twin, target, twin.levels_from(target)[0])
    return (end - pd.Timedelta(days=days)).to_pydatetime(), end.to_pydatetime()


def train_on_twin(twin: Twin, config: TrainConfig, *, target: str = "people",
                  models: Sequence[str] = DEFAULT_MODELS, settings: ModelSettings | None = None,
                  fractions: tuple[float, float] = (0.7, 0.15), levels: Sequence[str] | None = None,
                  window_days: float | None = None) -> TrainReport:
    """Fit the tower and the baselines, publish the champion on validation, record the whole comparison.

    Parameters
    ----------
    target
        The count variable to forecast.
    models
        The candidates (default :data:`ciu.models.champion.DEFAULT_MODELS`).
    levels
        Consecutive levels, bottom to top (default: the lowest level where
        ``target`` is observed and every level above it, see
        :func:`ciu.models.graph.target_levels`).
    window_days
        Train on the last ``window_days`` days of ``target`` only (default: all
        of them). The split fractions apply to the window.

    ``config.budget_minutes`` is the budget of the whole training, shared among
    the learned candidates (:func:`ciu.models.champion.share_budget`); the run
    records each one's share.
    """
    settings = settings or ModelSettings()
    start, end = training_window(twin, target, window_days)
    series = build_graph(twin, target=target, levels=levels, start=start, end=end)
    split = chronological_split(series, history=config.history, horizons=config.horizons, fractions=fractions)
    budgets = share_budget(config.budget_minutes, models)
    params = {"train": config.to_dict(), "budgets": budgets, "target": target, "levels": series.level_names,
              "window_days": window_days, "models": list(models), "step": str(series.step), "timezone": series.timezone,
              "times": [str(series.times[0]), str(series.times[-1])], "split": {
                  "fractions": list(fractions), "train": len(split.train), "val": len(split.val),
                  "test": len(split.test)}}
    run_id = twin.add_model_run(name="champion", kind="champion", params=jsonable(params),
                                      data_hash=twin.data_hash(), code_version=code_version(),
                                      status="training")
    try:
        comp = compete(series, split, config, models=models, options=budgets)
        comp.score_test()
        metrics = jsonable(comp.summary())
        # run ids count per database: twins kept side by side in one cluster get their own folders
        path = settings.dir / twin.name / f"run-{run_id}.pt"
        save_checkpoint(path, comp, target=target)
        twin.update_model_run(run_id, metrics=metrics, checkpoint=str(path), status="trained",
                                    name=comp.champion)
    except BaseException:
        twin.update_model_run(run_id, status="failed")
        raise
    return TrainReport(run_id, metrics, path, comp)


def run_target(params: Any) -> str:
    """The variable a model run forecasts (runs recorded before targets were stored forecast ``people``)."""
    params = params if isinstance(params, dict) else json.loads(params or "{}")
    return str(params.get("target", "people"))


def predict_to_store(twin: Twin, *, issued_at: datetime | None = None, horizons: int | None = None,
                     run_id: int | None = None, target: str | None = None,
                     rule: AlertRule | None = None) -> tuple[int, int, int]:
    """Forecast every unit at every level of a model run, store it, raise alerts.

    The run is ``run_id``, else the newest trained run of ``target`` (of any
    target when ``None``); ``issued_at`` defaults to the last observed step of
    the run's target (the forecast contract: horizon ``h`` is ``issued_at + h``
    steps). Alerts follow ``rule`` (default: :meth:`ciu.alerts.AlertRule.configured`).
    Returns ``(run_id, forecasts, alerts)``.
    """
    rule = rule or AlertRule.configured()
    fc = ChampionForecaster.load(twin, run_id, target=target)
    issued = utc(issued_at if issued_at is not None else last_observed(twin, fc.target))
    frame = fc.forecast(twin, issued_at=issued.to_pydatetime(), horizons=horizons or fc.horizons)
    if frame.empty:
        raise ValidationError("the forecast is empty", field="issued_at")
    n = twin.write_predictions(frame.assign(issued_at=fc.issue_time(issued)), run_id=fc.run_id)
    k = twin.write_alerts(rule.alerts(frame), run_id=fc.run_id, step=fc.step, covering=pd.unique(frame["code"]))
    return fc.run_id, n, k


def skill_table(metrics: dict[str, Any], *, split: str = "test") -> pd.DataFrame:
    """The comparison of a run as a table: one row per model, level and horizon (:func:`ciu.skill.skill_rows`).

    ``split`` is ``validation`` or ``test``; a run with no scores of that split raises :class:`NotFound`.
    """
    rows = skill_rows(metrics, split=split)
    if not rows:
        raise NotFound(f"the run has no {split} scores")
    return pd.DataFrame(rows)
