"""The skill a forecasting model run recorded, read from its metrics as plain tables.

A run of ``ciu train`` (kind ``champion``) keeps in ``ciu.model_run.metrics`` the
scores of every candidate model per split, level, horizon and channel, the
champion, and how each model trained (see :func:`ciu.models.runs.train_on_twin`).
Runs recorded before models were compared (kind ``tower``) scored one model:
their scores sit directly under the level. These functions read both without
the model packages, so that the API can answer from the stored JSON alone.

>>> metrics = {"champion": "tower", "test": {
...     "tower": {"city": {"rmse": [[5.0], [10.0]], "mae": [[6.0], [7.0]], "mape": [[0.1], [None]]}},
...     "seasonal_naive": {"city": {"rmse": [[10.0], [10.0]], "mae": [[8.0], [8.0]], "mape": [[0.2], [0.2]]}}}}
>>> rows = skill_rows(metrics, models=["tower", "seasonal_naive"])
>>> [r["model"] for r in rows]
['tower', 'tower', 'seasonal_naive', 'seasonal_naive']
>>> [(r["horizon"], r["gain_over_seasonal_naive_pct"], r["champion"]) for r in rows[:2]]
[(1, 50.0, True), (2, 0.0, True)]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

#: the kinds of model run that forecast: ``ciu train`` records ``champion``; earlier runs were ``tower``
FORECAST_KINDS = ("champion", "tower")
#: the model every other is measured against
REFERENCE = "seasonal_naive"
#: the model a run recorded before the comparison of models scored
LEGACY_MODEL = "tower"
SPLITS = ("validation", "test")
#: what a run records about the training of each model, as the API shows it
TRAINING_FIELDS = ("seconds", "cpu_seconds", "epochs", "best_epoch", "stopped")


def _legacy(metrics: dict[str, Any]) -> bool:
    """Whether the metrics are those of a run recorded before the comparison (scores directly per level)."""
    part = metrics.get("validation") or {}
    return "champion" not in metrics and bool(part) and all(isinstance(v, dict) and "rmse" in v
                                                           for v in part.values())


def champion(metrics: dict[str, Any]) -> str | None:
    """The model a run publishes: its recorded champion, the tower of an earlier run, or ``None`` (not trained)."""
    if metrics.get("champion"):
        return str(metrics["champion"])
    return LEGACY_MODEL if _legacy(metrics) else None


def split_scores(metrics: dict[str, Any], split: str) -> dict[str, dict[str, dict[str, Any]]]:
    """The scores of one split as ``{model: {level: scores}}`` (empty when the run recorded none)."""
    part = metrics.get(split) or {}
    return {LEGACY_MODEL: part} if part and _legacy(metrics) else part


def skill_rows(metrics: dict[str, Any], *, split: str = "test", models: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One row per model, level and horizon: RMSE, MAE, MAPE (means over channels) and % over seasonal naive.

    The rows of :func:`ciu.models.runs.skill_table`, as plain dictionaries:
    ``model, level, horizon, rmse, mae, mape, gain_over_seasonal_naive_pct,
    champion``. A score recorded as ``null`` (nothing to score, or MAPE where
    the truth is zero) stays ``None``; so does the gain where seasonal naive
    was not scored or scored zero. Models come in the order of ``models``
    (the others after them, by name), levels bottom first when the metrics
    name them, horizons ascending.
    """
    part = split_scores(metrics, split)
    reference = part.get(REFERENCE, {})
    chosen = champion(metrics)
    rows = []
    for model in _ordered(part, models):
        for level in _ordered(part[model], metrics.get("levels") or ()):
            scores = part[model][level]
            ref = reference.get(level, {}).get("rmse") or []
            for h, (rmse, mae, mape) in enumerate(zip(scores["rmse"], scores["mae"], scores["mape"]), start=1):
                r, rr = _mean(rmse), _mean(ref[h - 1] if h <= len(ref) else None)
                rows.append({"model": model, "level": level, "horizon": h, "rmse": r, "mae": _mean(mae),
                             "mape": _mean(mape),
                             "gain_over_seasonal_naive_pct": None if r is None or not rr else 100.0 * (1.0 - r / rr),
                             "champion": model == chosen})
    return rows


def training_rows(metrics: dict[str, Any], *, models: Sequence[str] = ()) -> list[dict[str, Any]]:
    """How long each model trained: ``model`` and the :data:`TRAINING_FIELDS` it recorded (else ``None``).

    Models in the order of ``models``, the others after them by name.
    """
    training = metrics.get("training") or {}
    return [{"model": model, **{f: training[model].get(f) for f in TRAINING_FIELDS}}
            for model in _ordered(training, models) if isinstance(training[model], dict)]


def calibration_rows(metrics: dict[str, Any], split: str) -> list[dict[str, Any]]:
    """The champion's probabilistic scores of one split, one row per level, bottom first (``level`` and its scores)."""
    part = (metrics.get("probabilistic") or {}).get(split) or {}
    return [{"level": level, **part[level]} for level in _ordered(part, metrics.get("levels") or ())]


def _ordered(names: Iterable[str], first: Sequence[str]) -> list[str]:
    """``names`` in the order of ``first``, the others after them by name (stored JSON keeps no order)."""
    rank = {name: i for i, name in enumerate(first)}
    return sorted(names, key=lambda name: (rank.get(name, len(rank)), name))


def _mean(values: Any) -> float | None:
    """The mean of the scores that are not ``None`` (one per channel), or ``None``."""
    vals = [float(v) for v in (values if isinstance(values, list) else [values]) if v is not None]
    return sum(vals) / len(vals) if vals else None
