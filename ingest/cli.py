"""Commands ``ciu ingest`` (any supported file) and ``ciu build nyc`` (Manhattan)."""

from __future__ import annotations

import sys
import time
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from ciu.twin import Twin

build_app = typer.Typer(no_args_is_help=True, help="Build a real city twin from public data.")


class As(str, Enum):
    units = "units"
    observations = "observations"


class OnConflict(str, Enum):
    error = "error"
    keep = "keep"


def _twin() -> Twin:
    from ciu.settings import DatabaseSettings
    from ciu.twin import Twin

    return Twin.connect(settings=DatabaseSettings())


def ingest_command(
    path: Annotated[Path, typer.Argument(help="the file to load")],
    level: Annotated[Optional[str], typer.Option(help="level of the units (or of the units the series names)")] = None,
    as_: Annotated[Optional[As], typer.Option("--as", help="load as units or observations (default: by format)")] = None,
    loader: Annotated[Optional[str], typer.Option(help="loader name (default: the first that opens the file)")] = None,
    key: Annotated[Optional[str], typer.Option(help="identifier column (units) or unit column (long series)")] = None,
    name: Annotated[Optional[str], typer.Option(help="display-name column (units)")] = None,
    crs: Annotated[Optional[str], typer.Option(help="CRS to assume when the file names none, e.g. EPSG:2263")] = None,
    floors: Annotated[bool, typer.Option(help="make floors for buildings (floor count or height ÷ storey)")] = False,
    storey_height: Annotated[float, typer.Option(help="metres per storey for estimated floors")] = 3.0,
    floors_column: Annotated[str, typer.Option(help="floor-count column")] = "floors",
    height_column: Annotated[str, typer.Option(help="height column (metres)")] = "height_m",
    variable: Annotated[Optional[str], typer.Option(help="the variable of the values (wide series)")] = None,
    layout: Annotated[Optional[str], typer.Option(help="long or wide (series)")] = None,
    time_column: Annotated[str, typer.Option("--time", help="time column (series)")] = "time",
    value_column: Annotated[str, typer.Option("--value", help="value column (long series)")] = "value",
    tz: Annotated[str, typer.Option(help="time zone of naive timestamps")] = "UTC",
    unit_dim: Annotated[Optional[str], typer.Option(help="unit dimension of a NetCDF variable")] = None,
    on_conflict: Annotated[OnConflict, typer.Option(help="a value differing from a stored one: error or keep")] =
    OnConflict.error,
) -> None:
    """Load a vector layer, CityJSON, time series or NetCDF file into the twin (idempotent)."""
    from ciu.ingest.base import FileOptions, loader_for, loader_named
    from ciu.ingest.generic import ingest_file

    chosen = loader_named(loader) if loader else loader_for(path)
    options = FileOptions(
        level=level, as_=as_.value if as_ else None, key=key, name=name, crs=crs, floors=floors,
        storey_height=storey_height, floors_column=floors_column, height_column=height_column, variable=variable,
        layout=layout, time_column=time_column, value_column=value_column, tz=tz, unit_dim=unit_dim,
        on_conflict=on_conflict.value)
    t0 = time.perf_counter()
    with _twin() as twin:
        report, lines = ingest_file(twin, path, loader=chosen, options=options)
    for line in lines:
        typer.echo(line)
    if report.skipped_source:
        typer.echo(f"{path}: already loaded as source #{report.source_id}, nothing to do")
    else:
        typer.echo(f"{path}: {report.inserted:,} new, {report.unchanged:,} unchanged"
                   + (f", {report.conflicts:,} conflicting values kept as stored" if report.conflicts else "")
                   + f" (source #{report.source_id}, {time.perf_counter() - t0:.1f} s)")


@build_app.command("nyc")
def build_nyc_command(
    data: Annotated[Optional[Path], typer.Option(help="directory of the NYC files (default ../shared/data/nyc)")] = None,
    flows: Annotated[bool, typer.Option(help="load the hourly bike and taxi flows")] = True,
) -> None:
    """Build Manhattan: borough, community districts, taxi zones, buildings, floors and their series."""
    from ciu.errors import ValidationError
    from ciu.ingest.nyc import build_nyc, default_data_dir

    data = data or default_data_dir()
    if data is None:
        raise ValidationError("no NYC data directory: give --data DIR (the files of ../shared/data/nyc)")
    t0 = time.perf_counter()
    with _twin() as twin:
        report = build_nyc(twin, data, flows=flows, progress=lambda m: print(f"loading {m}…", file=sys.stderr))
        for line in report.lines():
            typer.echo(line)
        typer.echo(f"Manhattan built in {time.perf_counter() - t0:.1f} s")


def echo_sources_per_level(twin: Twin) -> None:
    """Print, per level, which sources its units and observations came from."""
    rows = twin.sources_per_level()
    if not rows:
        return
    typer.echo("  sources per level:")
    for level in reversed(twin.levels):
        mine = [r for r in rows if r["level"] == level]
        for r in mine:
            typer.echo(f"    {level:<10} #{r['source_id']} {r['kind']:<12} {r['n']:>10,}  {r['uri']}")
