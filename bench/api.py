"""Benchmark of the prediction API beside tipg, in one run, on loopback.

Builds the sample city in a throw-away PostGIS cluster, stores 24 hours of
forecasts for every unit, starts the CIU Twin API and tipg (each with uvicorn,
the same number of workers) on the same database, and drives each with ``wrk``
in turn:

- stored forecasts of one unit: ours ``/predictions?code=…`` against tipg's
  items of ``ciu.prediction`` filtered by ``unit_id`` (the same rows);
- items of the building level: ours ``/collections/building/items`` against
  tipg's ``/collections/ciu.unit/items?level=building``;
- vector tiles of the building level at z12 and z14: ours
  ``/tiles/building/z/x/y.mvt`` (with current and forecast values joined in)
  against tipg's ``/collections/ciu.unit/tiles/WebMercatorQuad/z/x/y?level=building``.

Writes ``bench/results/api.json``. Run with ``make bench-api``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
GOAL_RPS = 1000.0
GOAL_P99_MS = 50.0
#: seconds of load before each measured case, so that pools, prepared statements and caches are warm
WARM_S = 3


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return x, y


def tiles_covering(bounds: tuple[float, float, float, float], z: int) -> list[tuple[int, int]]:
    x0, y1 = tile_of(bounds[0], bounds[1], z)
    x1, y0 = tile_of(bounds[2], bounds[3], z)
    return [(x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]


def build_database(url: str, *, buildings: int | None, weeks: int | None, horizons: int) -> dict:
    """The sample city, forecasts of every unit and a key; returns what the benchmark needs."""
    from ciu.forecast import HistoricalAverageForecaster
    from ciu.ingest.generator import SampleConfig, build_sample
    from ciu.store import ApiStore
    from ciu.twin import Twin

    cfg = SampleConfig.from_toml(ROOT / "data" / "sample" / "city.toml", buildings=buildings, weeks=weeks)
    with Twin.connect(url) as twin:
        t0 = time.perf_counter()
        build_sample(twin, cfg)
        built = time.perf_counter() - t0
        issued = pd.Timestamp(twin.store.series_extent()["tmax"].max()).tz_convert("UTC").floor("h")
        t0 = time.perf_counter()
        frame = HistoricalAverageForecaster().forecast(twin, issued_at=issued.to_pydatetime(), horizons=horizons)
        forecast_s = time.perf_counter() - t0
        frame["issued_at"] = issued
        run = twin.store.add_model_run(name="bench historical average", kind="historical_average")
        twin.store.write_predictions(frame, run_id=run)
        _, token = ApiStore(twin.store.conn).create_key(name="bench", role="viewer")
        twin.store.conn.execute("VACUUM ANALYZE")
        units = twin.units()
        ids = twin.store.unit_ids(list(units.index))
        buildings_frame = units[units["level"] == "building"]
        return {
            "token": token, "codes": list(units.index), "ids": ids,
            "bounds": tuple(float(v) for v in buildings_frame.total_bounds),
            "units": {lv: int(n) for lv, n in units["level"].value_counts().items()},
            "predictions": int(len(frame)), "build_s": round(built, 1), "forecast_s": round(forecast_s, 2),
            "config": {"buildings": cfg.buildings, "weeks": cfg.weeks, "horizons": horizons},
        }


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = log.open("w")
    return subprocess.Popen(cmd, env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT,
                            start_new_session=True)


def wait_ready(url: str, *, timeout: float = 60.0, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up in {timeout} s")


def check(base: str, path: str, headers: dict[str, str]) -> int:
    """GET once; returns the size of the answer (and fails loudly on a non-200)."""
    with urllib.request.urlopen(urllib.request.Request(base + path, headers=headers), timeout=30) as r:
        if r.status != 200:
            raise RuntimeError(f"{base}{path} answered {r.status}")
        return len(r.read())


def run_wrk(base: str, paths: list[str], *, key: str | None, seconds: int, connections: int, work: Path,
            name: str, rate: float | None = None) -> dict:
    """``wrk`` over ``paths``; as fast as answers come, or paced at ``rate`` requests per second."""
    listing = work / f"{name}.paths"
    listing.write_text("\n".join(paths) + "\n")
    env = {**os.environ, "CIU_BENCH_PATHS": str(listing), "CIU_BENCH_KEY": key or ""}
    if rate is not None:
        env["CIU_BENCH_RATE"] = str(rate)
    proc = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s",
         str(ROOT / "bench" / "wrk_paths.lua"), base],
        env=env, capture_output=True, text=True, check=True,
    )
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]
    raw = json.loads(line)
    seconds_run = raw["duration_us"] / 1e6
    errors = sum(raw[k] for k in raw if k.startswith("errors_"))
    return {"requests": raw["requests"], "errors": errors, "rps": round(raw["requests"] / seconds_run, 1),
            "p50_ms": raw["p50_us"] / 1000, "p90_ms": raw["p90_us"] / 1000, "p99_ms": raw["p99_us"] / 1000,
            "max_ms": raw["max_us"] / 1000, "mean_ms": round(raw["mean_us"] / 1000, 3),
            "kbytes_per_request": round(raw["bytes"] / max(1, raw["requests"]) / 1024, 2), "paths": len(paths)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buildings", type=int, default=None, help="sample city size (default: city.toml)")
    parser.add_argument("--weeks", type=int, default=None)
    parser.add_argument("--horizons", type=int, default=24)
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration of each case")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--sweep", type=int, nargs="*", default=[4, 8, 16, 32, 64],
                        help="connection counts at which stored forecasts are also measured (latency against load)")
    parser.add_argument("--paced-connections", type=int, default=64,
                        help="connections of the run paced at the goal's rate")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers of each server")
    parser.add_argument("--tipg-python", default=str(ROOT / ".venv-tipg" / "bin" / "python"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "api.json")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench-api: wrk is not installed (scripts/setup.sh --wrk)", file=sys.stderr)
        return 2

    from ciu.cluster import Cluster

    work = Path(tempfile.mkdtemp(prefix="ciu-bench-api-"))
    os.chmod(work, 0o755)
    cluster = Cluster(work / "pgdata", Path(f"/tmp/ciu-bench-{os.getpid()}"), port=5447, ephemeral=True)
    servers: list[subprocess.Popen] = []
    try:
        cluster.start()
        cluster.ensure_database("bench")
        url = cluster.url("bench")
        print("bench-api: building the sample city and its forecasts ...", flush=True)
        db = build_database(url, buildings=args.buildings, weeks=args.weeks, horizons=args.horizons)
        ours, peer = "http://127.0.0.1:18431", "http://127.0.0.1:18432"
        fresh = "http://127.0.0.1:18433"  # ours again, reading the database on every call
        for port, extra, log in ((18431, {}, "ours.log"), (18433, {"CIU_API_REUSE_S": "0"}, "ours_fresh.log")):
            servers.append(start(
                [sys.executable, "-m", "uvicorn", "ciu.api.app:create_app", "--factory", "--host", "127.0.0.1",
                 "--port", str(port), "--workers", str(args.workers), "--log-level", "warning", "--no-access-log"],
                {"CIU_DATABASE_URL": url, "CIU_API_RATE_LIMIT_PER_MINUTE": "100000000",
                 "CIU_API_RATE_BURST": "1000000", "CIU_API_POOL_MAX": "8", **extra}, work / log))
        servers.append(start(
            [args.tipg_python, "-m", "uvicorn", "bench.tipg_app:app", "--host", "127.0.0.1", "--port", "18432",
             "--workers", str(args.workers), "--log-level", "warning", "--no-access-log"],
            {"DATABASE_URL": "postgresql://postgres@localhost/bench", "CIU_BENCH_PGSOCKET": str(cluster.socket_dir),
             "CIU_BENCH_PGPORT": str(cluster.port), "CIU_BENCH_PGDATABASE": "bench",
             "TIPG_DB_SCHEMAS": '["ciu"]', "TIPG_DB_TABLES": '["ciu.unit", "ciu.prediction"]',
             "TIPG_DB_ONLY_SPATIAL_TABLES": "false", "TIPG_MAX_FEATURES_PER_QUERY": "10000",
             "TIPG_DB_MAX_CONN_SIZE": "8", "PYTHONPATH": str(ROOT)}, work / "tipg.log"))
        key = {"X-API-Key": db["token"]}
        wait_ready(f"{ours}/health")
        wait_ready(f"{fresh}/health")
        wait_ready(f"{peer}/healthz")
        rng = random.Random(7)
        codes = rng.sample(db["codes"], min(200, len(db["codes"])))
        cases: dict[str, tuple[list[str], list[str]]] = {
            "predictions_one_unit": (
                [f"/predictions?code={c}" for c in codes],
                [f"/collections/ciu.prediction/items?unit_id={db['ids'][c]}&limit={args.horizons}" for c in codes],
            ),
            "items_building_page": (
                [f"/collections/building/items?limit=10&offset={o}" for o in range(0, 200, 10)],
                [f"/collections/ciu.unit/items?level=building&limit=10&offset={o}" for o in range(0, 200, 10)],
            ),
        }
        for z in (12, 14):
            tiles = tiles_covering(db["bounds"], z)
            cases[f"tiles_z{z}"] = (
                [f"/tiles/building/{z}/{x}/{y}.mvt" for x, y in tiles],
                [f"/collections/ciu.unit/tiles/WebMercatorQuad/{z}/{x}/{y}?level=building" for x, y in tiles],
            )
        results: dict[str, dict] = {}
        load_before = list(os.getloadavg())
        for name, (our_paths, peer_paths) in cases.items():
            sizes = {"ciu": check(ours, our_paths[0], key), "tipg": check(peer, peer_paths[0], {})}
            print(f"bench-api: {name} ...", flush=True)
            for base, p, k in ((ours, our_paths, db["token"]), (peer, peer_paths, None)):  # warm caches and pools
                run_wrk(base, p, key=k, seconds=WARM_S, connections=args.connections, work=work, name="warm")
            mine = run_wrk(ours, our_paths, key=db["token"], seconds=args.seconds, connections=args.connections,
                           work=work, name=f"ciu_{name}")
            theirs = run_wrk(peer, peer_paths, key=None, seconds=args.seconds, connections=args.connections,
                             work=work, name=f"tipg_{name}")
            if name == "predictions_one_unit":
                run_wrk(fresh, our_paths, key=db["token"], seconds=WARM_S, connections=args.connections, work=work,
                        name="warm")
                results["predictions_one_unit_no_reuse"] = {"ciu": run_wrk(
                    fresh, our_paths, key=db["token"], seconds=args.seconds, connections=args.connections, work=work,
                    name="ciu_fresh"), "tipg": theirs, "example": {"ciu": our_paths[0], "tipg": peer_paths[0]}}
                results["predictions_one_unit_no_reuse"]["rps_ratio_ciu_over_tipg"] = round(
                    results["predictions_one_unit_no_reuse"]["ciu"]["rps"] / theirs["rps"], 3) if theirs["rps"] else None
            results[name] = {"ciu": mine, "tipg": theirs, "first_answer_bytes": sizes,
                             "rps_ratio_ciu_over_tipg": round(mine["rps"] / theirs["rps"], 3) if theirs["rps"] else None,
                             "example": {"ciu": our_paths[0], "tipg": peer_paths[0]}}
            print(f"  ciu  {mine['rps']:>8.1f} req/s  p50 {mine['p50_ms']:.2f} ms  p99 {mine['p99_ms']:.2f} ms"
                  f"  errors {mine['errors']}")
            print(f"  tipg {theirs['rps']:>8.1f} req/s  p50 {theirs['p50_ms']:.2f} ms  p99 {theirs['p99_ms']:.2f} ms"
                  f"  errors {theirs['errors']}")
        sweep: dict[str, dict] = {}
        for c in args.sweep:
            print(f"bench-api: stored forecasts with {c} connections ...", flush=True)
            our_paths, peer_paths = cases["predictions_one_unit"]
            sweep[str(c)] = {
                "ciu": run_wrk(ours, our_paths, key=db["token"], seconds=args.seconds, connections=c, work=work,
                               name=f"ciu_sweep_{c}"),
                "tipg": run_wrk(peer, peer_paths, key=None, seconds=args.seconds, connections=c, work=work,
                                name=f"tipg_sweep_{c}"),
            }
            mine = sweep[str(c)]["ciu"]
            print(f"  ciu  {mine['rps']:>8.1f} req/s  p50 {mine['p50_ms']:.2f} ms  p99 {mine['p99_ms']:.2f} ms")
        print(f"bench-api: stored forecasts paced at {GOAL_RPS:.0f} req/s ...", flush=True)
        our_paths, peer_paths = cases["predictions_one_unit"]
        paced = {"rate": GOAL_RPS, "connections": args.paced_connections, **{
            side: run_wrk(base, p, key=k, seconds=args.seconds * 2, connections=args.paced_connections, work=work,
                          name=f"{side}_paced", rate=GOAL_RPS)
            for side, base, p, k in (("ciu", ours, our_paths, db["token"]), ("ciu_no_reuse", fresh, our_paths, db["token"]),
                                     ("tipg", peer, peer_paths, None))}}
        for side in ("ciu", "ciu_no_reuse", "tipg"):
            r = paced[side]
            print(f"  {side:4s} {r['rps']:>8.1f} req/s  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms")
        pred = results["predictions_one_unit"]["ciu"]
        met_at = [int(c) for c, r in sweep.items() if r["ciu"]["rps"] >= GOAL_RPS and r["ciu"]["p99_ms"] < GOAL_P99_MS]
        paced_met = {side: bool(paced[side]["rps"] >= 0.99 * GOAL_RPS and paced[side]["errors"] == 0
                                and paced[side]["p99_ms"] < GOAL_P99_MS) for side in ("ciu", "ciu_no_reuse")}
        report = {
            "benchmark": "api",
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "load_average_before": load_before, "load_average_after": list(os.getloadavg()),
                        "note": "load averages before and after each case are recorded beside its figures"},
            "setup": {"workers_each": args.workers, "connections": args.connections, "seconds_each": args.seconds,
                      "warm_up_s": WARM_S,
                      "load_generator": "wrk -t1 (same machine, loopback)", "database": "embedded PostGIS, unix socket",
                      "ciu_rate_limiter": "on (limit set above the load)", "ciu_audit_log": "on",
                      "ciu_role": "viewer (exact counts, no restricted attributes)",
                      "ciu_reuse": "answers reused for up to 5 s (CIU_API_REUSE_S, the default); the _no_reuse "
                                   "rows are a third server with CIU_API_REUSE_S=0, reading the database every call",
                      "tipg_filters": "property filters level= / unit_id=, all columns"},
            "data": {k: db[k] for k in ("units", "predictions", "build_s", "forecast_s", "config")},
            "results": results,
            "predictions_by_connections": sweep,
            "predictions_paced": paced,
            "goals": {
                "stored_forecasts_rps_min": GOAL_RPS, "stored_forecasts_p99_ms_max": GOAL_P99_MS,
                "stored_forecasts_met": bool(pred["rps"] >= GOAL_RPS and pred["p99_ms"] < GOAL_P99_MS),
                "stored_forecasts_met_at_connections": met_at,
                "stored_forecasts_paced_met": paced_met["ciu"],
                "stored_forecasts_paced_met_no_reuse": paced_met["ciu_no_reuse"],
                "tiles_at_least_tipg": {z: bool(results[z]["ciu"]["rps"] >= results[z]["tipg"]["rps"])
                                        for z in ("tiles_z12", "tiles_z14")},
            },
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"bench-api: wrote {args.out}")
        return 0
    finally:
        for proc in servers:
            try:
                os.killpg(proc.pid, 15)
                proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, 9)
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())


SIDES = {"ciu": "ours", "ciu_no_reuse": "ours, reuse off", "tipg": "tipg"}


def markdown(result: dict) -> str:
    """The API benchmark as a table, goals beside the figures."""
    setup, goals = result["setup"], result["goals"]
    rows = ["| case | server | req/s | p50 ms | p99 ms | KB/answer | ours ÷ tipg (req/s) |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for name, case in result["results"].items():
        for side in ("ciu", "tipg"):
            r = case[side]
            ratio = f"{case['rps_ratio_ciu_over_tipg']:.2f}×" if side == "ciu" else ""
            rows.append(f"| {name} | {'ours' if side == 'ciu' else 'tipg'} | {r['rps']:,.0f} | {r['p50_ms']:.1f} | "
                        f"{r['p99_ms']:.1f} | {r['kbytes_per_request']:.2f} | {ratio} |")
    tiles = ", ".join(f"{z}: {'met' if ok else 'not met'}" for z, ok in goals["tiles_at_least_tipg"].items())
    sweep = result.get("predictions_by_connections") or {}
    curve = ["| connections | ours req/s | ours p50 ms | ours p99 ms | tipg req/s | tipg p99 ms |",
             "|---:|---:|---:|---:|---:|---:|"]
    for c, r in sweep.items():
        curve.append(f"| {c} | {r['ciu']['rps']:,.0f} | {r['ciu']['p50_ms']:.1f} | {r['ciu']['p99_ms']:.1f} | "
                     f"{r['tipg']['rps']:,.0f} | {r['tipg']['p99_ms']:.1f} |")
    met_at = goals.get("stored_forecasts_met_at_connections") or []
    paced = result.get("predictions_paced")
    paced_text = ([
        "", f"Paced at the goal's rate (an open loop: {paced['rate']:,.0f} requests a second scheduled over "
        f"{paced['connections']} connections whatever the answers, `CIU_BENCH_RATE` in `bench/wrk_paths.lua`):", "",
        "| server | achieved req/s | p50 ms | p90 ms | p99 ms | max ms |", "|---|---:|---:|---:|---:|---:|",
        *[f"| {SIDES[side]} | {paced[side]['rps']:,.0f} | {paced[side]['p50_ms']:.1f} | "
          f"{paced[side]['p90_ms']:.1f} | {paced[side]['p99_ms']:.1f} | {paced[side]['max_ms']:.1f} |"
          for side in SIDES if side in paced], "",
        f"Stored forecasts at {paced['rate']:,.0f} req/s with p99 < {goals['stored_forecasts_p99_ms_max']:.0f} ms: "
        f"**{'met' if goals.get('stored_forecasts_paced_met') else 'not met'}**"
        + (f" (with reuse off: {'met' if goals['stored_forecasts_paced_met_no_reuse'] else 'not met'})"
           if "stored_forecasts_paced_met_no_reuse" in goals else "") + ".",
    ] if paced else [])
    sweep_text = ([
        "", "Stored forecasts of one unit against the number of open connections (a closed loop: each "
        "connection sends its next request when the answer comes, so latency grows with the queue):", "", *curve, "",
        f"Both goals at once (≥ {goals['stored_forecasts_rps_min']:,.0f} req/s and p99 < "
        f"{goals['stored_forecasts_p99_ms_max']:.0f} ms): "
        + (f"met with {', '.join(map(str, met_at))} connections." if met_at else "at none of these loads."),
    ] if sweep else [])
    return "\n".join([
        f"Both servers under uvicorn with {setup['workers_each']} workers each on the same database, driven in turn "
        f"by {setup['load_generator']} with {setup['connections']} connections for {setup['seconds_each']} s a case "
        f"after {setup.get('warm_up_s', 0)} s of warm-up "
        f"(`make bench-api`). Ours with its rate limiter and audit log on, as role {setup['ciu_role']}; "
        f"{setup.get('ciu_reuse', 'answers read from the database on every call')}.",
        "",
        *rows,
        "",
        f"Goals: stored forecasts ≥ {goals['stored_forecasts_rps_min']:,.0f} req/s with p99 < "
        f"{goals['stored_forecasts_p99_ms_max']:.0f} ms at {setup['connections']} connections — "
        f"**{'met' if goals['stored_forecasts_met'] else 'not met'}**; "
        f"tiles at least as fast as tipg — {tiles}.",
        *sweep_text,
        *paced_text,
        "",
        "Load averages (1, 5, 15 min) before and after the run: "
        + " → ".join(", ".join(f"{v:.2f}" for v in result["machine"].get(k) or []) or "?"
                     for k in ("load_average_before", "load_average_after")) + ".",
    ])
