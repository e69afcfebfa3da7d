"""Training the neural forecasters (the tower and the per-unit LSTM), apart from the modules.

Full passes over the training windows, every core, a warm-up + cosine
learning-rate schedule, early stopping on the validation loss with the best
weights kept, an optional time budget that stops cleanly, and a progress bar
(epoch, step, train and validation loss, elapsed, ETA) on every run. The
loss is a masked mean squared error of per-unit standardised values at every
level: a step that a unit misses is dropped for that unit only, and units
weigh in by their spread (``loss_power``), so the loss tracks the error on the
original scale that the metrics report.
"""

from __future__ import annotations

import copy
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ciu.errors import ValidationError
from ciu.models.data import Split
from ciu.models.inputs import Inputs, TorchInputs
from ciu.models.tower import Tower, TowerConfig


@dataclass
class TrainConfig:
    """Hyper-parameters of a neural model and of its training run (all recorded with each run)."""

    history: int = 12
    horizons: int = 3
    hidden: int = 64
    layers: int = 2
    lstm_hidden: int = 16
    lstm_window: int = 6
    unit_embedding: int = 16
    time_embedding: int = 8
    dropout: float = 0.1
    use_lstm: bool = True
    use_unit_embedding: bool = True
    use_time_embedding: bool = True
    use_seasonal_lags: bool = True
    top_down: bool = True
    neighbours: bool = True
    base: str | None = "ridge"
    #: announced event attendance counted into the forecasts by the event rule, not learned
    #: (:class:`ciu.models.baselines.Announced`); ``False`` leaves it to the models as an input
    announced: bool = True
    epochs: int = 30
    batch_size: int | None = None
    batch_units: int = 4096
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: float = 0.05
    patience: int = 5
    seed: int = 0
    level_weight: float = 0.1
    loss_power: float = 2.0
    max_samples_per_epoch: int | None = None
    max_val_samples: int | None = 512
    budget_minutes: float | None = None
    threads: int | None = None
    device: str | None = None
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


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


def use_threads(threads: int | None) -> int:
    """Let torch use ``threads`` (default: every core) and return the number."""
    n = threads or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


def build_tower(inputs: Inputs, config: TrainConfig, *, levels: int | None = None, residual: bool = False) -> Tower:
    """A tower sized for ``inputs`` (its first ``levels`` levels; 1 = the bottom level alone); ``residual``: one
    that forecasts the correction to a base forecast, starting at none."""
    s = inputs.series
    n = inputs.n_levels if levels is None else levels
    shared = {f.name: getattr(config, f.name) for f in fields(TowerConfig) if f.name in TrainConfig.__dataclass_fields__}
    cfg = TowerConfig(**{
        **shared, "levels": tuple(s.level_names[:n]), "units": tuple(lv.n for lv in s.levels[:n]),
        "channels": inputs.channels, "lags": len(inputs.seasonal_days),
        "covariates": 0 if inputs.cov is None else inputs.cov[0].shape[2],
        "static": tuple(lv.static.shape[1] for lv in s.levels[:n]), "external": inputs.external.shape[1],
        "slots_per_day": s.steps_per_day, "lstm_window": min(config.lstm_window, config.history),
        "top_down": config.top_down and n > 1, "residual": residual,
        "nonnegative": bool(np.nanmin(s.values) >= 0) if np.isfinite(s.values).any() else True})
    return Tower(cfg)


def optimizer(model: Tower, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, fused into one kernel where the build supports it (a tenth faster per step on a CPU)."""
    try:
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def unit_weights(tin: TorchInputs, power: float) -> list[Tensor]:
    """Per level ``(N_l, C)``: how much each unit weighs in the loss, ``(sd / mean sd) ** power``."""
    return [(sd / sd.mean()).pow(power) for sd in tin.sd]


def batch_size_for(inputs: Inputs, config: TrainConfig) -> int:
    """Issue steps per step: ``batch_size``, or as many as make about ``batch_units`` bottom units."""
    if config.batch_size:
        return config.batch_size
    return int(min(64, max(1, config.batch_units // inputs.z[0].shape[1])))


def forward(model: Tower, tin: TorchInputs, ts: Tensor | np.ndarray, *, bottom_mask: Tensor | None = None,
            base: Tensor | None = None):
    """The batch of issue steps ``ts`` and the model's output; ``base``: their base forecasts ``(B, N0, H, C)``."""
    n = len(model.config.levels)
    batch = tin.batch(ts, levels=n)
    out = model(batch, static=tin.static[:n], parent=tin.parent[:n - 1], neighbours=tin.neighbours[:n],
                mean=tin.mean[:n], sd=tin.sd[:n], bottom_mask=bottom_mask, base=base)
    return batch, out


def loss_fn(model: Tower, tin: TorchInputs, ts: Tensor | np.ndarray, config: TrainConfig,
            weights: list[Tensor], base: Tensor | None = None) -> Tensor:
    """Masked, unit-weighted MSE of standardised values: bottom level + ``level_weight`` × mean of the others."""
    batch, out = forward(model, tin, ts, base=base)
    terms = []
    for i, (pred, true, seen) in enumerate(zip(out.z, batch.target, batch.seen)):
        w = seen * weights[i][None, :, None]
        terms.append((w * (pred - true) ** 2).sum() / w.sum().clamp_min(1e-9))
    loss = terms[0]
    if len(terms) > 1:
        loss = loss + config.level_weight * sum(terms[1:]) / (len(terms) - 1)
    return loss


@torch.no_grad()
def predict(model: Tower, tin: TorchInputs, ts: np.ndarray, *, batch_size: int = 64,
            bottom_mask: Tensor | None = None, levels: bool = False,
            base: Tensor | None = None) -> np.ndarray | list[np.ndarray]:
    """Forecasts on the original scale: the bottom level ``(B, N0, H, C)``, or every level with ``levels``.

    ``base``: the base forecasts of the issue steps ``ts`` (standardised, ``(B, N0, H, C)``) of a residual model.
    """
    model.eval()
    parts: list[list[np.ndarray]] = [[] for _ in model.config.levels]
    for i in range(0, len(ts), batch_size):
        _, out = forward(model, tin, ts[i:i + batch_size], bottom_mask=bottom_mask,
                         base=None if base is None else base[i:i + batch_size])
        for j, v in enumerate(out.value):
            parts[j].append(v.cpu().numpy())
    per_level = [np.concatenate(p) if p else np.zeros((0,)) for p in parts]
    return per_level if levels else per_level[0]


@torch.no_grad()
def validation_loss(model: Tower, tin: TorchInputs, ts: np.ndarray, config: TrainConfig,
                    weights: list[Tensor], *, batch_size: int = 64, base: Tensor | None = None) -> float:
    """The training loss over the issue steps ``ts`` (no dropout): what early stopping watches."""
    model.eval()
    total, n = 0.0, 0
    for i in range(0, len(ts), batch_size):
        chunk = ts[i:i + batch_size]
        total += float(loss_fn(model, tin, chunk, config, weights,
                               None if base is None else base[i:i + batch_size])) * len(chunk)
        n += len(chunk)
    return total / max(n, 1)


def thin(ts: np.ndarray, most: int | None) -> np.ndarray:
    """At most ``most`` of the issue steps ``ts``, evenly spread (all of them with ``None``)."""
    if most is None or len(ts) <= most:
        return ts
    return ts[np.linspace(0, len(ts) - 1, most).astype(int)]


@dataclass
class FitResult:
    """A trained neural model and how it got there."""

    model: Tower
    tin: TorchInputs
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val: float = float("inf")
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    samples_seen: int = 0
    stopped: str = "epochs"
    train_windows: int = 0
    base_val: float | None = None

    def info(self) -> dict[str, Any]:
        return {"best_epoch": self.best_epoch, "best_val_loss": self.best_val, "epochs": len(self.history),
                "passes": self.samples_seen / max(1, self.train_windows),
                "seconds": self.seconds, "cpu_seconds": self.cpu_seconds, "samples_seen": self.samples_seen,
                "samples_per_s": self.samples_seen / max(self.seconds, 1e-9), "stopped": self.stopped,
                "base_val_loss": self.base_val, "history": self.history}


def progress_bar(total: int, *, desc: str, unit: str, enabled: bool = True) -> tqdm:
    """A progress bar on stderr with elapsed time and ETA (redrawn every second on a terminal, every 30 s in a log)."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False,
                mininterval=1.0 if sys.stderr.isatty() else 30.0, disable=not enabled)


class _Schedule:
    """Linear warm-up then cosine decay to 2 % over a total that a time budget may shorten."""

    def __init__(self, total: int, warmup: float) -> None:
        self.total = max(1, total)
        self.warmup = warmup

    @property
    def warm(self) -> int:
        return max(1, int(self.warmup * self.total))

    def __call__(self, step: int) -> float:
        if step < self.warm:
            return (step + 1) / self.warm
        frac = min(1.0, (step - self.warm) / max(1, self.total - self.warm))
        return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * frac))


#: the validation checks a budgeted run plans at least, when its full passes do not fit
CHECKS = 10
#: steps timed before a budgeted run plans
PROBE_STEPS = 20
#: the share of its budget after which a budgeted run with a ``give_up`` loss it has not beaten stops
DECIDE_AT = 0.5
#: the share of its budget before which a budgeted run does not stop for patience: early on, under a high learning
#: rate, validation loss wanders; the gains come as the rate decays (TaxiNYC: the seeds whose towers stopped at
#: 60 % and 45 % of their budget had champions of test RMSE 41.3 and 42.0, the seed whose tower ran on 38.8)
PATIENCE_AFTER = 0.75


@dataclass
class Plan:
    """How many rounds (epochs) of how many steps a run takes; each round ends with a validation check.

    Without a time budget a round is one pass over the training windows (or
    ``max_samples_per_epoch`` of them). With one, the run times its first
    steps and plans to fit: full passes while they fit, else shorter rounds
    (up to :data:`CHECKS` validation checks in the budget) over the same
    shuffled stream of training windows. After every round it plans again on
    what the steps and checks really took (the first steps are the slowest),
    so the run ends close to its budget instead of early.
    """

    rounds: int
    steps: int
    full: int = 0  # the steps of one full round

    def __post_init__(self) -> None:
        self.full = self.full or self.steps

    @property
    def total(self) -> int:
        return self.rounds * self.steps

    def fit_budget(self, budget: float, spent: float, per_step: float, per_check: float) -> None:
        """Re-plan after ``spent`` seconds so that the whole run takes about ``budget`` seconds."""
        if self.rounds * (self.steps * per_step + per_check) <= budget - spent:
            return
        left = max(0.0, budget - spent)
        checks = min(self.rounds, CHECKS)
        while checks > 1 and left < checks * (per_check + per_step):
            checks -= 1
        steps = int((left - checks * per_check) / (checks * per_step)) if per_step > 0 else self.steps
        steps = max(1, min(self.steps, steps))
        if steps == self.steps:  # full passes fit more often than the minimum number of checks
            checks = max(1, int(left // (steps * per_step + per_check)))
        self.rounds, self.steps = max(1, min(self.rounds, checks)), steps

    def stretch(self, left: float, done: int, most: int, per_step: float, per_check: float) -> None:
        """Re-plan the rounds after the ``done`` first so that they take about ``left`` seconds.

        Full rounds: as many as fit, up to ``most`` rounds in all; shortened
        rounds: the same number, each as long as fits (at most a full one).
        """
        if per_step <= 0:
            return
        left *= 0.97
        if self.steps >= self.full:
            self.rounds = done + max(0, min(most - done, int(left // (self.full * per_step + per_check))))
        elif self.rounds > done:
            rounds_left = self.rounds - done
            steps = int((left - rounds_left * per_check) / (rounds_left * per_step))
            self.steps = max(1, min(self.full, steps))


class _Stream:
    """An endless stream of training issue steps: one shuffled pass after another."""

    def __init__(self, ts: np.ndarray, rng: np.random.Generator) -> None:
        self.ts, self.rng = ts, rng
        self.order, self.pos = rng.permutation(ts), 0

    def take(self, n: int) -> np.ndarray:
        if self.pos >= len(self.order):
            self.order, self.pos = self.rng.permutation(self.ts), 0
        out = self.order[self.pos:self.pos + n]
        self.pos += len(out)
        return out


def fit(inputs: Inputs, split: Split, config: TrainConfig, *, name: str = "tower", levels: int | None = None,
        base: Callable[[np.ndarray], np.ndarray] | None = None, give_up: float | None = None,
        log: Callable[[dict[str, float]], None] | None = None) -> FitResult:
    """Train a tower on ``inputs``; keep the weights of the round with the lowest validation loss.

    ``levels=1`` trains the bottom level alone (the per-unit model). ``base``
    gives the base forecasts of issue steps (standardised, ``(B, N0, H, C)``)
    that a residual tower corrects; they are computed once for the training
    and validation steps, and the base alone is the first checkpoint (the
    training keeps a round only where it beats the base on validation). The test
    issue steps are never looked at. With ``config.budget_minutes`` the run
    times its first steps and plans its rounds to fit the budget (:class:`Plan`),
    shortens the learning-rate schedule to them, and stops cleanly (best
    weights kept) if the budget runs out mid-round. A budgeted run whose best
    validation loss is still at or above ``give_up`` once :data:`DECIDE_AT` of
    its budget is spent stops there (``stopped="give_up"``), leaving the rest of
    the budget to another try.
    """
    if len(split.train) == 0 or len(split.val) == 0:
        raise ValidationError("the split leaves no training or no validation samples", field="split")
    use_threads(config.threads)
    seed_everything(config.seed)
    device = pick_device(config.device)
    tin = inputs.tensors(device)
    model = build_tower(inputs, config, levels=levels, residual=base is not None).to(device)
    weights = unit_weights(tin, config.loss_power)
    opt = optimizer(model, config)
    bs = batch_size_for(inputs, config)
    per_epoch = len(split.train) if config.max_samples_per_epoch is None else min(
        len(split.train), config.max_samples_per_epoch)
    plan = Plan(config.epochs, max(1, math.ceil(per_epoch / bs)))
    schedule = _Schedule(plan.total, config.warmup)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    stream = _Stream(split.train, np.random.default_rng(config.seed))
    val_ts = thin(split.val, config.max_val_samples)
    result = FitResult(model, tin, train_windows=len(split.train))
    best_state = copy.deepcopy(model.state_dict())
    budget = None if config.budget_minutes is None else 60.0 * config.budget_minutes
    t0, c0 = time.perf_counter(), time.process_time()
    base_of = _base_table(base, np.concatenate([split.train, val_ts]), device) if base is not None else None
    val_base = None if base_of is None else base_of(val_ts)
    if val_base is not None:
        result.best_val = result.base_val = validation_loss(model, tin, val_ts, config, weights, base=val_base)
    bad, done, round_ = 0, 0, 0
    step_seconds = check_seconds = 0.0
    bar = progress_bar(plan.total, desc=name, unit="step", enabled=config.progress)
    try:
        while round_ < plan.rounds:
            model.train()
            run, steps = 0.0, 0
            started = time.perf_counter()
            while steps < plan.steps:
                ts = stream.take(bs)
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model, tin, ts, config, weights, None if base_of is None else base_of(ts))
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                opt.step()
                sched.step()
                run += float(loss.detach())
                steps += 1
                done += 1
                result.samples_seen += len(ts)
                bar.update(1)
                if budget is not None and done == min(PROBE_STEPS, plan.total):
                    spent = time.perf_counter() - t0
                    per_step = spent / done
                    plan.fit_budget(budget, spent, per_step, per_step * len(val_ts) / bs / 3)
                    schedule.total = max(plan.total, done)
                    bar.total = plan.total
                    bar.refresh()
                if budget is not None and time.perf_counter() - t0 > budget:
                    break
            checked = time.perf_counter()
            step_seconds += checked - started
            val = validation_loss(model, tin, val_ts, config, weights, base=val_base)
            check_seconds += time.perf_counter() - checked
            rec = {"epoch": round_, "steps": steps, "train_loss": run / max(steps, 1), "val_loss": val,
                   "lr": float(opt.param_groups[0]["lr"]), "seconds": time.perf_counter() - t0}
            result.history.append(rec)
            if log is not None:
                log(rec)
            if val < result.best_val - 1e-7:
                result.best_val, result.best_epoch, bad = val, round_, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad += 1
            round_ += 1
            bar.set_postfix_str(f"epoch {round_}/{plan.rounds} train {rec['train_loss']:.4f} val {val:.4f}"
                                f" best {result.best_val:.4f}@{result.best_epoch + 1}")
            if (give_up is not None and budget is not None and result.best_val >= give_up
                    and time.perf_counter() - t0 >= DECIDE_AT * budget):
                result.stopped = "give_up"
                break
            if budget is not None and time.perf_counter() - t0 > budget:
                result.stopped = "budget"
                break
            if bad >= config.patience and (budget is None or time.perf_counter() - t0 >= PATIENCE_AFTER * budget):
                result.stopped = "patience"
                break
            if budget is not None:
                plan.stretch(budget - (time.perf_counter() - t0), round_, config.epochs, step_seconds / done,
                             check_seconds / round_)
                schedule.total = bar.total = done + max(0, plan.rounds - round_) * plan.steps
                bar.refresh()
        else:
            full = plan.rounds == config.epochs and plan.steps * bs >= per_epoch
            result.stopped = "epochs" if full else "budget"
    finally:
        bar.close()
    result.seconds = time.perf_counter() - t0
    result.cpu_seconds = time.process_time() - c0
    model.load_state_dict(best_state)
    model.eval()
    if config.progress:
        print(f"{name}: {len(result.history)} epochs of {plan.steps} steps ({result.info()['passes']:.1f} passes over"
              f" the {len(split.train):,} training windows) in {result.seconds:.0f} s ({result.cpu_seconds / 60:.1f}"
              f" CPU min), best validation loss {result.best_val:.4f} at epoch {result.best_epoch + 1}"
              + ("" if result.base_val is None else f" (the base alone: {result.base_val:.4f})")
              + (f", stopped by {result.stopped}" if result.stopped != "give_up" else
                 f", stopped at {DECIDE_AT:.0%} of its budget: still at or above {give_up:.4f}"),
              file=sys.stderr, flush=True)
    return result


def base_loss(inputs: Inputs, split: Split, config: TrainConfig, base: Callable[[np.ndarray], np.ndarray], *,
              levels: int | None = None) -> float:
    """The validation loss of the ``base`` forecasts alone (what :func:`fit` watches, on the same steps)."""
    device = pick_device(config.device)
    tin = inputs.tensors(device)
    model = build_tower(inputs, config, levels=levels, residual=True).to(device)  # untrained: the base itself
    val_ts = thin(split.val, config.max_val_samples)
    return validation_loss(model, tin, val_ts, config, unit_weights(tin, config.loss_power),
                           base=_base_table(base, val_ts, device)(val_ts))


def _base_table(base: Callable[[np.ndarray], np.ndarray], ts: np.ndarray,
                device: torch.device) -> Callable[[np.ndarray], Tensor]:
    """The base forecasts of issue steps ``ts``, computed once; returns a lookup by issue step."""
    ts = np.unique(ts)
    table = torch.as_tensor(np.ascontiguousarray(base(ts), dtype=np.float32), device=device)
    row = np.full(int(ts.max()) + 1, -1, dtype=np.int64)
    row[ts] = np.arange(len(ts))
    return lambda steps: table[torch.as_tensor(row[np.asarray(steps)], device=device)]
