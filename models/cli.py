"""``ciu train``, ``ciu evaluate``, ``ciu predict``: the tower from the command line."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Optional

import typer


def _twin():
    from ciu.settings import DatabaseSettings
    from ciu.twin import Twin

    return Twin.connect(settings=DatabaseSettings())


def train(
    target: Annotated[str, typer.Option(help="variable to forecast")] = "people",
    history: Annotated[int, typer.Option(help="input hours")] = 12,
    horizons: Annotated[int, typer.Option(help="forecast hours")] = 3,
    hidden: Annotated[int, typer.Option(help="width of every layer")] = 32,
    epochs: Annotated[int, typer.Option(help="most epochs (early stopping on validation)")] = 20,
    batch_size: Annotated[int, typer.Option(help="issue hours per step")] = 32,
    lr: Annotated[float, typer.Option(help="learning rate")] = 3e-3,
    patience: Annotated[int, typer.Option(help="epochs without validation gain before stopping")] = 5,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    max_steps: Annotated[Optional[int], typer.Option(help="cap on the training steps per epoch")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu or cuda (default: cuda when present)")] = None,
    level: Annotated[Optional[list[str]], typer.Option(
        help="a level of the model, bottom to top, repeated (default: the lowest level where the target is observed"
             " and every level above it)")] = None,
    window_days: Annotated[Optional[int], typer.Option(
        min=1, help="train on the last N days of the target only (default: all of them)")] = None,
) -> None:
    """Train the tower on the twin and record it as a model run."""
    from models.runs import train_on_twin
    from models.train import TrainConfig

    cfg = TrainConfig(history=history, horizons=horizons, hidden=hidden, epochs=epochs, batch_size=batch_size,
                      lr=lr, patience=patience, seed=seed, max_steps_per_epoch=max_steps, device=device)
    with _twin() as twin:
        rep = train_on_twin(twin, cfg, target=target, levels=level or None,
                            window=None if window_days is None else 24 * window_days)
    m = rep.metrics
    typer.echo(f"model run {rep.run_id}: best epoch {m['best_epoch']} of {m['epochs']},"
               f" validation loss {m['best_val_loss']:.4f}, checkpoint {rep.checkpoint}")
    for level, lm in m.get("test", m["validation"]).items():
        typer.echo(f"  {level:<10} RMSE {lm['rmse_all']:.3f}")


def evaluate(
    run: Annotated[Optional[int], typer.Option(help="model run id (default: the newest)")] = None,
) -> None:
    """Print the recorded validation and test metrics of a model run, level by level."""
    from models.runs import latest_run

    with _twin() as twin:
        row = latest_run(twin, run)
    metrics = row["metrics"] if isinstance(row["metrics"], dict) else json.loads(row["metrics"])
    typer.echo(f"model run {int(row['id'])} ({row['name']}, data {row['data_hash']}, code {row['code_version']})")
    for part in ("validation", "test"):
        for level, lm in metrics.get(part, {}).items():
            per_h = ", ".join(f"h{h + 1} {sum(v) / len(v):.3f}" for h, v in enumerate(lm["rmse"]))
            typer.echo(f"  {part:<10} {level:<10} RMSE {lm['rmse_all']:.3f} ({per_h})")


def predict(
    issued_at: Annotated[Optional[datetime], typer.Option(
        help="first forecast hour, UTC (default: the hour after the last observation of the target)")] = None,
    run: Annotated[Optional[int], typer.Option(help="model run id (default: the newest)")] = None,
    target: Annotated[Optional[str], typer.Option(help="the newest run forecasting this variable")] = None,
    horizons: Annotated[Optional[int], typer.Option(help="forecast hours (default: the model's)")] = None,
) -> None:
    """Forecast every unit at every level of the model, store the forecasts and raise alerts."""
    from models.runs import predict_to_store

    with _twin() as twin:
        run_id, n, k = predict_to_store(twin, issued_at=issued_at, horizons=horizons, run_id=run, target=target)
        issued = twin.store.predictions(run_id=run_id, limit=1)["issued_at"]
    when = f" issued at {issued.iloc[0]:%Y-%m-%d %H:%M} UTC" if len(issued) else ""
    typer.echo(f"model run {run_id}: {n} forecasts{when}, {k} alerts raised")


def register(app: typer.Typer) -> None:
    """Add the model commands to the ``ciu`` app."""
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("predict")(predict)
