"""``ciu train``, ``ciu evaluate``, ``ciu predict``: the forecasting harness from the command line."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Optional

import typer


def _twin():
    from ciu.settings import DatabaseSettings
    from ciu.twin import Twin

    return Twin.connect(settings=DatabaseSettings())


def _fmt(value: Any, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def echo_skill(metrics: dict[str, Any], *, split: str = "test", models: list[str] | None = None) -> None:
    """Print the skill table of a run: per level and horizon, RMSE / MAE / MAPE and the % gain over seasonal naive."""
    from ciu.models.runs import skill_table

    table = skill_table(metrics, split=split)
    if models is not None:
        table = table[table["model"].isin(models)]
    champion = metrics.get("champion")
    typer.echo(f"  {split} split, champion {champion} (chosen on validation):")
    typer.echo(f"    {'model':<20} {'level':<10} {'h':>2} {'RMSE':>10} {'MAE':>10} {'MAPE':>7} {'vs seasonal naive':>18}")
    order = {m: i for i, m in enumerate([champion, *[m for m in table["model"].unique() if m != champion]])}
    table = table.assign(order=table["model"].map(order)).sort_values(["order", "level", "horizon"], kind="stable")
    levels = metrics.get("levels") or list(table["level"].unique())
    table["lv"] = table["level"].map({lv: i for i, lv in enumerate(levels)})
    table = table.sort_values(["order", "lv", "horizon"], kind="stable")
    for r in table.itertuples():
        mark = "*" if r.champion else " "
        mape = "—" if r.mape is None or r.mape != r.mape else f"{100 * r.mape:5.1f}%"
        gain = "—" if r.gain_over_seasonal_naive_pct is None else f"{r.gain_over_seasonal_naive_pct:+.1f} %"
        typer.echo(f"   {mark}{r.model:<20} {r.level:<10} {r.horizon:>2} {_fmt(r.rmse, 3):>10} {_fmt(r.mae, 3):>10}"
                   f" {mape:>7} {gain:>18}")
    prob = (metrics.get("probabilistic") or {}).get(split) or {}
    if prob:
        typer.echo("  champion's p10–p90 coverage and risk Brier score (climatology's):")
        for level, p in prob.items():
            typer.echo(f"    {level:<10} coverage {_fmt(100 * p['coverage_p10_p90'] if p['coverage_p10_p90'] is not None else None, 1)} %,"
                       f" Brier {_fmt(p['brier'], 4)} ({_fmt(p['brier_climatology'], 4)}), exceedances"
                       f" {_fmt(100 * p['event_rate'] if p['event_rate'] is not None else None, 1)} %")
    if split == "test":
        echo_alerts(metrics)


def echo_alerts(metrics: dict[str, Any]) -> None:
    """Per level: the test alerts of the one alert rule against the exceedances and, where known, the events."""
    alerts = (metrics.get("probabilistic") or {}).get("alerts") or {}
    if not alerts:
        return
    level = next(iter(alerts.values()))["level"]
    typer.echo(f"  alerts on the test steps (risk at or above {level:.2f}; one per unit and step), precision and recall:")
    for name, a in alerts.items():
        line = (f"    {name:<10} {a['alerts']:>7,} alerts: exceedances {_fmt(a['precision'])} / {_fmt(a['recall'])}"
                f" ({a['exceedances']:,})")
        ev = a.get("events")
        if ev:
            line += (f"; events {_fmt(ev['precision'])} / {_fmt(ev['recall'])} per step, {ev['alert_episodes_right']}"
                     f" of {ev['alert_episodes']} alert episodes met an event, {ev['episodes_caught']} of"
                     f" {ev['episodes']} event episodes alerted")
        typer.echo(line)


def echo_champion(metrics: dict[str, Any], *, split: str = "test") -> None:
    """One line per level: the champion's RMSE and its gain over seasonal naive and the historical average."""
    part = metrics.get(split) or metrics.get("validation") or {}
    champion = metrics["champion"]
    typer.echo(f"champion {champion}, chosen on validation; {split} RMSE per level (gain over seasonal naive,"
               " over the historical average):")
    for level in metrics.get("levels", []):
        c = part.get(champion, {}).get(level, {}).get("rmse_all")
        sn = part.get("seasonal_naive", {}).get(level, {}).get("rmse_all")
        ha = part.get("historical_average", {}).get(level, {}).get("rmse_all")
        gains = [("—" if not ref or c is None else f"{100 * (1 - c / ref):+.1f} %") for ref in (sn, ha)]
        typer.echo(f"  {level:<10} {_fmt(c, 3):>10}  ({gains[0]}, {gains[1]})")


def train(
    target: Annotated[str, typer.Option(help="variable to forecast")] = "people",
    history: Annotated[int, typer.Option(help="input steps")] = 12,
    horizons: Annotated[int, typer.Option(help="forecast steps")] = 3,
    hidden: Annotated[int, typer.Option(help="width of the tower's layers")] = 64,
    epochs: Annotated[int, typer.Option(help="most epochs (early stopping on validation)")] = 30,
    batch_size: Annotated[Optional[int], typer.Option(
        help="issue steps per training step (default: about 4,096 bottom units per step)")] = None,
    lr: Annotated[float, typer.Option(help="peak learning rate (warm-up, then cosine decay)")] = 2e-3,
    patience: Annotated[int, typer.Option(
        help="epochs without validation gain before stopping (with a budget: in its last quarter only)")] = 5,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    max_samples: Annotated[Optional[int], typer.Option(
        help="issue steps drawn per epoch (default: all training steps)")] = None,
    budget_minutes: Annotated[Optional[float], typer.Option(
        help="train the learned models for about this many minutes in all (the tower 60 %, LightGBM 40 %);"
             " each stops cleanly with its best state on validation; a tower that loses to the ridge on validation"
             " trains its share once more, on the ridge (0: no limit, up to --epochs)")] = 5.0,
    models: Annotated[Optional[str], typer.Option(
        help="comma-separated candidates (default: persistence, seasonal_naive, historical_average, ridge_unit,"
             " ridge_pooled, lightgbm, tower)")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads (default: every core)")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu or cuda (default: cuda when present)")] = None,
    level: Annotated[Optional[list[str]], typer.Option(
        help="a level of the model, bottom to top, repeated (default: the lowest level where the target is observed"
             " and every level above it)")] = None,
    window_days: Annotated[Optional[float], typer.Option(
        help="train on the last N days of the target only (default: all of them)")] = None,
) -> None:
    """Fit the tower and its baselines, publish the champion on validation, record the comparison."""
    from ciu.models.champion import DEFAULT_MODELS
    from ciu.models.runs import train_on_twin
    from ciu.models.train import TrainConfig

    cfg = TrainConfig(history=history, horizons=horizons, hidden=hidden, epochs=epochs, batch_size=batch_size,
                      lr=lr, patience=patience, seed=seed, max_samples_per_epoch=max_samples,
                      budget_minutes=budget_minutes or None, threads=threads, device=device)
    names = tuple(m.strip() for m in models.split(",") if m.strip()) if models else DEFAULT_MODELS
    with _twin() as twin:
        rep = train_on_twin(twin, cfg, target=target, models=names, levels=level or None, window_days=window_days)
    m = rep.metrics
    tower = (m.get("training") or {}).get("tower") or {}
    if tower:
        typer.echo(f"model run {rep.run_id} of {target!r}: tower {tower.get('epochs')} epochs in"
                   f" {tower.get('seconds', 0):.0f} s (best epoch {(tower.get('best_epoch') or 0) + 1}, stopped by"
                   f" {tower.get('stopped')}), checkpoint {rep.checkpoint}")
    else:
        typer.echo(f"model run {rep.run_id} of {target!r}, checkpoint {rep.checkpoint}")
    echo_champion(m, split="test" if m.get("test") else "validation")
    echo_alerts(m)


def evaluate(
    run: Annotated[Optional[int], typer.Option(help="model run id (default: the newest)")] = None,
    target: Annotated[Optional[str], typer.Option(help="the newest run forecasting this variable")] = None,
    split: Annotated[str, typer.Option(help="validation or test")] = "test",
    champion_only: Annotated[bool, typer.Option("--champion-only", help="only the champion's rows")] = False,
) -> None:
    """Print the skill table of a model run: the champion and every baseline, per level and horizon."""
    from ciu.errors import ValidationError
    from ciu.models.forecaster import latest_run

    if split not in ("validation", "test"):
        raise ValidationError(f"split must be 'validation' or 'test', not {split!r}", field="split")
    with _twin() as twin:
        row = latest_run(twin, run, target=target)
    metrics = row["metrics"]
    typer.echo(f"model run {int(row['id'])} ({row['name']}, {row['kind']}) of {row['params'].get('target')!r}:"
               f" data {row['data_hash']}, code {row['code_version']}, step {metrics.get('step')},"
               f" levels {', '.join(metrics.get('levels', []))}")
    echo_skill(metrics, split=split, models=[metrics["champion"]] if champion_only else None)


def predict(
    issued_at: Annotated[Optional[datetime], typer.Option(
        help="the last step whose observations the forecast may use, UTC (default: the last observed step)")] = None,
    run: Annotated[Optional[int], typer.Option(help="model run id (default: the newest)")] = None,
    target: Annotated[Optional[str], typer.Option(help="the newest run forecasting this variable")] = None,
    horizons: Annotated[Optional[int], typer.Option(help="forecast steps (default: the model's)")] = None,
) -> None:
    """Forecast every unit at every level of the model, store the forecasts and raise alerts."""
    from ciu.models.runs import predict_to_store

    with _twin() as twin:
        run_id, n, k = predict_to_store(twin, issued_at=issued_at, horizons=horizons, run_id=run, target=target)
        issued = twin.predictions(run_id=run_id, limit=1)["issued_at"]
    when = f" issued at {issued.iloc[0]:%Y-%m-%d %H:%M} UTC" if len(issued) else ""
    typer.echo(f"model run {run_id}: {n} forecasts{when}, {k} alerts raised")


def register(app: typer.Typer) -> None:
    """Add the model commands to the ``ciu`` app."""
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("predict")(predict)
