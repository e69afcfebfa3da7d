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


def _by_target(per_issue: np.ndarray, ts: np.ndarray, fill: Any) -> tuple[np.ndarray, int]:
    """``(B, N, H, C)`` values of issue steps ``ts`` laid out by target step ``t + h``: ``(T, N, C, H)``, and ``T``'s
    first step. Each target step gets each horizon's value once (``fill`` where an issue step is missing)."""
    b, n, h, c = per_issue.shape
    first = int(ts.min()) + 1
    out = np.full((int(ts.max()) + h + 1 - first, n, c, h), fill, dtype=per_issue.dtype)
    for k in range(h):
        out[np.asarray(ts) + k + 1 - first, :, :, k] = per_issue[:, :, k, :]
    return out, first


def _episodes(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of consecutive true steps of a ``(T, N, C)`` mask: their ``(unit, channel)`` rows, starts and ends."""
    t, n, c = mask.shape
    flat = np.moveaxis(mask, 0, -1).reshape(n * c, t).astype(np.int8)
    edges = np.diff(np.pad(flat, ((0, 0), (1, 1))), axis=1)
    starts, ends = np.argwhere(edges == 1), np.argwhere(edges == -1)  # row-major: paired run by run
    return starts[:, 0], starts[:, 1], ends[:, 1]


def _overlaps(mask: np.ndarray, other: np.ndarray) -> tuple[int, int]:
    """How many runs of ``mask`` (see :func:`_episodes`) hold at least one true step of ``other``, and how many runs."""
    rows, starts, ends = _episodes(mask)
    t, n, c = other.shape
    flat = np.moveaxis(other, 0, -1).reshape(n * c, t).astype(np.int64)
    cum = np.concatenate([np.zeros((n * c, 1), np.int64), np.cumsum(flat, axis=1)], axis=1)
    return int(((cum[rows, ends] - cum[rows, starts]) > 0).sum()), len(rows)


def _ratio(a: int, b: int) -> float:
    return float(a / b) if b else float("nan")


def alert_skill(risk: np.ndarray, truth: np.ndarray, threshold: np.ndarray, ts: np.ndarray, *, level: float,
                events: np.ndarray | None = None) -> dict[str, Any]:
    """How well alerts (risk at or above ``level``) foretell what happened, at one level.

    ``risk`` and ``truth`` are ``(B, N, H, C)`` of issue steps ``ts``;
    ``threshold`` ``(N, C)``. As the alert rule raises them, a unit gets one
    alert per target step, from its most alarmed horizon (any horizon at or
    above ``level``). They are compared, per unit and target step, with the
    steps whose truth exceeded the threshold (precision: alerts that were right;
    recall: exceedances alerted) and, where ``events`` ``(T, N)`` (known events
    at or below each unit, indexed like the series) are given, with the events,
    per step and per episode (a run of consecutive steps): an event episode is
    caught when an alert falls in it; an alert episode is right when it meets an
    event.
    """
    ts = np.asarray(ts)
    alarmed, first = _by_target((risk >= level).astype(np.int8), ts, 0)
    alert = alarmed.any(axis=-1).astype(bool)
    seen_t, _ = _by_target(truth, ts, np.nan)
    true = np.where(np.isnan(seen_t), -np.inf, seen_t).max(axis=-1)  # every horizon holds the same truth
    seen = np.isfinite(true)
    exceeded = seen & (true > threshold[None])
    alert &= seen
    hit = int((alert & exceeded).sum())
    out: dict[str, Any] = {"level": level, "alerts": int(alert.sum()), "exceedances": int(exceeded.sum()),
                           "precision": _ratio(hit, int(alert.sum())), "recall": _ratio(hit, int(exceeded.sum()))}
    if events is not None:
        ev = np.asarray(events, dtype=bool)[first:first + alert.shape[0]][:, :, None] & seen
        caught, n_events = _overlaps(ev, alert)
        right, n_alerts = _overlaps(alert, ev)
        out["events"] = {"steps": int(ev.sum()), "precision": _ratio(int((alert & ev).sum()), int(alert.sum())),
                         "recall": _ratio(int((alert & ev).sum()), int(ev.sum())),
                         "episodes": n_events, "episodes_caught": caught, "episode_recall": _ratio(caught, n_events),
                         "alert_episodes": n_alerts, "alert_episodes_right": right,
                         "episode_precision": _ratio(right, n_alerts)}
    return out
