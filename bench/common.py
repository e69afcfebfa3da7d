"""Shared pieces of the benchmarks: a throw-away server, timing, results files."""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import psycopg
from psycopg import sql

from ciu.cluster import Cluster

RESULTS = Path(__file__).resolve().parent / "results"


@contextmanager
def bench_cluster(*, port: int = 5434):
    """A private PostGIS cluster for one benchmark run (durable settings, like a user's)."""
    home = Path(tempfile.mkdtemp(prefix="ciu-bench-"))
    os.chmod(home, 0o755)
    cluster = Cluster(home / "pgdata", Path(f"/tmp/ciu-bench-{port}-{os.getpid()}"), port=port)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def in_background(server) -> Iterator[str]:
    """Run an HTTP server (``serve_forever``/``shutdown``) in a background thread; yields its URL."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def fresh_db(cluster: Cluster, name: str) -> str:
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return cluster.url(name)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(module: str, *args: str) -> dict:
    """Run one side of a benchmark in its own process (so peak memory is its own)."""
    out = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        **payload,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


class Timer:
    def __enter__(self) -> "Timer":
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0


def server_floor(url: str, where: str = "true") -> dict[str, dict]:
    """What the server alone needs to hold the units of ``ciu.unit`` matching ``where``.

    The rows go out with ``COPY … TO STDOUT`` and back, as they are, with one
    binary ``COPY`` into two new tables in turn, each then given the same
    secondary indexes as ``ciu.unit`` (code, GIST, parent, level) and
    ``ANALYZE``d:

    - ``bare``: the same columns and nothing else (no key, checks or
      trigger); no loader that keeps those indexes takes less of the server;
    - ``guarded``: with the primary key, the check constraints and the tree
      trigger of ``ciu.unit`` (parents looked up in ``ciu.unit``): the
      server's share of our own load, without the client.
    """
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        rows = bytearray()
        with cur.copy(f"COPY (SELECT * FROM ciu.unit WHERE {where}) TO STDOUT (FORMAT BINARY)") as copy:
            for data in copy:
                rows += data
        indexes = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'ciu'"
                               " AND tablename = 'unit' AND indexname <> 'unit_pkey'").fetchall()
        out = {}
        for variant in ("bare", "guarded"):
            table = f"{variant}_unit"
            conn.execute(f"DROP TABLE IF EXISTS public.{table}")
            if variant == "bare":
                conn.execute(f"CREATE TABLE public.{table} (LIKE ciu.unit)")
            else:
                conn.execute(f"CREATE TABLE public.{table} (LIKE ciu.unit INCLUDING DEFAULTS INCLUDING CONSTRAINTS,"
                             " PRIMARY KEY (id))")
                conn.execute(f"CREATE TRIGGER tree AFTER INSERT ON public.{table} REFERENCING NEW TABLE AS new_units"
                             " FOR EACH STATEMENT EXECUTE FUNCTION ciu.unit_after_insert()")
            with Timer() as t_copy:
                with cur.copy(f"COPY public.{table} FROM STDIN (FORMAT BINARY)") as copy:
                    copy.write(rows)
            each = {}
            for name, definition in indexes:
                with Timer() as t:
                    conn.execute(definition.replace(f"INDEX {name} ON ciu.unit", f"INDEX {variant}_{name} ON public.{table}"))
                each[name] = round(t.seconds, 2)
            with Timer() as t_analyze:
                conn.execute(f"ANALYZE public.{table}")
            n = conn.execute(f"SELECT count(*) FROM public.{table}").fetchone()[0]
            conn.execute(f"DROP TABLE public.{table}")
            out[variant] = {"rows": int(n), "copy_s": round(t_copy.seconds, 2), "index_s": each,
                            "indexes_s": round(sum(each.values()), 2), "analyze_s": round(t_analyze.seconds, 2),
                            "seconds": round(t_copy.seconds + sum(each.values()) + t_analyze.seconds, 2),
                            "mb": round(len(rows) / 1e6, 1)}
    return out
