"""Training and evaluation of the tower, apart from the modules.

Chronological split, early stopping on the validation loss only, seeds, and
metrics on the original scale at every level.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ciu.errors import ValidationError
from models.data import (SEASONAL_LAGS, HierSeries, Split, Tensors, chronological_split, fit_scales, make_batch,
                         to_tensors)
from models.tower import Tower, TowerConfig


@dataclass
class TrainConfig:
    """Hyper-parameters of a training run."""

    history: int = 12
    horizons: int = 3
    hidden: int = 32
    dropout: float = 0.0
    top_down: bool = True
    neighbours: bool = True
    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.0
    patience: int = 5
    seed: int = 0
    level_weight: float = 0.1
    risk_weight: float = 0.1
    risk_quantile: float = 0.9
    max_steps_per_epoch: int | None = None
    max_val_samples: int | None = None
    threads: int = 2
    device: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (same seed → same run on the same machine)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str | None = None) -> torch.device:
    """``name`` when given, else CUDA when present, else CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class Prepared:
    """Scaled tensors and the fitted statistics a checkpoint needs."""

    data: Tensors
    scales: np.ndarray
    ext_mean: np.ndarray
    ext_sd: np.ndarray
    thresholds: list[Tensor]  # per level (N_l,) risk thresholds, scaled, on the channel sum


def prepare(series: HierSeries, *, fit_stop: int, config: TrainConfig, device: torch.device,
            scales: np.ndarray | None = None, ext_mean: np.ndarray | None = None, ext_sd: np.ndarray | None = None,
            thresholds: list[np.ndarray] | None = None) -> Prepared:
    """Fit scalers on hours ``< fit_stop`` (unless given) and build the tensors."""
    if fit_stop <= 0:
        raise ValidationError("no hours to fit the scalers on", field="fit_stop")
    scales = fit_scales(series, stop=fit_stop) if scales is None else scales
    if ext_mean is None or ext_sd is None:
        ext_mean = np.nanmean(series.external[:fit_stop], axis=0)
        sd = np.nanstd(series.external[:fit_stop], axis=0)
        ext_sd = np.where(sd > 0, sd, 1.0)
    ext = (series.external - ext_mean) / ext_sd
    scaled = HierSeries(series.levels, series.values, series.times, series.channels, ext, series.external_names,
                        series.covariates, series.mask)
    data = to_tensors(scaled, scales=scales, history=config.history, horizons=config.horizons, device=device)
    if thresholds is None:
        thresholds = []
        m = series.mask[:fit_stop]  # type: ignore[index]
        for v in data.values:
            tot = v[:fit_stop][torch.as_tensor(m, device=v.device)].sum(-1)
            thresholds.append(torch.quantile(tot.cpu(), config.risk_quantile, dim=0).numpy()
                              if len(tot) else np.zeros(v.shape[1]))
    thr = [torch.as_tensor(np.asarray(t), dtype=torch.float32, device=device) for t in thresholds]
    return Prepared(data, scales, np.asarray(ext_mean), np.asarray(ext_sd), thr)


def build_model(prep: Prepared, series: HierSeries, config: TrainConfig) -> Tower:
    """A tower sized for ``series``."""
    c = len(series.channels)
    k = 0 if series.covariates is None else series.covariates.shape[2]
    e = series.external.shape[1]
    aux = tuple(len(SEASONAL_LAGS) * config.horizons * c + config.horizons * k + lv.static.shape[1]
                for lv in series.levels)
    tower_cfg = TowerConfig(levels=tuple(series.level_names), seq_channels=c + 4, aux_channels=aux,
                            ext_channels=config.horizons * e, out_channels=c, horizons=config.horizons,
                            hidden=config.hidden, dropout=config.dropout, top_down=config.top_down,
                            neighbours=config.neighbours)
    return Tower(tower_cfg)


def loss_fn(model: Tower, prep: Prepared, ts: Tensor, config: TrainConfig, *, risk: bool = True) -> Tensor:
    """Multi-level MSE on scaled values plus (with ``risk``) the risk BCE."""
    data = prep.data
    batch = make_batch(data, ts)
    out = model(batch.seq, batch.aux, batch.ext, data.parent, data.neighbours, data.scales)
    n = len(out.density)
    loss = F.mse_loss(out.density[0], batch.target[0])
    if n > 1:
        upper = sum(F.mse_loss(out.density[i], batch.target[i]) for i in range(1, n))
        loss = loss + config.level_weight * upper / (n - 1)
    if risk and config.risk_weight > 0:
        bce = sum(F.binary_cross_entropy(out.risk[i], (batch.target[i].sum(-1) > prep.thresholds[i][None, :, None])
                                          .float()) for i in range(n))
        loss = loss + config.risk_weight * bce / n
    return loss


@torch.no_grad()
def predict(model: Tower, prep: Prepared, ts: np.ndarray, *, batch_size: int = 64,
            bottom_mask: Tensor | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Forecasts on the original scale ``(B, N_l, H, C)`` and risk ``(B, N_l, H)`` for every level."""
    model.eval()
    dens: list[list[np.ndarray]] = [[] for _ in prep.data.values]
    risks: list[list[np.ndarray]] = [[] for _ in prep.data.values]
    scales = prep.data.scales
    for i in range(0, len(ts), batch_size):
        batch = make_batch(prep.data, ts[i:i + batch_size])
        out = model(batch.seq, batch.aux, batch.ext, prep.data.parent, prep.data.neighbours, scales,
                    bottom_mask=bottom_mask)
        for j, (d, r) in enumerate(zip(out.density, out.risk)):
            dens[j].append((d * scales[j]).cpu().numpy())
            risks[j].append(r.cpu().numpy())
    return [np.concatenate(d) for d in dens], [np.concatenate(r) for r in risks]


def truth(prep: Prepared, ts: np.ndarray) -> list[np.ndarray]:
    """Targets on the original scale for issue hours ``ts``: per level ``(B, N_l, H, C)``."""
    batch = make_batch(prep.data, ts)
    return [(t * prep.data.scales[i]).cpu().numpy() for i, t in enumerate(batch.target)]


def metrics(pred: np.ndarray, true: np.ndarray, *, nonzero_only: bool = False, mape_min: float = 0.0) -> dict[str, Any]:
    """RMSE, MAE and MAPE per horizon and channel (arrays ``(B, N, H, C)``).

    ``nonzero_only`` takes every metric where the truth is not zero; MAPE is
    always taken where the truth exceeds ``mape_min`` (and is not zero).
    """
    out: dict[str, Any] = {"rmse": [], "mae": [], "mape": []}
    for h in range(pred.shape[2]):
        row: dict[str, list[float]] = {"rmse": [], "mae": [], "mape": []}
        for c in range(pred.shape[3]):
            p, t = pred[:, :, h, c].ravel(), true[:, :, h, c].ravel()
            keep = t != 0 if nonzero_only else np.ones_like(t, dtype=bool)
            err = p[keep] - t[keep]
            row["rmse"].append(float(np.sqrt(np.mean(err ** 2))) if keep.any() else float("nan"))
            row["mae"].append(float(np.mean(np.abs(err))) if keep.any() else float("nan"))
            mk = (t > mape_min) & (t != 0)
            row["mape"].append(float(np.mean(np.abs(p[mk] - t[mk]) / t[mk])) if mk.any() else float("nan"))
        for k in row:
            out[k].append(row[k])
    # over all channels and horizons
    p, t = pred.ravel(), true.ravel()
    keep = t != 0 if nonzero_only else np.ones_like(t, dtype=bool)
    out["rmse_all"] = float(np.sqrt(np.mean((p[keep] - t[keep]) ** 2))) if keep.any() else float("nan")
    mk = (t > mape_min) & (t != 0)
    out["mape_all"] = float(np.mean(np.abs(p[mk] - t[mk]) / t[mk])) if mk.any() else float("nan")
    return out


def level_metrics(preds: list[np.ndarray], trues: list[np.ndarray], names: list[str], **kw: Any) -> dict[str, Any]:
    return {name: metrics(p, t, **kw) for name, p, t in zip(names, preds, trues)}


@dataclass
class FitResult:
    """A trained model and how it got there."""

    model: Tower
    prep: Prepared
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val: float = float("inf")
    seconds: float = 0.0
    samples_per_s: float = 0.0


def validation_hours(split: Split, config: TrainConfig) -> np.ndarray:
    """The validation issue hours early stopping looks at (evenly thinned to ``max_val_samples``)."""
    val_ts = split.val
    if config.max_val_samples is not None and len(val_ts) > config.max_val_samples:
        val_ts = val_ts[np.linspace(0, len(val_ts) - 1, config.max_val_samples).astype(int)]
    return val_ts


@torch.no_grad()
def validation_loss(model: Tower, prep: Prepared, ts: np.ndarray, config: TrainConfig) -> float:
    """The density loss (every level, no risk term) over the issue hours ``ts``: what early stopping watches."""
    model.eval()
    total, n = 0.0, 0
    for i in range(0, len(ts), 256):
        chunk = torch.as_tensor(ts[i:i + 256])
        total += float(loss_fn(model, prep, chunk, config, risk=False)) * len(chunk)
        n += len(chunk)
    return total / max(n, 1)


def fit(series: HierSeries, split: Split, config: TrainConfig, *, fit_stop: int | None = None,
        log: Callable[[dict[str, float]], None] | None = None) -> FitResult:
    """Train a tower; keep the weights of the epoch with the lowest validation loss.

    The scalers are fitted on the hours before ``fit_stop`` (default: the first
    validation hour); the test issue hours are never looked at.
    """
    if len(split.train) == 0 or len(split.val) == 0:
        raise ValidationError("the split leaves no training or no validation samples", field="split")
    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    device = pick_device(config.device)
    fit_stop = int(split.val.min()) if fit_stop is None else fit_stop
    prep = prepare(series, fit_stop=fit_stop, config=config, device=device)
    model = build_model(prep, series, config).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    val_ts = validation_hours(split, config)
    result = FitResult(model, prep)
    best_state = copy.deepcopy(model.state_dict())
    bad = 0
    t0 = time.perf_counter()
    seen = 0
    for epoch in range(config.epochs):
        model.train()
        order = split.train[torch.randperm(len(split.train), generator=gen).numpy()]
        steps = range(0, len(order), config.batch_size)
        if config.max_steps_per_epoch is not None:
            steps = steps[: config.max_steps_per_epoch]
        run = 0.0
        for s in steps:
            ts = torch.as_tensor(order[s:s + config.batch_size])
            opt.zero_grad()
            loss = loss_fn(model, prep, ts, config)
            loss.backward()
            opt.step()
            run += float(loss.detach())
            seen += len(ts)
        val = validation_loss(model, prep, val_ts, config)
        rec = {"epoch": epoch, "train_loss": run / max(len(steps), 1), "val_loss": val}
        result.history.append(rec)
        if log is not None:
            log(rec)
        if val < result.best_val - 1e-7:
            result.best_val, result.best_epoch, bad = val, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if bad >= config.patience:
                break
    result.seconds = time.perf_counter() - t0
    result.samples_per_s = seen / max(result.seconds, 1e-9)
    model.load_state_dict(best_state)
    return result


def evaluate(result: FitResult, series: HierSeries, ts: np.ndarray, **kw: Any) -> dict[str, Any]:
    """Metrics at every level for the issue hours ``ts``."""
    preds, _ = predict(result.model, result.prep, ts)
    return level_metrics(preds, truth(result.prep, ts), series.level_names, **kw)


def chronological_split_for(series: HierSeries, config: TrainConfig, *,
                            fractions: tuple[float, float] = (0.7, 0.15)) -> Split:
    """:func:`models.data.chronological_split` with the window of ``config``."""
    return chronological_split(series, history=config.history, horizons=config.horizons, fractions=fractions)
