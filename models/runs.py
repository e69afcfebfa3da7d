"""Training a tower on a twin, recording it as a model run, writing forecasts and alerts."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ciu.errors import NotFound, ValidationError
from models.data import HierSeries
from models.graph import build_graph, series_from_graph
from models.settings import ModelSettings
from models.train import FitResult, TrainConfig, chronological_split_for, evaluate, fit

if TYPE_CHECKING:
    from ciu.twin import Twin


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


def save_checkpoint(path: Path, result: FitResult, series: HierSeries, config: TrainConfig, *,
                    target: str) -> None:
    """Weights, hyper-parameters and the fitted statistics, in one file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({
        "state_dict": result.model.state_dict(),
        "tower": result.model.config.to_dict(),
        "train": config.to_dict(),
        "target": target,
        "levels": series.level_names,
        "codes": [lv.codes for lv in series.levels],
        "scales": result.prep.scales,
        "ext_mean": result.prep.ext_mean,
        "ext_sd": result.prep.ext_sd,
        "external_names": series.external_names,
        "thresholds": [t.cpu().numpy() for t in result.prep.thresholds],
    }, path)


@dataclass
class TrainReport:
    run_id: int
    metrics: dict[str, Any]
    checkpoint: Path
    result: FitResult


def next_issue_hour(twin: Twin, target: str) -> datetime:
    """The hour after the last observation of ``target``: where a forecast of it starts by default."""
    hour = twin.last_observed_hour(target)
    if hour is None:
        twin.store.variable(target)  # raises UnknownVariable
        raise ValidationError(f"no observations of {target!r}", field="target")
    return (hour + pd.Timedelta(hours=1)).to_pydatetime()


def training_window(twin: Twin, target: str, hours: int | None) -> tuple[datetime | None, datetime | None]:
    """``(start, end)`` of the last ``hours`` hours with observations of ``target`` (``None, None``: all of them)."""
    if hours is None:
        return None, None
    if hours < 1:
        raise ValidationError("the training window must be at least one hour", field="window")
    end = next_issue_hour(twin, target)
    return end - timedelta(hours=hours), end


def train_on_twin(twin: Twin, config: TrainConfig, *, target: str = "people", name: str = "tower",
                  settings: ModelSettings | None = None, fractions: tuple[float, float] = (0.7, 0.15),
                  levels: Sequence[str] | None = None, window: int | None = None) -> TrainReport:
    """Train on the twin's data, record the run with its validation and test metrics.

    Parameters
    ----------
    target
        The count variable to forecast.
    levels
        Consecutive levels, bottom to top (default: the lowest level where
        ``target`` is observed and every level above it, see
        :func:`models.graph.target_levels`).
    window
        Train on the last ``window`` hours of ``target`` only (default: all of
        them). The split fractions apply to the window; a forecast needs only
        the recent past, so a bounded window keeps training time independent
        of how many years the twin holds.
    """
    settings = settings or ModelSettings()
    start, end = training_window(twin, target, window)
    graph = build_graph(twin, target=target, levels=levels, start=start, end=end)
    series = series_from_graph(graph)
    split = chronological_split_for(series, config, fractions=fractions)
    params = {"train": config.to_dict(), "target": target, "levels": series.level_names, "window": window,
              "hours": [str(series.times[0]), str(series.times[-1])], "split": {
                  "fractions": list(fractions), "train": len(split.train), "val": len(split.val),
                  "test": len(split.test)}}
    run_id = twin.store.add_model_run(name=name, kind="tower", params=params, data_hash=twin.store.data_hash(),
                                      code_version=code_version(), status="training")
    try:
        result = fit(series, split, config)
        metrics: dict[str, Any] = {
            "best_epoch": result.best_epoch, "best_val_loss": result.best_val, "epochs": len(result.history),
            "history": result.history, "seconds": result.seconds, "samples_per_s": result.samples_per_s,
            "validation": evaluate(result, series, split.val),
        }
        if len(split.test):
            metrics["test"] = evaluate(result, series, split.test)
        # run ids count per database: twins kept side by side in one cluster get their own folders
        path = settings.dir / twin.store.conn.info.dbname / f"run-{run_id}.pt"
        save_checkpoint(path, result, series, config, target=target)
        twin.store.update_model_run(run_id, metrics=metrics, checkpoint=str(path), status="trained")
    except BaseException:
        twin.store.update_model_run(run_id, status="failed")
        raise
    return TrainReport(run_id, metrics, path, result)


def run_target(params: Any) -> str:
    """The variable a model run forecasts (runs recorded before targets were stored forecast ``people``)."""
    params = params if isinstance(params, dict) else json.loads(params or "{}")
    return str(params.get("target", "people"))


def latest_run(twin: Twin, run_id: int | None = None, *, target: str | None = None) -> pd.Series:
    """The model run ``run_id``, or the newest trained tower run with a checkpoint (of ``target`` when given)."""
    runs = twin.store.model_runs()
    if run_id is not None:
        rows = runs[runs["id"] == run_id]
        if rows.empty:
            raise NotFound(f"no model run with id {run_id}")
    else:
        rows = runs[(runs["kind"] == "tower") & (runs["status"] == "trained") & runs["checkpoint"].notna()]
        if target is not None:
            rows = rows[rows["params"].map(run_target) == target]
        if rows.empty:
            wanted = "" if target is None else f" of {target!r}"
            raise NotFound(f"no trained tower run{wanted}: run `ciu train` first")
    row = rows.iloc[-1]
    if not row["checkpoint"] or not Path(row["checkpoint"]).is_file():
        raise NotFound(f"checkpoint of model run {int(row['id'])} not found: {row['checkpoint']}")
    return row


def alerts_from_forecast(frame: pd.DataFrame, *, threshold: float, critical: float) -> pd.DataFrame:
    """One alert per unit and hour where the risk reaches ``threshold`` (the highest-risk horizon wins)."""
    hot = frame[frame["risk"] >= threshold]
    if hot.empty:
        return pd.DataFrame(columns=["code", "kind", "severity", "time", "risk", "threshold", "message"])
    hot = hot.sort_values("risk", ascending=False).drop_duplicates(["code", "time"])
    return pd.DataFrame({
        "code": hot["code"].to_numpy(), "kind": "crowding",
        "severity": np.where(hot["risk"] >= critical, "critical", "warning"),
        "time": pd.to_datetime(hot["time"], utc=True).dt.to_pydatetime(), "risk": hot["risk"].to_numpy(),
        "threshold": threshold,
        "message": [f"{r.level} {r.code}: {r.variable} forecast {r.value:.0f} (risk {r.risk:.2f}) at horizon "
                    f"{r.horizon} h" for r in hot.itertuples()],
    })


def predict_to_store(twin: Twin, *, issued_at: datetime | None = None, horizons: int | None = None,
                     run_id: int | None = None, target: str | None = None,
                     settings: ModelSettings | None = None) -> tuple[int, int, int]:
    """Forecast every unit at every level of a model run, store it, raise alerts.

    The run is ``run_id``, else the newest trained run of ``target`` (of any
    target when ``None``); ``issued_at`` defaults to the hour after the last
    observation of the run's target. Returns ``(run_id, forecasts, alerts)``.
    """
    from models.forecaster import TowerForecaster

    settings = settings or ModelSettings()
    fc = TowerForecaster.load(twin, run_id, target=target)
    issued_at = issued_at if issued_at is not None else next_issue_hour(twin, fc.target)
    frame = fc.forecast(twin, issued_at=issued_at, horizons=horizons or fc.horizons)
    if frame.empty:
        raise ValidationError("the forecast is empty", field="issued_at")
    issued = pd.Timestamp(issued_at)
    issued = issued.tz_localize("UTC") if issued.tzinfo is None else issued
    n = twin.store.write_predictions(frame.assign(issued_at=issued), run_id=fc.run_id)
    alerts = alerts_from_forecast(frame, threshold=settings.alert_threshold, critical=settings.critical_threshold)
    k = twin.store.write_alerts(alerts, run_id=fc.run_id)
    return fc.run_id, n, k
