"""Build benchmark: a ~100k-building / ~1M-floor city loaded two ways, side by side.

1. ``Store.load_units`` (binary COPY, set-based checks, the tree invariant);
2. ``GeoDataFrame.to_postgis`` — what a user would write without CIU Twin.

Each side runs in its own process on the same generated city, into its own
fresh database of the same PostGIS server. Results: ``bench/results/build.json``.

    python -m bench.build [--buildings 100000]
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
from pathlib import Path

from bench.common import Timer, bench_cluster, fresh_db, peak_rss_mb, run_child, server_floor, write_result


def make_city(buildings: int, path: Path) -> dict:
    from ciu.ingest.generator import generate_bulk_units

    with Timer() as t:
        units = generate_bulk_units(buildings=buildings)
    with open(path, "wb") as fh:
        pickle.dump(units, fh, protocol=pickle.HIGHEST_PROTOCOL)
    counts = units["level"].value_counts().to_dict()
    return {"generate_seconds": round(t.seconds, 2), "units": int(len(units)), "per_level": counts}


def side_ciu(url: str, path: str) -> dict:
    from ciu.twin import Twin

    with open(path, "rb") as fh:
        units = pickle.load(fh)
    twin = Twin.connect(url)
    with Timer() as t:
        report = twin.load_units(units)
    n = twin.store.conn.execute("SELECT count(*) FROM ciu.unit").fetchone()[0]
    twin.close()
    return {"seconds": t.seconds, "rows": int(n), "inserted": report.inserted, "peak_rss_mb": peak_rss_mb()}


def side_to_postgis(url: str, path: str) -> dict:
    import sqlalchemy

    with open(path, "rb") as fh:
        units = pickle.load(fh)
    # what a user does: attributes as text, one table for all units
    units = units.assign(attrs=units["attrs"].map(lambda a: json.dumps(a) if isinstance(a, dict) else None))
    host = url.split("host=")[1].split("&")[0]
    port = url.split("port=")[1]
    dbname = url.split("/")[3].split("?")[0]
    engine = sqlalchemy.create_engine(f"postgresql+psycopg://postgres@/{dbname}?host={host}&port={port}")
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("CREATE EXTENSION IF NOT EXISTS postgis"))
    with Timer() as t:
        units.to_postgis("units", engine, if_exists="replace", index=False, chunksize=50_000)
    with engine.connect() as conn:
        n = conn.execute(sqlalchemy.text("SELECT count(*) FROM units")).scalar()
    engine.dispose()
    return {"seconds": t.seconds, "rows": int(n), "peak_rss_mb": peak_rss_mb()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--buildings", type=int, default=100_000)
    parser.add_argument("--side", choices=["ciu", "to_postgis"])
    parser.add_argument("--url")
    parser.add_argument("--data")
    args = parser.parse_args(argv)
    if args.side:
        fn = side_ciu if args.side == "ciu" else side_to_postgis
        print(json.dumps(fn(args.url, args.data)))
        return
    with tempfile.TemporaryDirectory() as tmp, bench_cluster() as cluster:
        data = Path(tmp) / "units.pkl"
        city = make_city(args.buildings, data)
        print(f"city: {city}", file=sys.stderr)
        ours_url = fresh_db(cluster, "b_ciu")
        ours = run_child("bench.build", "--side", "ciu", "--url", ours_url, "--data", str(data))
        print(f"ciu: {ours}", file=sys.stderr)
        floor = server_floor(ours_url)
        print(f"server alone: {floor}", file=sys.stderr)
        peer = run_child("bench.build", "--side", "to_postgis", "--url", fresh_db(cluster, "b_peer"), "--data",
                         str(data))
        print(f"to_postgis: {peer}", file=sys.stderr)
    for side in (ours, peer):
        side["rows_per_s"] = round(side["rows"] / side["seconds"])
        side["seconds"] = round(side["seconds"], 2)
        side["peak_rss_mb"] = round(side["peak_rss_mb"], 1)
    result = {"city": city, "ciu_load_units": ours, "geopandas_to_postgis": peer,
              "speedup": round(peer["seconds"] / ours["seconds"], 2),
              "server_floor": floor, "five_times_to_postgis_s": round(peer["seconds"] / 5, 2),
              "note": "same units, same PostGIS server, separate fresh databases, one process per side"}
    path = write_result("build", result)
    print(f"build benchmark: ours {ours['seconds']} s ({ours['rows_per_s']:,} rows/s), "
          f"to_postgis {peer['seconds']} s ({peer['rows_per_s']:,} rows/s) → {result['speedup']}× ; {path}")


if __name__ == "__main__":
    main()


def markdown(result: dict) -> str:
    """The build benchmark as a table."""
    ours, peer, city = result["ciu_load_units"], result["geopandas_to_postgis"], result["city"]
    levels = ", ".join(f"{n:,} {lv}" for lv, n in sorted(city["per_level"].items(), key=lambda kv: -kv[1]))
    return "\n".join([
        f"Synthetic city of {city['units']:,} units ({levels}), loaded into fresh databases of one PostGIS",
        "server, each side in its own process (`python -m bench.build`).",
        "",
        "| loader | seconds | rows/s | peak RSS (MB) |",
        "|---|---:|---:|---:|",
        f"| `Twin.load_units` (checks + binary COPY + tree invariant) | {ours['seconds']} | {ours['rows_per_s']:,} | {ours['peak_rss_mb']} |",
        f"| `GeoDataFrame.to_postgis` (no checks, no hierarchy) | {peer['seconds']} | {peer['rows_per_s']:,} | {peer['peak_rss_mb']} |",
        "",
        f"Speed-up: **{result['speedup']}×**.",
        *_floor_lines(result),
    ])


def _floor_lines(result: dict) -> list[str]:
    """The server's share alone (``bench.common.server_floor``), when the run measured it."""
    floor = result.get("server_floor")
    if not floor:
        return []
    bare, guarded = floor["bare"], floor["guarded"]
    return [
        "",
        f"The server alone (`bench.common.server_floor`), the same {bare['rows']:,} rows ({bare['mb']} MB) sent "
        f"back as they are: into a table guarded like `ciu.unit` (key, checks, tree trigger) with the same four "
        f"indexes and `ANALYZE`, **{guarded['seconds']} s** (copy {guarded['copy_s']} s, indexes "
        f"{guarded['indexes_s']} s, `ANALYZE` {guarded['analyze_s']} s); into a bare table (no key, checks or "
        f"trigger), **{bare['seconds']} s** (copy {bare['copy_s']} s, indexes {bare['indexes_s']} s, `ANALYZE` "
        f"{bare['analyze_s']} s). Five times the speed of `to_postgis` would be "
        f"{result['five_times_to_postgis_s']} s for everything.",
    ]
