"""Tower-model benchmarks on real data: ``python -m bench.model`` (``make bench-model``).

Writes ``bench/results/model-<suite>.json`` per suite and regenerates
``docs/benchmarks.md`` from every result file present. Checkpoints are chosen
on the validation split only; the test split is scored once per trained model.

Suites: ``manhattan`` (bike and taxi, 69 zones → 12 districts → city),
``taxinyc`` (16×8 grid → 8 blocks → city), ``synthetic`` (the sample city,
floor → ... → city), ``scale`` (all-level inference for ~1M floors).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.baselines import (fit_stresnet, fit_unit_lstm, historical_average, persistence, predict_stresnet,
                              predict_unit_lstm, roll_up, seasonal_naive)
from models.data import HierSeries, Split, chronological_split
from models.graph import series_from_graph
from models.train import TrainConfig, fit, level_metrics, predict, prepare, truth

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"

#: training budgets per profile (the JSON records what ran)
PROFILES: dict[str, dict[str, Any]] = {
    "full": {"seeds": 3, "epochs": 6, "steps": 30, "patience": 2, "threads": 1, "scale_floors": 1_000_000,
             "steps_long": 120, "epochs_long": 8},
    "quick": {"seeds": 3, "epochs": 2, "steps": 10, "patience": 2, "threads": 1, "scale_floors": 20_000,
              "steps_long": 20, "epochs_long": 2},
}


def _machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "cuda": torch.cuda.is_available(), "platform": platform.platform()}


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sd (ddof 1) of every number in a list of equally shaped metric dicts."""
    def walk(items: list[Any]) -> Any:
        first = items[0]
        if isinstance(first, dict):
            return {k: walk([it[k] for it in items]) for k in first}
        if isinstance(first, list):
            return [walk([it[i] for it in items]) for i in range(len(first))]
        arr = np.asarray(items, dtype=float)
        return {"mean": float(np.nanmean(arr)), "sd": float(np.nanstd(arr, ddof=1)) if len(arr) > 1 else 0.0,
                "n": int(len(arr))}
    return walk(runs)


def _evaluate_all(series: HierSeries, split: Split, config: TrainConfig, prep_truth: list[np.ndarray],
                  ts: np.ndarray, *, fit_stop: int, seeds: list[int], metric_kw: dict[str, Any],
                  grid: tuple[int, int] | None = None, unit_lstm: bool = True, log=print) -> dict[str, Any]:
    names = series.level_names
    out: dict[str, Any] = {}
    h = config.horizons
    for name, fn in (("persistence", lambda: persistence(series, ts, h)),
                     ("seasonal_naive_week", lambda: seasonal_naive(series, ts, h)),
                     ("historical_average", lambda: historical_average(series, ts, h, fit_stop=fit_stop))):
        out[name] = {"deterministic": True, "test": level_metrics(roll_up(fn(), series), prep_truth, names,
                                                                  **metric_kw)}
        log(f"  {name}: bottom RMSE {out[name]['test'][names[0]]['rmse_all']:.3f}")
    learned: dict[str, list[dict[str, Any]]] = {"unit_lstm": [], "tower": []} if unit_lstm else {"tower": []}
    if grid is not None:
        learned["st_resnet"] = []
    info: dict[str, list[dict[str, Any]]] = {k: [] for k in learned}
    for seed in seeds:
        cfg = replace(config, seed=seed)
        t0 = time.perf_counter()
        res = fit(series, split, cfg, fit_stop=fit_stop)
        preds, _ = predict(res.model, res.prep, ts)
        learned["tower"].append(level_metrics(preds, prep_truth, names, **metric_kw))
        info["tower"].append({"seed": seed, "best_epoch": res.best_epoch, "epochs": len(res.history),
                              "best_val_loss": res.best_val, "train_seconds": res.seconds,
                              "samples_per_s": res.samples_per_s, "wall_seconds": time.perf_counter() - t0})
        log(f"  tower seed {seed}: bottom RMSE {learned['tower'][-1][names[0]]['rmse_all']:.3f}"
            f" ({res.seconds:.0f} s, best epoch {res.best_epoch})")
        if unit_lstm:
            res = fit_unit_lstm(series, split, cfg, fit_stop=fit_stop)
            bottom = predict_unit_lstm(res, ts)
            learned["unit_lstm"].append(level_metrics(roll_up(bottom, series), prep_truth, names, **metric_kw))
            info["unit_lstm"].append({"seed": seed, "best_epoch": res.best_epoch, "epochs": len(res.history),
                                      "train_seconds": res.seconds, "samples_per_s": res.samples_per_s})
            log(f"  unit_lstm seed {seed}: bottom RMSE {learned['unit_lstm'][-1][names[0]]['rmse_all']:.3f}")
        if grid is not None:
            prep = prepare(series, fit_stop=fit_stop, config=cfg, device=torch.device("cpu"))
            model, rinfo = fit_stresnet(prep, split, grid, replace(cfg, hidden=32))
            bottom = predict_stresnet(model, prep, ts, grid, h)
            learned["st_resnet"].append(level_metrics(roll_up(bottom, series), prep_truth, names, **metric_kw))
            info["st_resnet"].append({"seed": seed, **rinfo})
            log(f"  st_resnet seed {seed}: bottom RMSE {learned['st_resnet'][-1][names[0]]['rmse_all']:.3f}")
    for name, runs in learned.items():
        out[name] = {"deterministic": False, "seeds": seeds, "runs": info[name], "per_seed": runs,
                     "test": _summary(runs)}
    return out


def _config(profile: dict[str, Any], **kw: Any) -> TrainConfig:
    return TrainConfig(epochs=profile["epochs"], max_steps_per_epoch=profile["steps"], patience=profile["patience"],
                       threads=profile["threads"], **kw)


def suite_manhattan_long(profile: dict[str, Any], log=print) -> dict[str, Any]:
    """Manhattan bike only, the tower alone with four times the steps per epoch (``steps_long``)."""
    long = {**profile, "steps": profile["steps_long"], "epochs": profile["epochs_long"]}
    return suite_manhattan(long, log=log, modes=("bike",), unit_lstm=False)


def suite_manhattan(profile: dict[str, Any], log=print, *, modes: tuple[str, ...] = ("bike", "taxi"),
                    unit_lstm: bool = True) -> dict[str, Any]:
    """Bike and taxi flows, 70/10/20, 12 hours in, horizons 1–3, scaler on train only, masked where truth ≠ 0."""
    from models.datasets import manhattan_flows

    out: dict[str, Any] = {"protocol": {
        "split": "70/10/20 chronological over 2019-01-01..2020-12-31 hourly", "history": 12, "horizons": [1, 2, 3],
        "scaler": "per-level 99th percentile fitted on the training hours only",
        "metrics": "RMSE, MAE, MAPE over test issue hours, masked where truth != 0, per channel and horizon",
        "levels": "zone (69) -> community district (12) -> city", "checkpoint": "lowest validation loss"}}
    for mode in modes:
        log(f"manhattan {mode}")
        series = series_from_graph(manhattan_flows(mode=mode))
        cfg = _config(profile, history=12, horizons=3, hidden=32, batch_size=32, lr=3e-3, max_val_samples=256)
        split = chronological_split(series, history=12, horizons=3, fractions=(0.7, 0.1))
        fit_stop = int(round(len(series.times) * 0.7))
        prep = prepare(series, fit_stop=fit_stop, config=cfg, device=torch.device("cpu"))
        ts = split.test
        out[mode] = {"channels": series.channels, "n_test": int(len(ts)), "config": cfg.to_dict(),
                     "models": _evaluate_all(series, split, cfg, truth(prep, ts), ts, fit_stop=fit_stop,
                                             seeds=list(range(profile["seeds"])),
                                             metric_kw={"nonzero_only": True}, unit_lstm=unit_lstm and mode == "bike",
                                             log=log)}
    return out


def suite_taxinyc(profile: dict[str, Any], log=print) -> dict[str, Any]:
    """TaxiNYC 16×8, test = last 28 days (672 h), one step ahead, RMSE on the original scale."""
    from models.datasets import TAXINYC_TEST, taxinyc_grid

    log("taxinyc 16x8")
    series = series_from_graph(taxinyc_grid())
    test_start = int(series.times.get_indexer([TAXINYC_TEST[0]])[0])
    cfg = _config(profile, history=6, horizons=1, hidden=32, batch_size=32, lr=3e-3, max_val_samples=168)
    split = chronological_split(series, history=6, horizons=1, test_start=test_start, val_hours=28 * 24)
    prep = prepare(series, fit_stop=test_start, config=cfg, device=torch.device("cpu"))
    ts = split.test
    if len(ts) != 672:
        raise RuntimeError(f"TaxiNYC test must have 672 hours, has {len(ts)}")
    return {"protocol": {
        "test": "2014-12-04 00:00 .. 2014-12-31 23:00 (672 h), one hour ahead",
        "validation": "the 28 days before the test", "train": "2010-01-01 .. validation, deduplicated,"
        " missing and all-zero hours masked", "scaler": "per-level 99th percentile fitted on everything before the test",
        "metrics": "RMSE over all cells and both channels on the original scale; MAPE where truth > 10",
        "levels": "cell (128) -> block of 4x4 cells (8) -> city", "checkpoint": "lowest validation loss"},
        "published": {"ATFN": "36.75 ± 0.94", "STAR": 38.8, "ST-ResNet": 43.3, "HA": 164.31},
        "n_test": int(len(ts)), "config": cfg.to_dict(),
        "models": _evaluate_all(series, split, cfg, truth(prep, ts), ts, fit_stop=test_start,
                                seeds=list(range(profile["seeds"])), metric_kw={"mape_min": 10.0}, grid=(16, 8),
                                log=log)}


def suite_synthetic(profile: dict[str, Any], log=print) -> dict[str, Any]:
    """The sample city (40 buildings, 6 weeks): errors at every level, floors included."""
    from ingest.generator import SampleConfig
    from models.datasets import sample_city_graph

    log("synthetic city")
    cfg_city = SampleConfig(buildings=40, weeks=6)
    series = series_from_graph(sample_city_graph(cfg_city))
    cfg = _config(profile, history=12, horizons=3, hidden=32, batch_size=16, lr=3e-3, max_val_samples=96)
    split = chronological_split(series, history=12, horizons=3, fractions=(0.7, 0.15))
    fit_stop = int(split.val.min())
    prep = prepare(series, fit_stop=fit_stop, config=cfg, device=torch.device("cpu"))
    ts = split.test
    return {"protocol": {"city": cfg_city.model_dump(mode="json"), "split": "70/15/15 chronological",
                         "history": 12, "horizons": [1, 2, 3], "metrics": "RMSE, MAE over all units of each level"},
            "units": {lv.name: lv.n for lv in series.levels}, "n_test": int(len(ts)), "config": cfg.to_dict(),
            "models": _evaluate_all(series, split, cfg, truth(prep, ts), ts, fit_stop=fit_stop,
                                    seeds=list(range(profile["seeds"])), metric_kw={}, log=log)}


def _scale_worker(floors: int, model_kind: str) -> dict[str, Any]:
    """One all-level inference over a synthetic tree of ``floors`` floors (runs in its own process)."""
    from models.data import Level, Tensors, make_batch
    from models.train import build_model

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    sizes = [floors, floors // 10, max(floors // 200, 1), max(floors // 20000, 1), 1]
    names = ["floor", "building", "grid", "district", "city"]
    parents = [np.sort(rng.integers(0, sizes[i + 1], sizes[i])) for i in range(4)]
    for i, p in enumerate(parents):  # every parent gets a child
        p[: sizes[i + 1]] = np.arange(sizes[i + 1])
    if model_kind == "unit_lstm":
        names, sizes, parents = names[:1], sizes[:1], []
    cfg = TrainConfig(history=12, horizons=3, hidden=32)
    hours = 12 + 168 + 3
    t0 = time.perf_counter()
    bottom = torch.poisson(torch.full((hours, floors, 1), 5.0, dtype=torch.float32))
    values = [bottom / 20.0]
    for p, n in zip(parents, sizes[1:]):
        up = torch.zeros((hours, n, 1)).index_add_(1, torch.as_tensor(p), values[-1])
        values.append(up / up.max())
    data = Tensors(values=values, covariates=None, external=torch.zeros(hours, 8),
                   static=[torch.zeros(n, 3) for n in sizes], parent=[torch.as_tensor(p) for p in parents],
                   neighbours=[torch.zeros((2, 0), dtype=torch.long) for _ in sizes],
                   scales=torch.ones(len(sizes), 1), history=12, horizons=3)
    build_s = time.perf_counter() - t0
    levels = [Level(n, [""] * 0, None, np.zeros((0, 3), np.float32)) for n in names]
    series_stub = type("S", (), {"channels": ["people"], "covariates": None, "external": np.zeros((1, 8)),
                                 "levels": levels, "level_names": names})()
    model = build_model(None, series_stub, cfg).eval()  # type: ignore[arg-type]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with torch.no_grad():
        batch = make_batch(data, torch.tensor([hours - 3]))
        out = model(batch.seq, batch.aux, batch.ext, data.parent, data.neighbours, data.scales)
    seconds = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"model": model_kind, "units": dict(zip(names, sizes)), "inference_seconds": seconds,
            "data_build_seconds": build_s, "peak_rss_mb": rss1 / 1024, "rss_before_inference_mb": rss0 / 1024,
            "outputs": {n: list(d.shape) for n, d in zip(names, out.density)}}


def suite_scale(profile: dict[str, Any], log=print) -> dict[str, Any]:
    """All-level inference for ~1M floors, each model in a fresh process (peak memory per run)."""
    floors = profile["scale_floors"]
    out: dict[str, Any] = {"protocol": {
        "what": "one forward pass at every level for one issue hour, weights untrained, inputs in memory",
        "tree": "floors -> buildings (1/10) -> grid (1/200) -> districts (1/20000) -> city",
        "history": 12, "horizons": 3, "hidden": 32, "threads": 1}, "runs": []}
    for kind in ("tower", "unit_lstm"):
        for rep in range(3):
            res = subprocess.run([sys.executable, "-m", "bench.model", "--scale-worker", str(floors), kind],
                                 capture_output=True, text=True, cwd=ROOT, check=True)
            row = json.loads(res.stdout.strip().splitlines()[-1])
            row["repeat"] = rep
            out["runs"].append(row)
            log(f"  scale {kind} {floors:,} floors: {row['inference_seconds']:.2f} s, peak {row['peak_rss_mb']:.0f} MB")
    tower = [r["inference_seconds"] for r in out["runs"] if r["model"] == "tower"]
    unit = [r["inference_seconds"] for r in out["runs"] if r["model"] == "unit_lstm"]
    out["tower_vs_unit_lstm_time_ratio"] = float(np.median(tower) / np.median(unit))
    return out


SUITES = {"manhattan": suite_manhattan, "manhattan_long": suite_manhattan_long, "taxinyc": suite_taxinyc, "synthetic": suite_synthetic,
          "scale": suite_scale}


# -- the table ------------------------------------------------------------------------
def _fmt(m: Any, digits: int = 2) -> str:
    if isinstance(m, dict) and "mean" in m:
        return f"{m['mean']:.{digits}f} ± {m['sd']:.{digits}f}" if m["n"] > 1 else f"{m['mean']:.{digits}f}"
    return f"{m:.{digits}f}"


def _cell(model: dict[str, Any], level: str, key: str, h: int | None = None, c: int | None = None) -> Any:
    lm = model["test"][level]
    return lm[key] if h is None else lm[key][h][c]


def render(results: dict[str, dict[str, Any]]) -> str:
    """``docs/benchmarks.md`` from the result files."""
    lines = ["# Benchmarks of the tower model", "",
             "Generated by `make bench-model` (`python -m bench.model`) from `bench/results/model-*.json`;"
             " do not edit by hand. Learned models: mean ± sd over the seeds listed in the JSON; checkpoints chosen"
             " on validation loss only; the test split is scored once per trained model.", ""]
    for name, res in results.items():
        meta = res.get("_meta", {})
        lines += [f"Run of suite `{name}`: {meta.get('started', '?')}, profile `{meta.get('profile', '?')}`,"
                  f" {meta.get('seconds', 0):.0f} s on {meta.get('machine', {}).get('cpus', '?')} CPUs"
                  f" ({meta.get('machine', {}).get('threads', '?')} torch threads).", ""]
    if "taxinyc" in results:
        r = results["taxinyc"]
        lines += ["## TaxiNYC 16×8 (test = last 28 days, 672 h, one hour ahead)", "",
                  "| model | RMSE cell | MAPE cell (truth > 10) | RMSE block | RMSE city |", "|---|---|---|---|---|"]
        for m, v in r["models"].items():
            lines.append(f"| {m} | {_fmt(_cell(v, 'cell', 'rmse_all'))} | {_fmt(_cell(v, 'cell', 'mape_all'), 3)} |"
                         f" {_fmt(_cell(v, 'block', 'rmse_all'))} | {_fmt(_cell(v, 'city', 'rmse_all'))} |")
        for m, v in r["published"].items():
            lines.append(f"| {m} (published) | {v} | | | |")
        lines += ["", f"Config: `{json.dumps(r['config'])}`", ""]
    for key, title in (("manhattan", ""), ("manhattan_long", ", tower with 4× the steps per epoch")):
        if key not in results:
            continue
        r = results[key]
        for mode in ("bike", "taxi"):
            if mode not in r:
                continue
            rr = r[mode]
            chans = rr["channels"]
            lines += [f"## Manhattan {mode}, 69 zones (70/10/20, 12 h in, masked where truth ≠ 0){title}", ""]
            for c, ch in enumerate(chans):
                lines += [f"### {ch} (channel {c}), zone level", "",
                          "| model | RMSE h1 | RMSE h2 | RMSE h3 | MAE h1 | MAE h2 | MAE h3 | MAPE h1 |",
                          "|---|---|---|---|---|---|---|---|"]
                for m, v in rr["models"].items():
                    cells = [_fmt(_cell(v, "zone", "rmse", h, c)) for h in range(3)]
                    cells += [_fmt(_cell(v, "zone", "mae", h, c)) for h in range(3)]
                    cells.append(_fmt(_cell(v, "zone", "mape", 0, c), 3))
                    lines.append(f"| {m} | " + " | ".join(cells) + " |")
                if mode == "bike":
                    anchors = {"departures": "STGCN 12.00, DCRNN 12.02",
                               "arrivals": "STGCN 11.70, DCRNN 12.20, Graph WaveNet 12.75, persistence 16.82"}
                    lines.append(f"| logged anchors, h1 | {anchors.get(ch, '')} | | | | | | |")
                lines.append("")
            lines += [f"### Upper levels ({mode}), RMSE h1 per channel", "",
                      "| model | " + " | ".join(f"district {c}" for c in chans) + " | "
                      + " | ".join(f"city {c}" for c in chans) + " |", "|---|" + "---|" * (2 * len(chans))]
            for m, v in rr["models"].items():
                cells = [_fmt(_cell(v, lv, "rmse", 0, c)) for lv in ("district", "city") for c in range(len(chans))]
                lines.append(f"| {m} | " + " | ".join(cells) + " |")
            lines += ["", f"Config: `{json.dumps(rr['config'])}`", ""]
    if "synthetic" in results:
        r = results["synthetic"]
        levels = list(r["units"])
        lines += ["## Synthetic city: RMSE over horizons 1–3 at every level", "",
                  "units: " + ", ".join(f"{k} {v}" for k, v in r["units"].items()), "",
                  "| model | " + " | ".join(levels) + " |", "|---|" + "---|" * len(levels)]
        for m, v in r["models"].items():
            lines.append(f"| {m} | " + " | ".join(_fmt(_cell(v, lv, "rmse_all"), 3) for lv in levels) + " |")
        lines.append("")
    if "scale" in results:
        r = results["scale"]
        lines += ["## Scale: all-level inference, one issue hour, CPU", "",
                  "| model | floors | units per level | seconds | peak RSS (MB) |", "|---|---|---|---|---|"]
        for row in r["runs"]:
            lines.append(f"| {row['model']} | {row['units'].get('floor', 0):,} | "
                         f"{', '.join(f'{k} {v:,}' for k, v in row['units'].items())} | "
                         f"{row['inference_seconds']:.2f} | {row['peak_rss_mb']:.0f} |")
        lines += ["", f"Tower / per-unit LSTM time ratio (medians, same run): {r['tower_vs_unit_lstm_time_ratio']:.2f}",
                  ""]
    lines += ["Training throughput (issue hours per second, all levels at once) is recorded per run in the JSON"
              " (`runs[].samples_per_s`).", ""]
    return "\n".join(lines)


def write_table() -> Path:
    """Regenerate ``docs/benchmarks.md`` (all benchmarks; the model tables come from :func:`render`)."""
    from bench.report import DOC, main as write_report

    write_report()
    return DOC


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    # the timed suite (scale) first; the others run a fixed number of steps, so their errors do not
    # depend on what else the machine is doing
    parser.add_argument("--suites", default="scale,synthetic,manhattan,manhattan_long,taxinyc")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--scale-worker", nargs=2, metavar=("FLOORS", "MODEL"))
    args = parser.parse_args(argv)
    if args.scale_worker:
        print(json.dumps(_scale_worker(int(args.scale_worker[0]), args.scale_worker[1])))
        return
    if not args.table_only:
        profile = dict(PROFILES[args.profile])
        if args.seeds is not None:
            profile["seeds"] = args.seeds
        torch.set_num_threads(profile["threads"])
        RESULTS.mkdir(parents=True, exist_ok=True)
        for name in args.suites.split(","):
            t0 = time.perf_counter()
            started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            res = SUITES[name](profile, log=lambda m: print(m, flush=True))
            res["_meta"] = {"profile": args.profile, "budget": profile, "seconds": time.perf_counter() - t0,
                            "started": started, "machine": _machine()}
            (RESULTS / f"model-{name}.json").write_text(json.dumps(res, indent=1, default=float))
            print(f"{name}: {time.perf_counter() - t0:.0f} s -> {RESULTS / f'model-{name}.json'}", flush=True)
    print(f"table: {write_table()}")


if __name__ == "__main__":
    main()
