"""The ``ciu`` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ciu.api import cli as api_cli
from ciu.errors import CiuError
from ciu.ingest import cli as ingest_cli
from ciu.models import cli as models_cli
from ciu.viz import cli as viz_cli

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, help="CIU Twin: a city as a hierarchy of units in PostGIS.")
db_app = typer.Typer(no_args_is_help=True, help="The twin's PostGIS database.")
sample_app = typer.Typer(no_args_is_help=True, help="The project's sample city.")
variables_app = typer.Typer(no_args_is_help=True, help="The variables the twin knows: what they measure, how they roll up.")
app.add_typer(db_app, name="db")
app.add_typer(sample_app, name="sample")
app.add_typer(variables_app, name="variables")
app.add_typer(api_cli.keys_app, name="keys")
app.command("serve")(api_cli.serve)
app.command("ingest")(ingest_cli.ingest_command)
app.add_typer(ingest_cli.build_app, name="build")
viz_cli.register(app)
models_cli.register(app)  # ciu train / evaluate / predict


def _settings():
    from ciu.settings import DatabaseSettings

    return DatabaseSettings()


def _twin():
    from ciu.twin import Twin

    return Twin.connect(settings=_settings())


# -- db ---------------------------------------------------------------------
@db_app.command("start")
def db_start() -> None:
    """Start the embedded PostgreSQL + PostGIS cluster (no-op when it runs)."""
    from ciu.cluster import Cluster

    settings = _settings()
    if settings.database_url:
        typer.echo("CIU_DATABASE_URL is set: using that database, nothing to start")
        return
    cluster = Cluster.from_settings(settings)
    was = cluster.running()
    cluster.start()
    cluster.ensure_database(settings.db_name)
    typer.echo(f"database {'already running' if was else 'started'}: {cluster.url(settings.db_name)}")


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded cluster."""
    from ciu.cluster import Cluster

    Cluster.from_settings(_settings()).stop()
    typer.echo("database stopped")


@db_app.command("status")
def db_status() -> None:
    """Say whether the database is up."""
    from ciu.cluster import Cluster

    settings = _settings()
    if settings.database_url:
        from ciu.store import Store

        store = Store.connect(settings.database_url)
        typer.echo(f"external database reachable: {store.conn.info.dsn}")
        store.close()
        return
    cluster = Cluster.from_settings(settings)
    state = "running" if cluster.running() else ("stopped" if cluster.initialized else "not initialised")
    typer.echo(f"embedded cluster {state} in {settings.pgdata}")
    if state != "running":
        raise typer.Exit(3)


@db_app.command("url")
def db_url() -> None:
    """Print the libpq URL of the twin's database."""
    from ciu.db import database_url

    typer.echo(database_url(_settings()))


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply the schema migrations (a no-op when up to date)."""
    import psycopg

    from ciu.db import database_url
    from ciu.migrate import migrate
    from ciu.settings import configured_levels

    with psycopg.connect(database_url(_settings()), autocommit=True) as conn:
        done = migrate(conn, levels=configured_levels())
    typer.echo(f"applied migrations {done}" if done else "schema up to date")


# -- sample -------------------------------------------------------------------
@sample_app.command("build")
def sample_build(
    config: Annotated[Path, typer.Option(help="sample city configuration")] = Path("data/sample/city.toml"),
    buildings: Annotated[Optional[int], typer.Option(help="override the number of buildings")] = None,
    weeks: Annotated[Optional[int], typer.Option(help="override the number of weeks")] = None,
    seed: Annotated[Optional[int], typer.Option(help="override the seed")] = None,
) -> None:
    """Generate the sample city and load it (idempotent)."""
    import time

    from tqdm import tqdm

    from ciu.ingest.generator import SampleConfig, build_sample

    cfg = SampleConfig.from_toml(config, buildings=buildings, weeks=weeks, seed=seed)
    t0 = time.perf_counter()
    with _twin() as twin, tqdm(total=3, desc=f"sample city {cfg.name}", unit="step", file=sys.stderr) as bar:
        def progress(step: str, n: int) -> None:
            bar.set_postfix_str(f"{step}: {n:,}")
            bar.update(1)

        report = build_sample(twin, cfg, uri=str(config), progress=progress)
    if report.skipped_source:
        typer.echo(f"sample city {cfg.name!r}: already built with this configuration, nothing to do")
    else:
        typer.echo(f"sample city {cfg.name!r} built in {time.perf_counter() - t0:.1f} s: {'; '.join(report.notes)}")


# -- variables -----------------------------------------------------------------
@variables_app.command("add")
def variables_add(
    name: Annotated[str, typer.Argument(help="lower-case letters, digits and _ (e.g. pedestrians)")],
    unit: Annotated[str, typer.Option("--unit", help="unit of measure, e.g. persons, degC, mm")],
    space: Annotated[str, typer.Option(help="physical, social, information or external")],
    rollup: Annotated[str, typer.Option(help="how a parent's value comes from its children's: sum (counts), mean,"
                                             " area_weighted_mean (e.g. temperature), max or min")],
    resample: Annotated[str, typer.Option(help="how values combine over time: sum, mean, max or min")] = "mean",
    scope: Annotated[str, typer.Option(help="public, or restricted (only roles that may read it)")] = "public",
    description: Annotated[str, typer.Option(help="what it is, in words")] = "",
) -> None:
    """Register a variable so that series of it can be loaded (idempotent).

    Example: ``ciu variables add pedestrians --unit persons --space social --rollup sum --resample sum``.
    Registering a name again with the same definition does nothing; with another definition it is refused.
    """
    from ciu.domain import Variable

    var = Variable(name=name, unit_of_measure=unit, space=space, rollup=rollup, resample=resample,  # type: ignore[arg-type]
                   scope=scope, description=description)  # type: ignore[arg-type]
    with _twin() as twin:
        known = {v.name for v in twin.variables()}
        twin.register_variables([var])
    typer.echo(f"variable {name!r} {'already registered, unchanged' if name in known else 'registered'}:"
               f" [{unit}] {space}/{scope}, roll-up {rollup}, resample {resample}")


@variables_app.command("list")
def variables_list() -> None:
    """The registered variables."""
    with _twin() as twin:
        for var in twin.variables():
            typer.echo(f"{var.name}\t[{var.unit_of_measure}]\t{var.space}/{var.scope}\troll-up {var.rollup}\t"
                       f"resample {var.resample}\t{var.description}")


# -- info ----------------------------------------------------------------------
@app.command("info")
def info() -> None:
    """Units per level, variables, time range and sources."""
    with _twin() as twin:
        s = twin.summary()
        typer.echo("CIU Twin")
        typer.echo("  units per level (top first):")
        for level in reversed(twin.levels):
            typer.echo(f"    {level:<10} {s['units'][level]:>10,}")
        typer.echo("  variables:")
        series = s["series"]
        for var in twin.variables():
            rows = series[series["variable"] == var.name]
            where = ", ".join(f"{r.level} {r.n:,} obs" for r in rows.itertuples()) or "no observations"
            typer.echo(f"    {var.name:<15} [{var.unit_of_measure}] {var.space}/{var.scope}, roll-up {var.rollup}: {where}")
        t0, t1 = s["time_range"]
        typer.echo(f"  time range: {t0} → {t1}" if t0 is not None else "  time range: no observations")
        typer.echo("  sources:")
        for src in s["sources"]:
            typer.echo(f"    #{src.id} {src.uri} sha256 {src.sha256[:12]}… by {src.loader} {src.loader_version},"
                       f" {src.rows:,} rows, {src.loaded_at:%Y-%m-%d %H:%M}")
        ingest_cli.echo_sources_per_level(twin)


@app.command("sources")
def sources() -> None:
    """List the provenance records of every load."""
    with _twin() as twin:
        for src in twin.sources():
            typer.echo(f"#{src.id}\t{src.uri}\t{src.sha256}\t{src.loader} {src.loader_version}\t{src.rows}\t"
                       f"{src.loaded_at.isoformat()}")


# -- views -------------------------------------------------------------------------
@app.command("view")
def view(
    out: Annotated[Path, typer.Option(help="where to write the HTML")] = Path("out/twin-3d.html"),
    time: Annotated[Optional[str], typer.Option(help="hour to show (default: the busiest hour)")] = None,
) -> None:
    """Write an offline 3D HTML view: buildings extruded, coloured by people count."""
    from ciu.viz.deck import write_buildings_view

    with _twin() as twin:
        path, shown = write_buildings_view(twin, out, time=time)
    typer.echo(f"3D view of {shown} written to {path.resolve()}")


def main() -> None:
    try:
        app()
    except CiuError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
