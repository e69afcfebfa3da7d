"""``ciu dashboard …`` and ``ciu export …``: the dashboard server and the exports of the twin."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

dashboard_app = typer.Typer(no_args_is_help=True, help="The operations and planner dashboard (offline).")


def _twin():
    from ciu.twin import Twin

    return Twin.connect()


@dashboard_app.command("serve")
def serve(
    host: Annotated[Optional[str], typer.Option(help="interface (default CIU_DASHBOARD_HOST)")] = None,
    port: Annotated[Optional[int], typer.Option(help="port (default CIU_DASHBOARD_PORT, 8050)")] = None,
    publish: Annotated[bool, typer.Option(help="issue and store a forecast first when none is stored")] = True,
) -> None:
    """Serve the dashboard (operations at /, planner at /planner)."""
    from ciu.viz.app import create_dashboard
    from ciu.viz.data import publish_forecast
    from ciu.viz.settings import DashboardSettings

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = DashboardSettings(**overrides)
    twin = _twin()
    if publish and twin.predictions(variable=settings.variable, limit=1).empty:
        done = publish_forecast(twin, horizons=settings.horizons, variable=settings.variable)
        typer.echo(f"published {done['predictions']:,} forecasts and {done['alerts']} alerts ({done['model']})")
    app = create_dashboard(settings, twin=twin)
    typer.echo(f"dashboard: http://{settings.host}:{settings.port}/  (planner: /planner)")
    app.run(host=settings.host, port=settings.port, debug=False)


@dashboard_app.command("publish")
def publish(
    horizons: Annotated[int, typer.Option(min=1, max=168, help="forecast hours")] = 12,
    threshold: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="risk that raises an alert "
                                                                            "(default CIU_ALERT_THRESHOLD, 0.8)")] = None,
    variable: Annotated[Optional[str], typer.Option(help="variable forecast (default CIU_DASHBOARD_VARIABLE)")] = None,
) -> None:
    """Issue a forecast from the latest observed hour, store it and raise its alerts."""
    from ciu.viz.settings import DashboardSettings

    twin = _twin()
    try:
        from ciu.viz.data import publish_forecast

        done = publish_forecast(twin, horizons=horizons, threshold=threshold,
                                variable=variable or DashboardSettings().variable)
    finally:
        twin.close()
    typer.echo(f"run {done['run_id']} ({done['model']}) issued {done['issued_at']:%Y-%m-%d %H:%M} UTC:"
               f" {done['predictions']:,} forecasts, {done['alerts']} alerts")


export_app = typer.Typer(no_args_is_help=True, help="Export the twin for other tools (offline).")
OutDir = Annotated[Path, typer.Option("--out", help="output directory")]
Restricted = Annotated[bool, typer.Option(help="include restricted attributes (tax, security)")]
Time = Annotated[Optional[str], typer.Option(help="hour shown (UTC); default the busiest hour")]


@export_app.command("geoparquet")
def export_geoparquet(out: OutDir = Path("out/export/geoparquet"), restricted: Restricted = False) -> None:
    """One GeoParquet file per level."""
    from ciu.viz import export

    with _twin() as twin:
        paths = export.export_geoparquet(twin, out, include_restricted=restricted)
    for path in paths:
        typer.echo(f"wrote {path}")


@export_app.command("cityjson")
def export_cityjson(out: Annotated[Path, typer.Option("--out")] = Path("out/export/city.city.json"),
                    restricted: Restricted = False) -> None:
    """Buildings with their storeys as CityJSON 2.0 (LoD1)."""
    from ciu.viz import export

    with _twin() as twin:
        path = export.export_cityjson(twin, out, include_restricted=restricted)
    typer.echo(f"wrote {path}")


@export_app.command("cesium")
def export_cesium(out: OutDir = Path("out/export/cesium"), time: Time = None,
                  copy: Annotated[bool, typer.Option(help="copy Cesium's build instead of linking it")] = False) -> None:
    """Floors as extruded CZML polygons and an offline Cesium viewer page."""
    from ciu.viz import export

    with _twin() as twin:
        page = export.export_cesium(twin, out, time=time, copy=copy)
    typer.echo(f"wrote {page} (serve the directory, e.g. python -m http.server -d {page.parent})")


@export_app.command("kepler")
def export_kepler(out: OutDir = Path("out/export/kepler"),
                  level: Annotated[str | None, typer.Option(help="level exported (default: the buildings)")] = None,
                  time: Time = None,
                  copy: Annotated[bool, typer.Option(help="copy kepler.gl's files instead of linking them")] = False
                  ) -> None:
    """A kepler.gl map file (config and data) of one level and an offline kepler.gl page that opens it."""
    from ciu.viz import export

    with _twin() as twin:
        page = export.export_kepler(twin, out, level=level, time=time, copy=copy)
    typer.echo(f"wrote {page.parent / 'kepler.json'} and {page}"
               f" (serve the directory, e.g. python -m http.server -d {page.parent})")


def register(app: typer.Typer) -> None:
    """Add ``dashboard`` and ``export`` to the ``ciu`` command line."""
    app.add_typer(dashboard_app, name="dashboard")
    app.add_typer(export_app, name="export")
