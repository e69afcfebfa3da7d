"""Scenario latency: eight planners at once beside one planner alone, on a twin's trained champion.

Starts the API (``ciu serve``) on the twin of the current settings (after
``make demo``: the sample city and its trained champion; ``CIU_DB_NAME=manhattan``
after ``make demo-nyc``) once per worker count, and posts the planner's default
what-if (an event of 500 people for two hours, an hour after the last
observation, at a building drawn at random, or a unit of the model's lowest
level where it knows no buildings: Manhattan's taxi zones) first from one planner alone, one
request after the other, then from eight planners at once. With ``W`` scenario
workers, eight planners should wait about ``8 / W`` runs each and no longer: the
p95 of the crowd beside the alone p50 says whether a request blocked another
beyond the pool size.

Writes ``bench/results/scenarios.json`` (another twin: ``scenarios-<twin>.json``). Run with
``make bench-scenarios`` (``CIU_DB_NAME=manhattan make bench-scenarios`` after ``make demo-nyc``).
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

from bench.api import start, wait_ready
from bench.common import write_result

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(base: str, body: dict, key: str) -> tuple[float, int]:
    """One scenario; its latency in ms and its status."""
    req = urllib.request.Request(base + "/scenarios", data=json.dumps(body).encode(), method="POST",
                                 headers={"X-API-Key": key, "Content-Type": "application/json"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return (time.perf_counter() - t0) * 1000, status


def summary(lat: list[float], statuses: list[int], seconds: float) -> dict:
    a = np.asarray(lat)
    return {"requests": len(a), "ok": int(sum(s == 200 for s in statuses)),
            "statuses": {str(s): int(n) for s, n in pd.Series(statuses).value_counts().items()},
            "p50_ms": round(float(np.percentile(a, 50)), 1), "p95_ms": round(float(np.percentile(a, 95)), 1),
            "max_ms": round(float(a.max()), 1), "seconds": round(seconds, 2),
            "per_s": round(len(a) / seconds, 2)}


def crowd(base: str, bodies: list[dict], key: str, planners: int, each: int) -> dict:
    lat: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def planner(i: int) -> None:
        for j in range(each):
            ms, status = post(base, bodies[(i * each + j) % len(bodies)], key)
            with lock:
                lat.append(ms)
                statuses.append(status)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=planner, args=(i,)) for i in range(planners)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summary(lat, statuses, time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--planners", type=int, default=8)
    ap.add_argument("--each", type=int, default=5, help="scenarios per planner in the crowd")
    ap.add_argument("--alone", type=int, default=12, help="scenarios of the planner alone")
    ap.add_argument("--workers", default="1,2", help="scenario workers of the API, one run each")
    args = ap.parse_args(argv)

    from ciu.db import database_url
    from ciu.models.runs import last_observed
    from ciu.store.access import Access
    from ciu.twin import Twin

    url = database_url()
    with Twin.connect(url) as twin:
        newest = twin.newest_run()
        if newest is None:
            sys.exit("no trained model run in this twin: run `make demo` (or `ciu train`) first")
        target = str(newest["target"])
        last = last_observed(twin, target)
        known = twin.levels_from(target)  # an event at a building where the model knows buildings, else at its units
        structure = twin.level_of_kind("structure")
        place = structure.name if structure is not None and structure.name in known else known[0]
        buildings = list(twin.units(level=place).index)
        _, key = Access(twin.store.conn).create_key(name="scenario benchmark", role="operator")
        name = twin.name
    issued = pd.Timestamp(last).tz_convert("UTC").floor("h")
    rng = random.Random(0)
    bodies = [{"variable": target, "event": {"code": rng.choice(buildings),
                                             "time": (issued + pd.Timedelta("1h")).isoformat(),
                                             "people": 500, "hours": 2}} for _ in range(64)]
    runs = []
    work = Path(tempfile.mkdtemp(prefix="ciu-bench-scn-"))
    for workers in [int(w) for w in args.workers.split(",")]:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {"CIU_API_SCENARIO_WORKERS": str(workers), "CIU_API_RATE_LIMIT_PER_MINUTE": "0",
               "CIU_DATABASE_URL": url}
        proc = start([sys.executable, "-m", "ciu.cli", "serve", "--port", str(port)], env,
                     work / f"api-{workers}.log")
        try:
            wait_ready(base + "/health", timeout=120)
            for body in bodies[:2]:  # the model is loaded and cached once per worker process
                post(base, body, key)
            print(f"[scenarios] {workers} worker(s): one planner alone, {args.alone} scenarios…", flush=True)
            lat, statuses = [], []
            t0 = time.perf_counter()
            for body in bodies[:args.alone]:
                ms, status = post(base, body, key)
                lat.append(ms)
                statuses.append(status)
            alone = summary(lat, statuses, time.perf_counter() - t0)
            print(f"[scenarios] {workers} worker(s): {args.planners} planners × {args.each} at once…", flush=True)
            many = crowd(base, bodies, key, args.planners, args.each)
            runs.append({"workers": workers, "alone": alone, "crowd": many,
                         "crowd_p95_over_alone_p50": round(many["p95_ms"] / alone["p50_ms"], 2)})
            print(f"[scenarios] {workers} worker(s): alone p50 {alone['p50_ms']:.0f} ms, p95 {alone['p95_ms']:.0f} ms;"
                  f" {args.planners} at once p50 {many['p50_ms']:.0f} ms, p95 {many['p95_ms']:.0f} ms,"
                  f" {many['ok']}/{many['requests']} answered 200", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    path = write_result("scenarios" if name == "ciu" else f"scenarios-{name}", {
        "twin": name, "variable": target, "issued_at": issued.isoformat(), "planners": args.planners,
        "each": args.each, "alone_requests": args.alone,
        "scenario": f"event of 500 for 2 h, 1 h after the last observation, at a random unit of level {place!r}",
        "runs": runs})
    print(f"[scenarios] wrote {path}")
    return 0


def markdown(result: dict) -> str:
    lines = [f"`POST /scenarios` on the twin `{result['twin']}` ({result['variable']}, issued"
             f" {result['issued_at']}): {result['scenario']}. One planner alone ({result['alone_requests']} in a row)"
             f" beside {result['planners']} planners at once ({result['each']} each), per number of scenario workers"
             " (`CIU_API_SCENARIO_WORKERS`).", "",
             "| workers | alone p50 ms | alone p95 ms | crowd p50 ms | crowd p95 ms | crowd max ms | answered 200 |"
             " crowd p95 ÷ alone p50 |", "|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        a, c = r["alone"], r["crowd"]
        lines.append(f"| {r['workers']} | {a['p50_ms']:,.0f} | {a['p95_ms']:,.0f} | {c['p50_ms']:,.0f} |"
                     f" {c['p95_ms']:,.0f} | {c['max_ms']:,.0f} | {c['ok']} of {c['requests']} |"
                     f" {r['crowd_p95_over_alone_p50']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
