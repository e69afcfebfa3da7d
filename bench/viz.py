"""Time to the first painted frame of the 3D view with ~100k buildings, in headless Chromium, offline.

A synthetic city (``ingest.generator.generate_bulk_units``) is drawn as
extruded buildings by deck.gl, served from the npm package on loopback, in two
ways side by side in one run:

- ``records``: a JSON array of objects (outline, height, colour), the form the
  dashboard's layer builders send;
- ``binary``: the same buildings as flat typed arrays (positions, ring starts,
  heights, colours) handed to deck.gl's binary attribute interface.

For each, the time from navigation start until deck.gl has drawn a frame with
the layer loaded is read in the page (``performance.now()``), median of
``--repeat`` loads, and the bytes sent are counted. Writes
``bench/results/viz.json``. Run with ``make bench-viz``.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import shapely

from bench.common import in_background, write_result

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 3.0

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>bench</title>
<script src="deck.gl/dist.min.js"></script>
<style>html,body{{margin:0;width:100%;height:100%;background:#11151c}}</style></head><body>
<script>
const view = {view};
function draw(data, extra) {{
  const layer = new deck.SolidPolygonLayer(Object.assign({{
    id: "buildings", data: data, extruded: true, pickable: false,
  }}, extra));
  let done = false;
  new deck.Deck({{
    initialViewState: view, controller: true, layers: [layer],
    onAfterRender: function () {{
      if (!done && layer.isLoaded) {{
        done = true;
        requestAnimationFrame(function () {{ window.firstFrame = performance.now(); }});
      }}
    }},
  }});
}}
{loader}
</script></body></html>"""

RECORDS = """fetch("records.json").then(r => r.json()).then(function (rows) {
  draw(rows, { getPolygon: d => d.p, getElevation: d => d.h, getFillColor: d => d.c });
});"""

BINARY = """Promise.all(["pos.f64", "start.u32", "elev.f32", "color.u8"].map(
  f => fetch(f).then(r => r.arrayBuffer()))).then(function (b) {
  const start = new Uint32Array(b[1]);
  draw({ length: start.length - 1, startIndices: start, attributes: {
    getPolygon: { value: new Float64Array(b[0]), size: 2 },
    getElevation: { value: new Float32Array(b[2]), size: 1 },
    getFillColor: { value: new Uint8Array(b[3]), size: 4, normalized: true } } },
    { _normalize: false, positionFormat: "XY" });
});"""


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        """Serve without a line per request."""


@contextmanager
def serving_directory(directory: Path) -> Iterator[str]:
    """Serve the files of ``directory`` on 127.0.0.1 in a background thread; yields its URL."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    with in_background(http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)) as url:
        yield url


def city(buildings: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Footprints (closed, counter-clockwise), heights and colours of the synthetic city's buildings."""
    from ciu.ingest.generator import generate_bulk_units
    from ciu.viz.deck import ramp_colors

    units = generate_bulk_units(buildings=buildings, floors_mean=3.0, seed=3)
    b = units[units["level"] == "building"]
    geoms = shapely.orient_polygons(np.asarray(b.geometry.values, dtype=object))
    heights = b["z_max"].to_numpy(dtype=float)
    colors = ramp_colors(heights, vmax=float(np.percentile(heights, 95)), alpha=255).astype(np.uint8)
    return geoms, heights, colors


def write_pages(out: Path, geoms: np.ndarray, heights: np.ndarray, colors: np.ndarray) -> dict[str, int]:
    """Both pages and their payloads; returns the bytes each page loads besides deck.gl."""
    coords, index = shapely.get_coordinates(shapely.get_exterior_ring(geoms), return_index=True)
    counts = np.bincount(index, minlength=len(geoms))
    start = np.r_[0, np.cumsum(counts)].astype(np.uint32)
    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    view = json.dumps({"longitude": (x0 + x1) / 2, "latitude": (y0 + y1) / 2, "zoom": 12.2, "pitch": 50,
                       "bearing": -20})
    rounded = np.round(coords, 6)
    rows = [{"p": rounded[start[i]:start[i + 1]].tolist(), "h": round(float(h), 1), "c": c.tolist()}
            for i, (h, c) in enumerate(zip(heights, colors))]
    (out / "records.json").write_text(json.dumps(rows, separators=(",", ":")))
    (out / "pos.f64").write_bytes(coords.astype("<f8").tobytes())
    (out / "start.u32").write_bytes(start.astype("<u4").tobytes())
    (out / "elev.f32").write_bytes(heights.astype("<f4").tobytes())
    (out / "color.u8").write_bytes(colors.astype(np.uint8).tobytes())
    (out / "records.html").write_text(PAGE.format(view=view, loader=RECORDS))
    (out / "binary.html").write_text(PAGE.format(view=view, loader=BINARY))
    (out / "deck.gl").symlink_to(ROOT / "viz" / "js" / "node_modules" / "deck.gl", target_is_directory=True)
    sizes = {"records": (out / "records.json").stat().st_size,
             "binary": sum((out / f).stat().st_size for f in ("pos.f64", "start.u32", "elev.f32", "color.u8"))}
    return sizes


def first_frame(base: str, page_name: str) -> tuple[float, list[str], list[str]]:
    """Seconds to the first painted frame of one load, its console errors and requests off the machine."""
    from tests.browser import browser_page

    with browser_page(width=1280, height=800) as (page, log):
        page.goto(f"{base}/{page_name}")
        page.wait_for_function("window.firstFrame !== undefined", timeout=180_000, polling=50)
        return page.evaluate("window.firstFrame") / 1000.0, log.console_errors, log.external_requests


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--buildings", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    geoms, heights, colors = city(args.buildings)
    print(f"city: {len(geoms):,} buildings in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        sizes = write_pages(out, geoms, heights, colors)
        with serving_directory(out) as base:
            runs: dict[str, dict[str, list]] = {n: {"t": [], "errors": [], "external": []} for n in ("records", "binary")}
            for _ in range(args.repeat):  # the two sides take turns, so that load on the machine hits both
                for name, run in runs.items():
                    seconds, errors, external = first_frame(base, f"{name}.html")
                    run["t"].append(seconds)
                    run["errors"] += errors
                    run["external"] += external
            sides = {}
            for name, run in runs.items():
                sides[name] = {"first_frame_s": [round(t, 3) for t in run["t"]],
                               "median_first_frame_s": round(statistics.median(run["t"]), 3),
                               "best_first_frame_s": round(min(run["t"]), 3),
                               "payload_bytes": sizes[name], "payload_mb": round(sizes[name] / 2**20, 2),
                               "console_errors": run["errors"][:5], "external_requests": run["external"][:5]}
                print(f"{name}: {sides[name]}", file=sys.stderr)
    best = min(s["median_first_frame_s"] for s in sides.values())
    result = {
        "buildings": int(len(geoms)), "records": sides["records"], "binary": sides["binary"],
        "speedup_binary_vs_records": round(sides["records"]["median_first_frame_s"]
                                           / sides["binary"]["median_first_frame_s"], 2),
        "goal_s": GOAL_S, "goal_met_by_median": best < GOAL_S,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "renderer": "headless Debian Chromium, SwiftShader (software WebGL), deck.gl from npm, loopback HTTP",
        "note": "time from navigation start to the first frame drawn with the layer loaded; median of loads",
    }
    path = write_result("viz", result)
    print(f"viz benchmark: {len(geoms):,} buildings; records {sides['records']['median_first_frame_s']} s"
          f" ({sides['records']['payload_mb']} MB), binary {sides['binary']['median_first_frame_s']} s"
          f" ({sides['binary']['payload_mb']} MB); goal < {GOAL_S} s; {path}")


if __name__ == "__main__":
    main()
