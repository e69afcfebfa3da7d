"""Point and probabilistic scores on the original scale; missing truth (NaN) is never scored."""

from __future__ import annotations

from typing import Any

import numpy as np


def _err(p: np.ndarray, t: np.ndarray, keep: np.ndarray) -> tuple[float, float, int]:
    if not keep.any():
        return float("nan"), float("nan"), 0
    e = p[keep] - t[keep]
    return float(np.sqrt(np.mean(e ** 2))), float(np.mean(np.abs(e))), int(keep.sum())


def _mape(p: np.ndarray, t: np.ndarray, keep: np.ndarray, mape_min: float) -> float:
    mk = keep & (t > mape_min) & (t != 0)
    return float(np.mean(np.abs(p[mk] - t[mk]) / t[mk])) if mk.any() else float("nan")


def metrics(pred: np.ndarray, true: np.ndarray, *, nonzero_only: bool = False, mape_min: float = 0.0) -> dict[str, Any]:
    """RMSE, MAE and MAPE per horizon and channel of arrays ``(B, N, H, C)``, and over all of them.

    Entries where the truth is NaN (not observed) are left out; ``nonzero_only``
    also leaves out those where the truth is zero (the masked protocol of
    traffic benchmarks). MAPE is taken where the truth exceeds ``mape_min``.
    """
    out: dict[str, Any] = {"rmse": [], "mae": [], "mape": []}
    for h in range(pred.shape[2]):
        row: dict[str, list[float]] = {"rmse": [], "mae": [], "mape": []}
        for c in range(pred.shape[3]):
            p, t = pred[:, :, h, c].ravel(), true[:, :, h, c].ravel()
            keep = ~np.isnan(t) & ((t != 0) if nonzero_only else True)
            rmse, mae, _ = _err(p, t, keep)
            row["rmse"].append(rmse)
            row["mae"].append(mae)
            row["mape"].append(_mape(p, t, keep, mape_min))
        for k in row:
            out[k].append(row[k])
    p, t = pred.ravel(), true.ravel()
    keep = ~np.isnan(t) & ((t != 0) if nonzero_only else True)
    out["rmse_all"], out["mae_all"], out["n"] = _err(p, t, keep)
    out["mape_all"] = _mape(p, t, keep, mape_min)
    return out


def level_metrics(preds: list[np.ndarray], trues: list[np.ndarray], names: list[str], **kw: Any) -> dict[str, Any]:
    """:func:`metrics` at every level."""
    return {name: metrics(p, t, **kw) for name, p, t in zip(names, preds, trues)}


def coverage(lower: np.ndarray, upper: np.ndarray, true: np.ndarray) -> float:
    """Share of observed truths inside ``[lower, upper]``."""
    keep = ~np.isnan(true)
    return float(np.mean((true[keep] >= lower[keep]) & (true[keep] <= upper[keep]))) if keep.any() else float("nan")


def brier(prob: np.ndarray, event: np.ndarray, keep: np.ndarray) -> float:
    """Mean squared difference between probabilities and 0/1 outcomes where ``keep``."""
    return float(np.mean((prob[keep] - event[keep]) ** 2)) if keep.any() else float("nan")


def skill(rmse: float, reference: float) -> float:
    """Per cent by which ``rmse`` is below ``reference`` (positive: better)."""
    return float(100.0 * (1.0 - rmse / reference)) if reference and np.isfinite(reference) else float("nan")
