"""The twin: the read model every other part of CIU Twin goes through.

>>> from ciu import Twin                                  # doctest: +SKIP
>>> twin = Twin.connect()                                 # doctest: +SKIP
>>> twin.units(level="district")                          # doctest: +SKIP
>>> twin.rollup("people", level="district", freq="D")     # doctest: +SKIP
>>> twin.cube(level="grid", variables=["people"])         # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr

from ciu.clock import utc
from ciu.domain import LoadReport, SourceInfo, SourceRecord, Variable
from ciu.errors import ConfigError
from ciu.levels import Kind, Level, of_kind
from ciu.settings import DatabaseSettings
from ciu.store import Store
from ciu.store.access import Role


@dataclass
class Unit:
    """One City Information Unit, with its place in the hierarchy."""

    code: str
    level: str
    name: str | None
    parent_code: str | None
    geometry: shapely.Geometry
    z_min: float | None
    z_max: float | None
    area_m2: float
    attrs: dict[str, Any]
    restricted: dict[str, Any] | None = None
    _twin: Twin | None = field(default=None, repr=False, compare=False)

    @property
    def parent(self) -> Unit | None:
        """The unit one level up (``None`` for the root)."""
        if self.parent_code is None or self._twin is None:
            return None
        return self._twin.unit(self.parent_code)

    @property
    def children(self) -> list[Unit]:
        """The units one level down."""
        if self._twin is None:
            return []
        codes = self._twin.store.child_codes(self.code)
        return [self._twin.unit(c) for c in codes]

    @property
    def ancestors(self) -> list[Unit]:
        """Parent, grandparent, ... up to the root."""
        if self._twin is None:
            return []
        return [self._twin.unit(c) for c in self._twin.store.ancestor_codes(self.code)]


def _to_datetime(value: datetime | str | None) -> datetime | None:
    if value is None:
        return None
    return utc(value).to_pydatetime()


class Twin:
    """A city twin stored in PostGIS.

    Use :meth:`connect`; everything reads through the :class:`~ciu.store.Store`.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    @classmethod
    def connect(cls, url: str | None = None, *, settings: DatabaseSettings | None = None, migrate: bool = True) -> Twin:
        """Open the twin.

        Parameters
        ----------
        url
            A libpq URL of any PostGIS database. When ``None``, ``CIU_DATABASE_URL``
            is used, and when that is unset the embedded cluster is started.
        settings
            Database settings; read from the environment when ``None``.
        migrate
            Bring the schema up to date on connect (a no-op when it is).
        """
        from ciu.db import database_url

        settings = settings or DatabaseSettings()
        store = Store.connect(url or database_url(settings))
        if migrate:
            from ciu.migrate import migrate as run_migrations
            from ciu.settings import configured_levels

            run_migrations(store.conn, levels=configured_levels())
        return cls(store)

    def close(self) -> None:
        self.store.close()

    def statement_timeout(self, seconds: float | None):
        """A context in which every statement of this twin is cancelled after ``seconds``."""
        return self.store.statement_timeout(seconds)

    def __enter__(self) -> Twin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the hierarchy -------------------------------------------------------
    @property
    def levels(self) -> tuple[str, ...]:
        """Level names, bottom to top."""
        return self.store.levels()

    @property
    def level_specs(self) -> tuple[Level, ...]:
        """The levels with their kind and key prefix, bottom to top (see :mod:`ciu.levels`)."""
        return self.store.level_specs()

    def level(self, name: str) -> Level:
        """One level by name (:class:`~ciu.errors.UnknownLevel` when the twin has none of that name)."""
        return self.level_specs[self.store.rank(name)]

    def level_of_kind(self, kind: Kind) -> Level | None:
        """The twin's lowest level of ``kind`` (``structure``: buildings, ``storey``: floors), or ``None``."""
        return of_kind(self.level_specs, kind)

    def count_units(self) -> dict[str, int]:
        """How many units each level holds (one query)."""
        return self.store.count_units()

    @property
    def timezone(self) -> str:
        """The city's time zone: the top unit's ``timezone`` attribute (UTC when none is given)."""
        for attrs in self.units(level=self.levels[-1])["attrs"]:
            if isinstance(attrs, dict) and attrs.get("timezone"):
                return str(attrs["timezone"])
        return "UTC"

    def levels_from(self, variable: str) -> list[str]:
        """The levels where ``variable`` is known, bottom to top (empty when it has no observations).

        That is the lowest level where it is observed and every level above it:
        a count kept per taxi zone is known for zones, districts and the city,
        while nothing says how it splits over the buildings and floors below.
        """
        observed = self.store.observed_levels(variable)
        levels = list(self.levels)
        return levels[levels.index(observed[0]):] if observed else []

    def rank(self, level: str) -> int:
        """A level's rank (0 = bottom); :class:`~ciu.errors.UnknownLevel` when the twin has no such level."""
        return self.store.rank(level)

    def variables(self) -> list[Variable]:
        return self.store.variables()

    def variable(self, name: str) -> Variable:
        """One registered variable; :class:`~ciu.errors.UnknownVariable` when it is not registered."""
        return self.store.variable(name)

    def register_variables(self, variables: Sequence[Variable]) -> None:
        """Register variables; a name already registered must keep its definition."""
        self.store.register_variables(variables)

    def observed_levels(self, variable: str) -> list[str]:
        """The levels where ``variable`` has observations, bottom to top."""
        return self.store.observed_levels(variable)

    def series_extent(self) -> pd.DataFrame:
        """Per variable and level: how many observations, the first and the last time."""
        return self.store.series_extent()

    def observation_times(self, variable: str, *, level: str) -> pd.DatetimeIndex:
        """The distinct times (UTC) at which ``variable`` is observed at ``level``."""
        return self.store.observation_times(variable, level=level)

    # -- provenance ------------------------------------------------------------------
    def sources(self) -> list[SourceRecord]:
        return self.store.sources()

    def find_source(self, sha256: str, loader: str, params: dict[str, Any] | None = None) -> SourceRecord | None:
        """The source already loaded from the same bytes by the same loader with the same parameters."""
        return self.store.find_source(sha256, loader, params)

    def sources_per_level(self) -> list[dict[str, Any]]:
        """Which sources hold the units and observations of each level (``level, kind, source_id, uri, n``)."""
        return self.store.sources_per_level()

    def data_hash(self) -> str:
        """A fingerprint of the units and observations: changes whenever either does."""
        return self.store.data_hash()

    @property
    def name(self) -> str:
        """The name of the twin's database."""
        return str(self.store.conn.info.dbname)

    def units(
        self,
        *,
        level: str | None = None,
        bbox: tuple[float, float, float, float] | None = None,
        within: str | None = None,
        codes: Sequence[str] | None = None,
        include_restricted: bool = False,
    ) -> gpd.GeoDataFrame:
        """Units as a GeoDataFrame (EPSG:4326), indexed by code.

        Parameters
        ----------
        level
            Only units of this level.
        bbox
            ``(min lon, min lat, max lon, max lat)``: units whose bounding box meets it.
        within
            Only the unit with this code and the units below it.
        codes
            Only these units.
        include_restricted
            Add the restricted attributes (for callers allowed to see them).
        """
        rows = self.store.unit_rows(level=level, bbox=bbox, within=within, codes=codes,
                                    include_restricted=include_restricted)
        frame = pd.DataFrame(rows, columns=["id", "code", "level", "name", "parent_code", "geometry", "z_min",
                                            "z_max", "area_m2", "attrs"] + (["restricted"] if include_restricted else []))
        geoms = shapely.from_wkb(np.asarray([bytes(g) for g in frame["geometry"]], dtype=object)) if len(frame) else []
        gdf = gpd.GeoDataFrame(frame.drop(columns=["geometry", "id"]), geometry=list(geoms), crs="EPSG:4326")
        return gdf.set_index("code")

    def unit_rows(self, *, include_restricted: bool = False, **filters: Any) -> list[dict[str, Any]]:
        """Units as plain rows (GeoJSON geometry), the fast path for services; ``filters`` as :meth:`units`."""
        return self.store.unit_rows(include_restricted=include_restricted, **filters)

    def unit_row(self, code: str, *, include_restricted: bool = False) -> dict[str, Any]:
        """One unit as a plain row; :class:`~ciu.errors.UnknownUnit` when there is none."""
        return self.store.unit_row(code, include_restricted=include_restricted)

    def child_codes(self, code: str) -> list[str]:
        return self.store.child_codes(code)

    def ancestor_codes(self, code: str) -> list[str]:
        """The ancestors' codes, the parent first and the root last."""
        return self.store.ancestor_codes(code)

    def unit_ids(self, codes: Sequence[str]) -> dict[str, int]:
        """The ids of those ``codes`` that are units of the twin."""
        return self.store.unit_ids(codes)

    def unit(self, code: str, *, include_restricted: bool = False) -> Unit:
        """One unit by code, with ``parent``, ``children`` and ``ancestors``."""
        row = self.store.unit_row(code, include_restricted=include_restricted)
        return Unit(
            code=row["code"], level=row["level"], name=row["name"], parent_code=row["parent_code"],
            geometry=shapely.from_wkb(bytes(row["geometry"])), z_min=row["z_min"], z_max=row["z_max"],
            area_m2=row["area_m2"], attrs=row["attrs"], restricted=row.get("restricted"), _twin=self,
        )

    def summary(self) -> dict[str, Any]:
        """Units per level, variables, observed time range and sources."""
        extent = self.store.series_extent()
        return {
            "units": self.store.count_units(),
            "variables": [v.name for v in self.variables()],
            "series": extent,
            "time_range": (extent["tmin"].min(), extent["tmax"].max()) if len(extent) else (None, None),
            "sources": self.sources(),
        }

    def last_observed_hour(self, variable: str) -> pd.Timestamp | None:
        """The last hour (UTC) with observations of ``variable`` at any level; ``None`` when there are none."""
        extent = self.store.series_extent()
        rows = extent[extent["variable"] == variable]
        return None if rows.empty else pd.Timestamp(rows["tmax"].max()).tz_convert("UTC").floor("h")

    # -- features --------------------------------------------------------------
    def observations(
        self, variable: str, *, level: str | None = None, codes: Sequence[str] | None = None,
        start: datetime | str | None = None, end: datetime | str | None = None,
    ) -> pd.DataFrame:
        """Stored observations of one variable (``code, time, value``)."""
        return self.store.observations(variable, level=level, codes=codes, start=_to_datetime(start),
                                       end=_to_datetime(end))

    def rollup(
        self, variable: str, *, level: str, start: datetime | str | None = None,
        end: datetime | str | None = None, freq: str = "h", codes: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """A variable at any level, computed from the levels below by its roll-up rule.

        Returns a frame ``code, time, value`` (time in UTC, the start of each
        ``freq`` bucket; weeks start on Monday).
        """
        return self.store.rollup(variable, level=level, start=_to_datetime(start), end=_to_datetime(end),
                                 freq=freq, codes=codes)

    def cube(
        self, *, level: str, variables: Sequence[str] | None = None, start: datetime | str | None = None,
        end: datetime | str | None = None, freq: str = "h", within: str | None = None,
    ) -> xr.Dataset:
        """The feature cube of one level: an ``xarray.Dataset`` with dims ``unit``, ``time``.

        Every variable is taken at ``level`` through :meth:`rollup` (observed,
        rolled up from below or inherited from above). Missing values are NaN.
        Coordinates carry each unit's name and parent; variables carry their
        unit of measure, space and roll-up rule.
        """
        names = list(variables) if variables is not None else [v.name for v in self.variables()]
        units = self.units(level=level, within=within)
        codes = list(units.index)
        registry = {v.name: v for v in self.variables()}
        frames = {}
        tree = self.store.hierarchy()
        for name in names:
            if name not in registry:
                self.store.variable(name)  # raises UnknownVariable
            frames[name] = self.store.rollup(name, level=level, start=_to_datetime(start), end=_to_datetime(end),
                                             freq=freq, codes=codes if within is not None else None, tree=tree)
        # times as naive UTC datetime64, once per frame: the union is one numpy pass, not a set of Timestamps
        utc = {name: _naive_utc(f["time"]) for name, f in frames.items()}
        time_index = pd.DatetimeIndex(np.unique(np.concatenate(list(utc.values()))) if utc else [])
        data_vars = {}
        for name, frame in frames.items():
            grid = np.full((len(codes), len(time_index)), np.nan)
            if len(frame):
                ui = pd.Index(codes).get_indexer(frame["code"])
                ti = time_index.get_indexer(utc[name])
                grid[ui, ti] = frame["value"].to_numpy()
            var = registry[name]
            data_vars[name] = (("unit", "time"), grid, {
                "units": var.unit_of_measure, "space": var.space, "rollup": var.rollup,
                "resample": var.resample, "scope": var.scope, "long_name": var.description or name,
            })
        return xr.Dataset(
            data_vars,
            coords={
                "unit": codes,
                "time": time_index,
                "name": ("unit", units["name"].fillna("").astype(str).to_numpy()),
                "parent": ("unit", units["parent_code"].fillna("").astype(str).to_numpy()),
                "area_m2": ("unit", units["area_m2"].to_numpy(dtype=float)),
            },
            attrs={"level": level, "freq": freq, "time_zone": "UTC"},
        )

    # -- forecasts: model runs, predictions, alerts ----------------------------------
    def add_model_run(self, *, name: str, kind: str, params: dict[str, Any] | None = None,
                      data_hash: str | None = None, code_version: str | None = None,
                      metrics: dict[str, Any] | None = None, checkpoint: str | None = None,
                      status: str = "trained") -> int:
        """Record a model run; returns its id."""
        return self.store.add_model_run(name=name, kind=kind, params=params, data_hash=data_hash,
                                        code_version=code_version, metrics=metrics, checkpoint=checkpoint,
                                        status=status)

    def update_model_run(self, run_id: int, *, metrics: dict[str, Any] | None = None, checkpoint: str | None = None,
                         status: str | None = None, name: str | None = None) -> None:
        self.store.update_model_run(run_id, metrics=metrics, checkpoint=checkpoint, status=status, name=name)

    def model_runs(self, *, ids: Sequence[int] | None = None) -> pd.DataFrame:
        """Model runs (all, or those of ``ids``), oldest first."""
        return self.store.model_runs(ids=ids)

    def newest_run(self, *, target: str | None = None) -> dict[str, Any] | None:
        """The newest trained forecast run (of ``target``): the one rule, in the store."""
        return self.store.newest_run(target=target)

    def newest_target(self) -> str | None:
        """The variable the newest forecast run predicts (``None`` before any run)."""
        return self.store.newest_target()

    def write_predictions(self, frame: pd.DataFrame, *, run_id: int, scenario: str = "baseline") -> int:
        """Store forecasts (``code, variable, issued_at, horizon, target_time, value`` and quantiles)."""
        return self.store.write_predictions(frame, run_id=run_id, scenario=scenario)

    def predictions(self, **filters: Any) -> pd.DataFrame:
        """Stored forecasts; ``filters`` as :meth:`ciu.store.forecasts.Forecasts.predictions` takes them."""
        return self.store.predictions(**filters)

    def write_alerts(self, frame: pd.DataFrame, *, run_id: int | None, step: pd.Timedelta | None = None,
                     covering: Sequence[str] | None = None) -> int:
        """Raise alerts as episodes (:meth:`ciu.store.forecasts.Forecasts.write_alerts`); ``covering``: the units
        a forecast covered, whose live episodes it no longer raises are resolved."""
        return self.store.write_alerts(frame, run_id=run_id, step=step, covering=covering)

    def alerts(self, *, open_only: bool = False, limit: int = 1000, **filters: Any) -> pd.DataFrame:
        """Alert episodes, newest first; ``filters``: ``codes``, ``level``, ``severity``, ``ids``, ``state``."""
        return self.store.alerts(open_only=open_only, limit=limit, **filters)

    def acknowledge_alert(self, alert_id: int, *, by: str) -> None:
        self.store.acknowledge_alert(alert_id, by=by)

    def resolve_alert(self, alert_id: int, *, by: str, note: str = "") -> None:
        self.store.resolve_alert(alert_id, by=by, note=note)

    def alert_history(self, alert_id: int) -> pd.DataFrame:
        return self.store.alert_history(alert_id)

    # -- who is asking ------------------------------------------------------------------
    def role(self, token: str | None = None, *, without_key: str = "operator") -> Role:
        """The role of a live API key's token (role ``without_key`` when there is no token).

        A token that is not a live key is an error (:class:`~ciu.errors.ConfigError`).
        """
        from ciu.store import ApiStore

        api = ApiStore(self.store.conn)
        roles = api.roles()
        if not token:
            return roles[without_key]
        key = api.key_by_token(token)
        if key is None:
            raise ConfigError("the token is not a live API key")
        return roles[key.role]

    # -- loading -------------------------------------------------------------------
    def load_source(self, info: SourceInfo, load: Callable[[int], tuple[LoadReport, int]]) -> LoadReport:
        """Run ``load(source_id)`` in one transaction with a new source record (the one provenance rule).

        ``load`` returns its report and the number of records it read. A source
        already recorded (same checksum, loader and parameters) is not loaded again.
        """
        known = self.store.find_source(info.sha256, info.loader, info.params)
        if known is not None:
            return LoadReport(source_id=known.id, skipped_source=True,
                              notes=[f"{info.uri}: already loaded as source #{known.id}, nothing to do"])
        with self.store.transaction():
            sid = self.store.add_source(uri=info.uri, sha256=info.sha256, loader=info.loader,
                                        loader_version=info.loader_version, params=info.params)
            report, rows = load(sid)
            self.store.set_source_rows(sid, rows)
        report.source_id = sid
        return report

    def load_units(self, frame: pd.DataFrame, **kwargs: Any) -> LoadReport:
        """Load units (checked by :meth:`ciu.store.Store.check_units`, the CRS included); one transaction."""
        return self.store.load_units(frame, **kwargs)

    def load_observations(self, frame: pd.DataFrame, **kwargs: Any) -> LoadReport:
        return self.store.load_observations(frame, **kwargs)


def _naive_utc(times: pd.Series) -> np.ndarray:
    """Times as naive UTC ``datetime64[us]`` (aware times converted, naive ones taken as UTC)."""
    index = pd.DatetimeIndex(times)
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    return index.to_numpy(dtype="datetime64[us]")
