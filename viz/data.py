"""What the dashboard reads and writes, through the twin (never SQL of its own).

:class:`DashboardData` wraps one :class:`~ciu.twin.Twin` for the pages: the
units of a level, the shown variable (``CIU_DASHBOARD_VARIABLE``: people,
trips, …) and how full each unit is over the history and forecast steps of the
time slider, alerts and their acknowledgement, a unit's card (restricted
attributes only for a role that may see them) and scenario runs. Calls are
serialised by a lock, since the web server answers from threads.

How full a unit is: its value over its capacity (the capacities of the units
below it summed) when the units have one, else over its own peak hour of the
last ``CIU_DASHBOARD_PEAK_DAYS`` days (trips per taxi zone have no capacity).
Only the levels where the variable is known are shown: its lowest observed
level and the levels above it.

Stored forecasts carry their 10th, 50th and 90th percentiles where the model
gives them (a trained champion does, the historical-average baseline does not).
:meth:`DashboardData.skill` says which model made the forecasts shown and how
well it scored on the test steps of its training run.

:func:`publish_forecast` issues a forecast with the best forecaster there is and
stores it with the alerts it raises, so the pages have something to show.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import geopandas as gpd
import numpy as np
import pandas as pd

from ciu import rollup
from ciu.alerts import AlertRule
from ciu.clock import utc
from ciu.errors import ConfigError, Forbidden, NotFound, ValidationError
from ciu.forecast import HistoricalAverageForecaster, load_forecaster
from ciu.viz.provider import LevelFrame
from ciu.viz.settings import DashboardSettings

if TYPE_CHECKING:
    from ciu.store.access import Role
    from ciu.twin import Twin

P = ParamSpec("P")
R = TypeVar("R")

#: the role the dashboard acts with when it is given no API key: the local operations centre
LOCAL_ROLE = "operator"
#: the percentiles a stored forecast may carry
QUANTILES = ("q10", "q50", "q90")
#: the name the historical-average baseline's forecasts are stored under
BASELINE = HistoricalAverageForecaster.name


def _locked(method: Callable[P, R]) -> Callable[P, R]:
    @wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with args[0]._lock:  # type: ignore[attr-defined]
            return method(*args, **kwargs)
    return wrapper


def latest_hour(twin: Twin, variable: str) -> pd.Timestamp:
    """The last hour with observations of ``variable`` ("now" for a replayed city)."""
    hour = twin.last_observed_hour(variable)
    if hour is None:
        raise NotFound(f"the twin has no {variable!r} observations")
    return hour


def publish_forecast(twin: Twin, *, variable: str, horizons: int = 12, threshold: float | None = None,
                     issued_at: datetime | None = None) -> dict[str, Any]:
    """Forecast ``variable`` for every unit from its latest observed hour, store it and raise its alerts.

    The forecaster is the champion of the newest trained model run of
    ``variable``, else the historical-average baseline. A trained champion
    forecasts no further than the horizons it was trained for, so ``horizons``
    is cut to those. Alerts follow the one alert rule
    (:meth:`ciu.alerts.AlertRule.configured`, at ``threshold`` when given).
    The forecast's model run names the trained run it came from
    (``params["model_run"]``). Returns the run id, the model's name, the
    issue time and how many predictions and alerts were written.
    """
    rule = AlertRule.configured(threshold)
    forecaster, name = load_forecaster(twin, variable)
    horizons = min(horizons, forecaster.horizons or horizons)
    issued = pd.Timestamp(issued_at) if issued_at is not None else latest_hour(twin, variable)
    frame = forecaster.forecast(twin, issued_at=issued.to_pydatetime(), horizons=horizons)
    frame = frame[frame["variable"] == variable]
    params = {"horizons": horizons, "threshold": rule.threshold, "critical": rule.critical, "variable": variable,
              "model_run": getattr(forecaster, "run_id", None)}
    run = twin.add_model_run(name=name, kind="forecast", params=params, data_hash=twin.data_hash(),
                                   status="trained")
    n_pred = twin.write_predictions(frame.assign(issued_at=issued), run_id=run)
    n_alerts = twin.write_alerts(rule.alerts(frame), run_id=run, covering=pd.unique(frame["code"]))
    return {"run_id": run, "model": name, "issued_at": issued, "predictions": n_pred, "alerts": n_alerts}


def _dig(tree: Any, *keys: str) -> Any:
    """``tree[k1][k2]…``, or ``None`` where a key is missing."""
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def run_skill(run: pd.Series | None, *, level: str, variable: str) -> dict[str, Any]:
    """What the pages say about a forecast's model: its name and, for a trained run, its test scores at ``level``.

    ``run`` is a trained model run (a row of :meth:`ciu.store.Store.model_runs`), or
    ``None`` when the forecasts come from the historical-average baseline. The test
    scores are the champion's RMSE over every horizon at ``level``, its gain over
    seasonal naive (per cent of RMSE) and how often the truth fell between its
    10th and 90th percentiles; ``None`` where the run did not record them.
    """
    out: dict[str, Any] = {"variable": variable, "level": level, "model": BASELINE, "run_id": None,
                           "trained": False, "scored": False, "rmse": None, "gain_pct": None, "coverage": None,
                           "horizons": None, "step": None, "waiting": None}
    if run is None:
        return out
    metrics = run["metrics"] if isinstance(run["metrics"], dict) else {}
    model = str(metrics.get("champion") or run["name"])
    rmse = _dig(metrics, "test", model, level, "rmse_all")
    out.update(model=model, run_id=int(run["id"]), trained=True, scored=rmse is not None, rmse=rmse,
               gain_pct=_dig(metrics, "skill", "test", model, level),
               coverage=_dig(metrics, "probabilistic", "test", level, "coverage_p10_p90"),
               horizons=metrics.get("horizons"), step=metrics.get("step"))
    return out


class DashboardData:
    """The dashboard's view of one twin.

    Parameters
    ----------
    twin
        The open twin (the dashboard owns it from now on).
    settings
        Dashboard settings; read from the environment when ``None``.
    """

    def __init__(self, twin: Twin, settings: DashboardSettings | None = None) -> None:
        self.twin = twin
        self.settings = settings or DashboardSettings()
        self._lock = threading.RLock()
        self._units: gpd.GeoDataFrame | None = None
        self._capacity: pd.Series | None = None
        self._peaks: dict[str, pd.Series] = {}
        self._bottom: str | None = None
        self._role: Role | None = None
        self._forecaster: Any = None
        self._tz: str | None = None

    # -- who is looking ---------------------------------------------------------------
    @_locked
    def role(self) -> Role:
        """The role of the configured API key (the local operator role without one)."""
        if self._role is None:
            try:
                self._role = self.twin.role(self.settings.api_key, without_key=LOCAL_ROLE)
            except ConfigError:
                raise ConfigError("CIU_DASHBOARD_API_KEY is not a live API key") from None
        return self._role

    # -- the hierarchy ---------------------------------------------------------------------
    @property
    @_locked
    def bottom_level(self) -> str:
        """The lowest level where the shown variable is observed (the twin's bottom level when it is not)."""
        if self._bottom is None:
            known = self.twin.levels_from(self.settings.variable)
            self._bottom = known[0] if known else self.twin.levels[0]
        return self._bottom

    @property
    @_locked
    def levels(self) -> list[str]:
        """The levels shown, top (city) to bottom: the shown variable's lowest observed level and those above."""
        levels = list(self.twin.levels)
        return list(reversed(levels[levels.index(self.bottom_level):]))

    def kind(self, level: str) -> str:
        """What the level holds: ``storey``, ``structure`` or ``area`` (see :mod:`ciu.levels`)."""
        return self.twin.level(level).kind

    def child_level(self, level: str) -> str | None:
        levels = self.levels
        i = levels.index(level)
        return levels[i + 1] if i + 1 < len(levels) else None

    @_locked
    def all_units(self) -> gpd.GeoDataFrame:
        if self._units is None:
            self._units = self.twin.units()
        return self._units

    def units(self, level: str, *, within: str | None = None) -> gpd.GeoDataFrame:
        """Units of ``level``, only those below ``within`` when it is given."""
        if level not in self.levels:
            raise ValidationError(f"unknown level {level!r}; levels: {self.levels}", field="level")
        units = self.all_units()
        out = units[units["level"] == level]
        if within:
            out = out[(out.index == within) | out.index.str.startswith(within + "/")]
        return out.sort_index()

    @_locked
    def capacity(self) -> pd.Series:
        """What each unit holds at full occupancy: the capacities of the shown bottom level's units summed."""
        if self._capacity is None:
            units = self.all_units()
            levels = list(self.twin.levels)
            bottom = units[units["level"] == self.bottom_level]
            cap = pd.Series([float((a or {}).get("capacity") or 0.0) for a in bottom["attrs"]], index=bottom.index)
            parts = [cap]
            for _ in levels[levels.index(self.bottom_level) + 1:]:  # capacities add up: the sum roll-up rule
                parents = units.loc[cap.index, "parent_code"]
                keep = parents.notna().to_numpy()
                group, _, value = rollup.combine((parents.to_numpy()[keep], np.zeros(int(keep.sum()))),
                                                 cap.to_numpy()[keep], "sum")
                cap = pd.Series(value, index=group)
                parts.append(cap)
            self._capacity = pd.concat(parts)
        return self._capacity

    @property
    def has_capacity(self) -> bool:
        """Whether the shown units have a capacity (else fullness is measured against recent peaks)."""
        return bool(self.capacity().sum() > 0)

    @property
    def reference_name(self) -> str:
        """What 100 % means on the maps, in words."""
        return "capacity" if self.has_capacity else f"{self.settings.peak_days}-day peak"

    @_locked
    def reference(self, level: str, codes: list[str]) -> np.ndarray:
        """What 100 % means for each of ``codes`` (units of ``level``): capacity, or the peak hour of recent days."""
        if self.has_capacity:
            return np.nan_to_num(self.capacity().reindex(codes).to_numpy(dtype=float), nan=0.0)
        if level not in self._peaks:
            now = self.now()
            past = self.twin.rollup(self.settings.variable, level=level,
                                    start=now - pd.Timedelta(days=self.settings.peak_days),
                                    end=now + pd.Timedelta(hours=1))
            self._peaks[level] = past.groupby("code")["value"].max()
        return np.nan_to_num(self._peaks[level].reindex(codes).to_numpy(dtype=float), nan=0.0)

    @property
    def timezone(self) -> str:
        """The city's time zone (times on the pages are local)."""
        if self._tz is None:
            with self._lock:
                self._tz = self.twin.timezone
        return self._tz

    # -- values over time --------------------------------------------------------------------
    @_locked
    def now(self) -> pd.Timestamp:
        return latest_hour(self.twin, self.settings.variable)

    @_locked
    def level_frame(self, level: str, *, within: str | None = None) -> LevelFrame:
        """The shown variable for the units of ``level`` over the history window and the stored forecast."""
        units = self.units(level, within=within)
        codes = list(units.index)
        var = self.settings.variable
        now = self.now()
        start = now - pd.Timedelta(hours=self.settings.history_hours - 1)
        hist = self.twin.rollup(var, level=level, start=start, end=now + pd.Timedelta(hours=1), codes=codes)
        preds = self.twin.predictions(variable=var, level=level, codes=codes)
        preds = preds[pd.to_datetime(preds["time"], utc=True) > now]
        h_times = pd.date_range(start, now, freq="h", tz="UTC")
        f_times = pd.DatetimeIndex(sorted(pd.to_datetime(preds["time"], utc=True).unique()))
        times = h_times.append(f_times) if len(f_times) else h_times
        grid = np.full((len(codes), len(times)), np.nan)
        for frame in (hist, preds):
            if len(frame):
                ui = pd.Index(codes).get_indexer(frame["code"])
                ti = times.get_indexer(pd.to_datetime(frame["time"], utc=True))
                ok = (ui >= 0) & (ti >= 0)
                grid[ui[ok], ti[ok]] = frame["value"].to_numpy(dtype=float)[ok]
        return LevelFrame(level, units, times, len(h_times), grid, self.reference(level, codes), self.timezone)

    @_locked
    def unit_series(self, code: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """History (``time, value``) and stored forecast (``time, value, risk, q10, q50, q90``) of one unit.

        The percentiles are NaN where the forecast has none (the historical-average baseline).
        """
        unit = self.twin.unit(code)
        now = self.now()
        start = now - pd.Timedelta(hours=self.settings.history_hours - 1)
        hist = self.twin.rollup(self.settings.variable, level=unit.level, start=start,
                                end=now + pd.Timedelta(hours=1), codes=[code])
        preds = self.twin.predictions(variable=self.settings.variable, codes=[code])
        preds = preds[pd.to_datetime(preds["time"], utc=True) > now]
        fc = preds.reindex(columns=["time", "value", "risk", *QUANTILES]).reset_index(drop=True)
        fc[list(QUANTILES)] = fc[list(QUANTILES)].astype(float)
        return hist[["time", "value"]], fc

    # -- the model behind the forecasts --------------------------------------------------------
    def _trained_runs(self, runs: pd.DataFrame) -> pd.DataFrame:
        """The trained runs of the shown variable among ``runs``, oldest first."""
        from ciu.models.runs import RUN_KINDS, run_target

        trained = runs[runs["kind"].isin(RUN_KINDS) & (runs["status"] == "trained")]
        return trained[trained["params"].map(run_target) == self.settings.variable]

    @_locked
    def forecast_run(self) -> pd.Series | None:
        """The trained model run behind the shown variable's stored forecasts; ``None`` for the baseline.

        The forecasts shown are the newest stored ones of the variable. Those
        written by ``ciu predict`` belong to their trained run; those published
        here name it (``params["model_run"]``; earlier ones only the model,
        traced to the newest trained run before them). With no forecasts stored
        it is the newest trained run, which would forecast next.
        """
        from ciu.models.runs import RUN_KINDS

        runs = self.twin.model_runs().set_index("id", drop=False)
        trained = self._trained_runs(runs)
        shown = self.twin.predictions(variable=self.settings.variable, limit=1)
        if shown.empty:
            return trained.iloc[-1] if len(trained) else None
        run = runs.loc[int(shown["run_id"].iloc[0])]
        if run["kind"] in RUN_KINDS:
            return run
        if run["kind"] != "forecast" or run["name"] == BASELINE:
            return None
        source = (run["params"] or {}).get("model_run")
        if source is not None:
            return runs.loc[int(source)] if int(source) in runs.index else None
        earlier = trained[(trained.index < run["id"]) & (trained["name"] == run["name"])]
        return earlier.iloc[-1] if len(earlier) else None

    @_locked
    def skill(self, level: str) -> dict[str, Any]:
        """Which model made the forecasts shown and its test scores at ``level`` (see :func:`run_skill`).

        When the baseline made them, ``waiting`` is the newest trained run of
        the variable (one trained since, that has not forecast yet), else ``None``.
        """
        run = self.forecast_run()
        out = run_skill(run, level=level, variable=self.settings.variable)
        if run is None:
            trained = self._trained_runs(self.twin.model_runs())
            out["waiting"] = int(trained["id"].iloc[-1]) if len(trained) else None
        return out

    # -- alerts --------------------------------------------------------------------------------
    @_locked
    def alerts(self, *, open_only: bool = True, limit: int = 50) -> pd.DataFrame:
        return self.twin.alerts(open_only=open_only, limit=limit)

    @_locked
    def acknowledge(self, alert_id: int) -> None:
        """Acknowledge an alert in the database, as the configured role allows."""
        role = self.role()
        if not role.can_acknowledge:
            raise Forbidden(f"role {role.name!r} may not acknowledge alerts")
        self.twin.acknowledge_alert(int(alert_id), by=self.settings.operator)

    # -- one unit's card ---------------------------------------------------------------------
    @_locked
    def card(self, code: str, *, time: pd.Timestamp | None = None) -> dict[str, Any]:
        """The fields of a unit's card at ``time`` (restricted ones only for the role).

        ``value`` is the shown ``variable`` (observed, else forecast) and
        ``capacity`` what the unit holds (``None`` when its units have none).
        """
        role = self.role()
        unit = self.twin.unit(code, include_restricted=bool(role.restricted_attrs))
        building = unit  # the structure (building) a storey belongs to (the unit itself at other levels)
        levels = self.twin.levels
        structure = self.twin.level_of_kind("structure")
        is_structure = structure is not None and building.level == structure.name
        if structure is not None:
            while building.parent_code is not None and levels.index(building.level) < levels.index(structure.name):
                building = self.twin.unit(building.parent_code, include_restricted=bool(role.restricted_attrs))
            is_structure = building.level == structure.name
        when = utc(time if time is not None else self.now())
        restricted = building.restricted or {}
        visible = {k: v for k, v in restricted.items() if role.allows(k)}
        battrs = building.attrs or {}
        return {
            "code": unit.code, "name": unit.name or unit.code, "level": unit.level,
            "building": building.code if is_structure else None,
            "floors": battrs.get("floors", len(building.children) if is_structure else None),
            "floor": (unit.attrs or {}).get("floor"),
            "use": (unit.attrs or {}).get("use") or battrs.get("land_use"),
            "ownership": battrs.get("ownership"),
            "tax_status": visible.get("tax_status"),
            "restricted_visible": sorted(visible),
            "temperature": self._value_at("temperature", unit.level, code, when),
            "rain": self._value_at("rain", unit.level, code, when),
            "variable": self.settings.variable,
            "value": self._shown_at(unit.level, code, when),
            "capacity": float(self.capacity().get(code, np.nan)) if self.has_capacity else None,
            "time": when,
            "tz": self.timezone,
            "role": role.name,
        }

    def _value_at(self, variable: str, level: str, code: str, when: pd.Timestamp) -> float | None:
        if variable not in {v.name for v in self.twin.variables()}:
            return None
        frame = self.twin.rollup(variable, level=level, start=when, end=when + pd.Timedelta(hours=1), codes=[code])
        return None if frame.empty else float(frame["value"].iloc[0])

    def _shown_at(self, level: str, code: str, when: pd.Timestamp) -> float | None:
        seen = self._value_at(self.settings.variable, level, code, when)
        if seen is not None:
            return seen
        preds = self.twin.predictions(variable=self.settings.variable, codes=[code])
        hit = preds[pd.to_datetime(preds["time"], utc=True) == when]
        return None if hit.empty else float(hit["value"].iloc[0])

    # -- scenarios ---------------------------------------------------------------------------
    @_locked
    def forecaster(self) -> tuple[Any, str]:
        if self._forecaster is None:
            self._forecaster = load_forecaster(self.twin, self.settings.variable)
        return self._forecaster

    @property
    def horizons(self) -> int:
        """Forecast hours of a scenario: the settings' ``horizons``, no more than the forecaster serves."""
        model, _ = self.forecaster()
        return min(self.settings.horizons, model.horizons or self.settings.horizons)

    @_locked
    def scenario(self, overrides: dict[str, Any], *, horizons: int | None = None) -> dict[str, Any]:
        """Baseline and scenario forecasts from now; returns both frames and the model's name."""
        model, name = self.forecaster()
        h = horizons or self.horizons
        issued = self.now().to_pydatetime()
        base = model.forecast(self.twin, issued_at=issued, horizons=h)
        alt = model.forecast(self.twin, issued_at=issued, horizons=h, overrides=overrides)
        var = self.settings.variable
        return {"baseline": base[base["variable"] == var], "scenario": alt[alt["variable"] == var], "model": name,
                "issued_at": pd.Timestamp(issued)}

    def close(self) -> None:
        self.twin.close()
