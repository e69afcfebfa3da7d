"""Forecasters that answer "what next, and what if": the protocol and a historical-average baseline.

A forecaster is any object with

``forecast(twin, *, issued_at, horizons, overrides=None) -> pandas.DataFrame``

returning the columns ``code, level, variable, horizon, time, value, risk`` for
every unit of every level. ``overrides`` may hold

- ``event``: ``{"code", "time", "people", "hours"}``: ``people`` more of the
  forecast count (people, trips) at the unit from ``time`` for ``hours`` hours,
  spread over its bottom-level units by capacity;
- ``closure``: ``{"code"}``: nothing counted in the unit and everything below it;
- ``weather``: ``{"temperature", "rain"}``: the weather for every forecast hour;
- ``holiday``: ``True``: every forecast hour follows the Sunday/holiday profile.

:class:`HistoricalAverageForecaster` is the honest baseline for any count
variable: per unit of the lowest level where the variable is observed, the mean
of each (weekday, hour) in the city's local time, scaled by a rain/temperature
sensitivity fitted by least squares, rolled up to every level above by the
variable's roll-up rule so that children sum to their parent.

Trained models answer through the same interface: :func:`load_forecaster`
loads the newest trained run of a variable with the class registered for its
kind under the entry-point group :data:`FORECASTER_GROUP` (the tower's
champion registers itself from ``ciu.models``), so this module never imports
a model library.

>>> from ciu.forecast import HistoricalAverageForecaster     # doctest: +SKIP
>>> frame = HistoricalAverageForecaster().forecast(twin, issued_at=t0, horizons=6)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from ciu import rollup
from ciu.clock import forecast_times, utc
from ciu.errors import ConfigError, UnknownUnit, ValidationError

if TYPE_CHECKING:
    from ciu.twin import Twin

#: what a forecast frame holds; ``limit`` is the unit's threshold that ``risk`` is about (its capacity, else its usual
#: peak), so an alert can say why a unit is at risk
FORECAST_COLUMNS = ["code", "level", "variable", "horizon", "time", "value", "risk", "limit"]
#: day classes of the profile: Monday..Saturday are 0..5, Sunday and public holidays are 6
SUNDAY = 6
#: the variable that announces planned events' attendance; forecasters count it in by the event rule
ANNOUNCED = "event_expected"
OVERRIDE_KEYS = ("event", "closure", "weather", "holiday")


class Forecaster(Protocol):
    """What the API and the dashboard call to forecast; ``horizons``: the most steps ahead it serves (``None``: no
    limit of its own)."""

    horizons: int | None

    def forecast(self, twin: Twin, *, issued_at: datetime, horizons: int,
                 overrides: dict[str, Any] | None = None) -> pd.DataFrame:
        """Forecasts ``code, level, variable, horizon, time, value, risk`` for every unit."""


def check_overrides(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Check the shape of scenario overrides; raises :class:`ValidationError` naming the field."""
    if not overrides:
        return {}
    unknown = [k for k in overrides if k not in OVERRIDE_KEYS]
    if unknown:
        raise ValidationError(f"unknown override {unknown[0]!r}; known: {list(OVERRIDE_KEYS)}", field=unknown[0])
    out = dict(overrides)
    if out.get("event") is not None:
        ev = out["event"]
        for key in ("code", "time", "people"):
            if key not in ev:
                raise ValidationError(f"event needs {key!r}", field=f"event.{key}")
        people = float(ev["people"])
        hours = int(ev.get("hours", 1))
        if not np.isfinite(people) or people < 0:
            raise ValidationError("people must be a finite number ≥ 0", field="event.people")
        if hours < 1:
            raise ValidationError("hours must be ≥ 1", field="event.hours")
        out["event"] = {"code": str(ev["code"]), "time": utc(ev["time"]), "people": people, "hours": hours}
    if out.get("closure") is not None:
        if "code" not in out["closure"]:
            raise ValidationError("closure needs 'code'", field="closure.code")
        out["closure"] = {"code": str(out["closure"]["code"])}
    if out.get("weather") is not None:
        w = out["weather"]
        temp = w.get("temperature")
        rain = w.get("rain")
        if temp is not None and not np.isfinite(float(temp)):
            raise ValidationError("temperature must be finite", field="weather.temperature")
        if rain is not None and (not np.isfinite(float(rain)) or float(rain) < 0):
            raise ValidationError("rain must be a finite number ≥ 0", field="weather.rain")
        out["weather"] = {"temperature": None if temp is None else float(temp),
                          "rain": None if rain is None else float(rain)}
    out["holiday"] = bool(out.get("holiday") or False)
    return out


def event_shares(capacity: np.ndarray | None, n: int) -> np.ndarray:
    """How a scenario event's people spread over the ``n`` bottom units below its unit: by capacity where they
    all have one, else evenly. The one rule of every forecaster: the shares sum to one, so an event of N people
    adds N at its unit and at every unit above it."""
    cap = None if capacity is None or len(capacity) != n else np.asarray(capacity, dtype=float)
    return shares_by_group(cap, np.zeros(n, dtype=np.int64))


def shares_by_group(capacity: np.ndarray | None, group: np.ndarray) -> np.ndarray:
    """:func:`event_shares` for many events' units at once: ``group`` holds each bottom unit's event unit (its
    ancestor), and each group's shares (by capacity where all its units have one, else even) sum to one."""
    group = np.asarray(group, dtype=np.int64)
    count = np.bincount(group).astype(float)
    even = 1.0 / count[group]
    if capacity is None:
        return even
    cap = np.asarray(capacity, dtype=float)
    usable = np.isfinite(cap) & (cap >= 0)
    total = np.bincount(group, weights=np.where(usable, cap, 0.0))
    by_cap = (np.bincount(group, weights=(~usable).astype(float)) == 0) & (total > 0)
    return np.where(by_cap[group], np.where(usable, cap, 0.0) / np.where(total > 0, total, 1.0)[group], even)


def event_steps(times: pd.DatetimeIndex, event: dict[str, Any], step: pd.Timedelta) -> np.ndarray:
    """Which of the forecast ``times`` a scenario event covers: from its start (on the step) for its hours."""
    start = utc(event["time"]).floor(step)
    return np.asarray((times >= start) & (times < start + pd.Timedelta(hours=event["hours"])))


@dataclass
class HistoricalAverageForecaster:
    """Mean of each (weekday, hour) per bottom-level unit, with weather sensitivity and overrides.

    Forecasts cover the lowest level where ``variable`` is observed and every
    level above it. Risk is the value over the unit's capacity (the bottom
    units' ``capacity_attr``, summed up the levels); for a variable whose units
    have no capacity (trips per taxi zone) it is the value over the unit's
    usual peak, the highest hour of its weekly profile (above the bottom level,
    the sum of its children's peaks, which their busiest hours need not share).

    Parameters
    ----------
    variable
        The count variable to forecast (its roll-up rule carries it up the levels).
    capacity_attr
        The bottom-level unit attribute holding its capacity.
    end
        Fit only on observations before this time (``None``: all of them).
    """

    variable: str = "people"
    capacity_attr: str = "capacity"
    end: datetime | None = None
    horizons: int | None = None  # a weekly profile forecasts any number of hours ahead
    name: str = "historical_average"
    _fit: dict[str, Any] | None = field(default=None, repr=False)

    # -- fitting -----------------------------------------------------------------
    def fit(self, twin: Twin) -> HistoricalAverageForecaster:
        """Learn the profiles and weather sensitivities from the stored history."""
        twin.variable(self.variable)  # raises UnknownVariable
        levels = twin.levels_from(self.variable)
        if not levels:
            raise ValidationError(f"no observations of {self.variable!r} to learn from", field="variable")
        bottom = levels[0]
        units = twin.units()
        root = units[units["parent_code"].isna()]
        tz = str(root["attrs"].iloc[0].get("timezone", "UTC")) if len(root) else "UTC"
        obs = twin.observations(self.variable, level=bottom, end=self.end)
        if obs.empty:
            raise ValidationError(f"no observations of {self.variable!r} at level {bottom!r} to learn from",
                                  field="variable")
        wide = obs.pivot(index="time", columns="code", values="value").sort_index()
        times = wide.index
        holiday = self._external(twin, "holiday", times, default=0.0) > 0.5
        local = times.tz_convert(tz)
        day = np.where(holiday | (local.day_of_week == 6), SUNDAY, local.day_of_week)
        slot = day * 24 + local.hour.to_numpy()
        capacity = np.array([
            float((a or {}).get(self.capacity_attr) or 0.0) for a in units.loc[wide.columns, "attrs"]
        ])
        # the city without its announced events: their people are counted back in when forecasting
        values = wide.to_numpy(dtype=float)
        values = np.where(np.isnan(values), np.nan,
                          np.maximum(values - announced_people(twin, list(wide.columns), capacity, times,
                                                               units=units), 0.0))
        profile = np.full((7 * 24, values.shape[1]), np.nan)
        frame = pd.DataFrame(values, index=slot)
        means = frame.groupby(level=0).mean()
        profile[means.index.to_numpy()] = means.to_numpy()
        # slots never seen fall back to the unit's overall hour-of-day mean, then its mean
        by_hour = pd.DataFrame(values, index=local.hour.to_numpy()).groupby(level=0).mean().reindex(range(24))
        for s in np.flatnonzero(np.isnan(profile).any(axis=1)):
            fill = by_hour.iloc[s % 24].to_numpy()
            profile[s] = np.where(np.isnan(profile[s]), fill, profile[s])
        profile = np.where(np.isnan(profile), np.nanmean(values, axis=0), profile)
        profile = np.nan_to_num(profile, nan=0.0)
        expected = profile[slot]
        rain = self._external(twin, "rain", times, default=0.0)
        temp = self._external(twin, "temperature", times, default=np.nan)
        temp_mean = pd.Series(temp).groupby(local.hour.to_numpy()).mean().reindex(range(24)).to_numpy()
        temp_dev = np.nan_to_num(temp - temp_mean[local.hour.to_numpy()], nan=0.0)
        rain_mean = float(np.nanmean(rain)) if np.isfinite(rain).any() else 0.0
        rain_dev = np.nan_to_num(rain - rain_mean, nan=0.0)
        beta = _weather_fit(np.nan_to_num(values, nan=0.0), expected, rain_dev, temp_dev,
                            np.isfinite(values))
        reference = capacity if capacity.sum() > 0 else profile.max(axis=0)
        self._fit = {
            "tz": tz, "codes": list(wide.columns), "profile": profile, "beta": beta, "rain_mean": rain_mean,
            "temp_mean": np.nan_to_num(temp_mean, nan=0.0), "capacity": capacity, "reference": reference,
            "units": units,
            "levels": levels, "rollup": twin.variable(self.variable).rollup,
            "holidays": self._holiday_dates(twin, tz),
        }
        return self

    @staticmethod
    def _external(twin: Twin, name: str, times: pd.DatetimeIndex, *, default: float) -> np.ndarray:
        """A city-wide external variable aligned to ``times`` (``default`` where missing)."""
        if name not in {v.name for v in twin.variables()} or not twin.observed_levels(name):
            return np.full(len(times), default)
        series = twin.rollup(name, level=twin.levels[-1], start=times.min(), end=times.max() + pd.Timedelta("1h"))
        if series.empty:
            return np.full(len(times), default)
        s = series.groupby("time")["value"].mean()
        return s.reindex(times).to_numpy(dtype=float, na_value=default)

    @staticmethod
    def _holiday_dates(twin: Twin, tz: str) -> set[Any]:
        if "holiday" not in {v.name for v in twin.variables()} or not twin.observed_levels("holiday"):
            return set()
        frame = twin.rollup("holiday", level=twin.levels[-1], freq="h")
        on = frame[frame["value"] > 0.5]
        return set(on["time"].dt.tz_convert(tz).dt.date)

    # -- forecasting -----------------------------------------------------------------
    def forecast(self, twin: Twin, *, issued_at: datetime, horizons: int,
                 overrides: dict[str, Any] | None = None) -> pd.DataFrame:
        """Forecast every unit of every level for ``horizons`` hours after ``issued_at``."""
        if horizons < 1:
            raise ValidationError("horizons must be ≥ 1", field="horizons")
        ov = check_overrides(overrides)
        if self._fit is None:
            self.fit(twin)
        fit = self._fit
        assert fit is not None
        issued = utc(issued_at).floor("h")
        times = forecast_times(issued, horizons, pd.Timedelta(hours=1))
        local = times.tz_convert(fit["tz"])
        holiday = np.array([d in fit["holidays"] for d in local.date])
        if ov.get("holiday"):
            holiday[:] = True
        day = np.where(holiday | (local.day_of_week == 6), SUNDAY, local.day_of_week)
        values = fit["profile"][day * 24 + local.hour.to_numpy()]  # horizons × bottom units
        if ov.get("weather"):
            w = ov["weather"]
            rain = np.full(len(times), fit["rain_mean"] if w["rain"] is None else w["rain"]) - fit["rain_mean"]
            temp_dev = (np.zeros(len(times)) if w["temperature"] is None
                        else w["temperature"] - fit["temp_mean"][local.hour.to_numpy()])
            scale = 1.0 + np.outer(rain, fit["beta"][:, 0]) + np.outer(temp_dev, fit["beta"][:, 1])
            values = values * np.clip(scale, 0.0, None)
        codes = fit["codes"]
        values = values + announced_people(twin, codes, fit["capacity"], times, units=fit["units"])
        if ov.get("event"):
            values = self._add_event(values, times, ov["event"], codes, fit)
        if ov.get("closure"):
            closed = self._subtree(ov["closure"]["code"], codes, fit)
            values[:, closed] = 0.0
        return self._rolled_up(values, times, codes, fit)

    @staticmethod
    def _subtree(code: str, codes: list[str], fit: dict[str, Any]) -> np.ndarray:
        if code not in fit["units"].index:
            raise UnknownUnit(f"no unit with code {code!r}")
        prefix = code + "/"
        return np.array([c == code or c.startswith(prefix) for c in codes])

    def _add_event(self, values: np.ndarray, times: pd.DatetimeIndex, event: dict[str, Any], codes: list[str],
                   fit: dict[str, Any]) -> np.ndarray:
        at = self._subtree(event["code"], codes, fit)
        if not at.any():
            return values
        share = event_shares(fit["capacity"][at], int(at.sum()))
        active = event_steps(times, event, pd.Timedelta(hours=1))
        out = values.copy()
        out[np.ix_(active, at)] += event["people"] * share[None, :]
        return out

    def _rolled_up(self, values: np.ndarray, times: pd.DatetimeIndex, codes: list[str],
                   fit: dict[str, Any]) -> pd.DataFrame:
        units = fit["units"]
        levels = fit["levels"]
        rule = fit["rollup"]
        level = levels[0]
        # units of the bottom level never observed are forecast zero
        members = units.index[units["level"] == level]
        current = pd.DataFrame(values, index=times, columns=codes).reindex(columns=members, fill_value=0.0)
        reference = pd.Series(fit["reference"], index=codes).reindex(members, fill_value=0.0)
        frames = []
        for up in [None, *levels[1:]]:
            if up is not None:
                parents = units.loc[current.columns, "parent_code"].to_numpy()
                area = units.loc[current.columns, "area_m2"].to_numpy(dtype=float)
                n_steps, n_units = current.shape
                group, step, value = rollup.combine(
                    (np.tile(parents, n_steps), np.repeat(np.arange(n_steps), n_units)), current.to_numpy().ravel(),
                    rule, weights=np.tile(area, n_steps))
                nxt = pd.DataFrame({"g": group, "t": step, "v": value}).pivot(index="t", columns="g", values="v")
                nxt.index = current.index
                reference = reference.groupby(parents).sum()
                # units of this level with nothing below them still appear, with zero
                members = units.index[units["level"] == up]
                nxt = nxt.reindex(columns=members, fill_value=0.0)
                reference = reference.reindex(members, fill_value=0.0)
                current, level = nxt, up
            ref = reference.to_numpy()
            risk = np.where(ref > 0, current.to_numpy() / np.where(ref > 0, ref, 1.0), 0.0)
            frames.append(pd.DataFrame({
                "code": np.tile(current.columns.to_numpy(), len(times)), "level": level,
                "variable": self.variable,
                "horizon": np.repeat(np.arange(1, len(times) + 1), current.shape[1]),
                "time": np.repeat(times, current.shape[1]),
                "value": current.to_numpy().ravel(), "risk": np.clip(risk, 0.0, 1.0).ravel(),
                "limit": np.tile(ref, len(times)).astype(float),
            }))
        out = pd.concat(frames, ignore_index=True)
        return out[FORECAST_COLUMNS]


def announced_people(twin: Twin, codes: list[str], capacity: np.ndarray | None, times: pd.DatetimeIndex, *,
                     variable: str = ANNOUNCED, freq: str = "h", units: pd.DataFrame | None = None) -> np.ndarray:
    """The announced attendance ``(T, N)`` at ``times`` for the units ``codes`` of one level: each announcement,
    taken at the level where ``variable`` is observed (not a level below, where the cube would repeat it on every
    unit), spread over the units below its own by the event rule (:func:`shares_by_group`: by ``capacity``, else
    evenly); zero where nothing is announced. ``units`` (code-indexed, with ``level`` and ``parent_code``) saves
    reading them again."""
    out = np.zeros((len(times), len(codes)))
    if not len(times) or not len(codes) or variable not in {v.name for v in twin.variables()}:
        return out
    observed = twin.observed_levels(variable)
    if not observed:
        return out
    level = observed[0]
    units = twin.units() if units is None else units
    ancestor = pd.Series(codes, index=codes, dtype=object)
    for _ in range(len(twin.levels)):  # climb until every unit stands at the announcements' level (or above the top)
        alive = ancestor.dropna()
        below = units["level"].reindex(alive.to_numpy()).to_numpy() != level
        if not below.any():
            break
        at = alive.index[below]
        ancestor[at] = units["parent_code"].reindex(ancestor[at].to_numpy()).to_numpy()
    naive = times.tz_convert("UTC").tz_localize(None) if times.tz is not None else times
    cube = twin.cube(level=level, variables=[variable], start=naive.min().tz_localize("UTC"),
                     end=naive.max().tz_localize("UTC") + pd.Timedelta(seconds=1), freq=freq).reindex(time=naive)
    raw = pd.DataFrame(np.nan_to_num(np.asarray(cube[variable].values, dtype=np.float64)).T,
                       columns=[str(c) for c in cube["unit"].values])
    known = ancestor.isin(raw.columns).to_numpy()
    if not known.any():
        return out
    group = pd.Index(sorted(set(ancestor[known]))).get_indexer(ancestor[known])
    share = shares_by_group(None if capacity is None else np.asarray(capacity, dtype=float)[known], group)
    out[:, known] = raw[ancestor[known].to_numpy()].to_numpy() * share[None, :]
    return out


def _weather_fit(obs: np.ndarray, expected: np.ndarray, rain: np.ndarray, temp: np.ndarray,
                 seen: np.ndarray, *, ridge: float = 1e-6) -> np.ndarray:
    """Per unit, least-squares ``(a, b)`` in ``obs ≈ expected · (1 + a·rain + b·temp)``.

    Returns an array ``units × 2`` (rain, temperature sensitivity).
    """
    x1 = expected * rain[:, None] * seen
    x2 = expected * temp[:, None] * seen
    y = (obs - expected) * seen
    s11 = (x1 * x1).sum(0) + ridge
    s12 = (x1 * x2).sum(0)
    s22 = (x2 * x2).sum(0) + ridge
    b1 = (x1 * y).sum(0)
    b2 = (x2 * y).sum(0)
    det = s11 * s22 - s12 * s12
    a = (s22 * b1 - s12 * b2) / det
    b = (s11 * b2 - s12 * b1) / det
    return np.c_[a, b]


def forecast_variable(twin: Twin) -> str:
    """The variable a twin forecasts when none is named: the target of its newest trained model, else ``people``."""
    return twin.newest_target() or "people"


#: the entry-point group where forecasters of trained model runs register, one name per run kind
FORECASTER_GROUP = "ciu.forecasters"


def registered_forecaster(kind: str) -> Any:
    """The class that loads model runs of ``kind`` (registered in :data:`FORECASTER_GROUP`).

    Its ``load(twin, run_id)`` returns an object with this module's
    :class:`Forecaster` interface.
    """
    found = entry_points(group=FORECASTER_GROUP, name=kind)
    if not found:
        raise ConfigError(f"no forecaster is installed for model runs of kind {kind!r}: "
                          "install the model extra (pip install 'ciu-twin[model]')")
    try:
        return next(iter(found)).load()
    except ImportError as exc:
        raise ConfigError(f"the forecaster of {kind!r} model runs cannot be imported ({exc}): "
                          "install the model extra (pip install 'ciu-twin[model]')") from exc


def load_forecaster(twin: Twin, variable: str | None = None) -> tuple[Any, str]:
    """The newest trained model of ``variable`` when one exists, else the historical-average forecaster.

    ``variable`` defaults to :func:`forecast_variable`. Returns the forecaster
    and the name of the model that answers. A trained run that cannot be
    loaded (checkpoint missing or unreadable, saved by an earlier version, its
    forecaster not installed) is an error, not a reason to answer with another model.
    """
    variable = variable or forecast_variable(twin)
    run = twin.newest_run(target=variable)
    if run is None:
        baseline = HistoricalAverageForecaster(variable=variable)
        return baseline, baseline.name
    model = registered_forecaster(str(run["kind"])).load(twin, int(run["id"]))
    return model, str(getattr(model, "name", run["kind"]))
