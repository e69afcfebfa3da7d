"""The published champion of a model run, forecasting a twin under the one forecast contract.

>>> fc = ChampionForecaster.load(twin)                                       # doctest: +SKIP
>>> fc.forecast(twin, issued_at=datetime(2026, 4, 10, 8, tzinfo=UTC), horizons=3,
...             overrides={"weather": {"temperature": 30.0}})              # doctest: +SKIP

``issued_at`` is the last step whose observations the forecast may use;
horizon ``h`` is the step ``issued_at + h · step``. Every unit of every level
of the model gets a point forecast (bottom forecasts summed up, so children
sum to their parent exactly), its 10th, 50th and 90th percentiles (from
sample paths summed up the hierarchy) and its risk: the probability of
exceeding its threshold (capacity where known, else a high quantile of its
history). The bands are calibrated on the model's own forecasts of the last
:data:`~ciu.models.probabilistic.WINDOW` issue steps before ``issued_at`` whose
targets were observed by then, the risk as fitted on validation
(:class:`~ciu.models.probabilistic.Calibration`).

Overrides change the forecast steps:

- ``event`` ``{"code", "time", "people", "hours"}``: that many more people at
  ``code`` from ``time`` for ``hours``, added to the bottom forecasts below it by
  the rule every forecaster follows (:func:`ciu.forecast.event_shares`: by
  capacity, else evenly), so the unit and every unit above it gain exactly
  that many and nothing changes before the event starts;
- ``closure`` ``{"code"}``: the unit and everything below it are closed: their
  recent series are zeroed and their bottom forecasts are zero;
- ``weather`` ``{"temperature", "rain"}``: the weather of the forecast steps;
- ``holiday`` (bool): the forecast steps are a public holiday.
"""

from __future__ import annotations

import math
import pickle
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ciu.clock import forecast_times, utc
from ciu.errors import NotFound, ValidationError
from ciu.forecast import check_overrides, event_shares, event_steps
from ciu.models.baselines import Forecaster, roll_up
from ciu.models.champion import load_forecaster
from ciu.models.data import ExternalScaler, HierSeries, Scaler
from ciu.models.graph import build_graph
from ciu.models.inputs import Inputs
from ciu.models.probabilistic import WINDOW, Calibration, ResidualBank, band_factors, distribution
from ciu.models.train import TrainConfig

if TYPE_CHECKING:
    from ciu.twin import Twin

#: the columns of a forecast frame
#: what a forecast frame holds; ``risk`` is the calibrated probability of exceeding ``limit``, the unit's threshold
FORECAST_COLUMNS = ["code", "level", "variable", "horizon", "time", "value", "q10", "q50", "q90", "risk", "limit"]


class ChampionForecaster:
    """The champion of a model run, ready to forecast (use :meth:`load`)."""

    def __init__(self, forecaster: Forecaster, checkpoint: dict[str, Any], *, run_id: int) -> None:
        self.model = forecaster
        self.checkpoint = checkpoint
        self.run_id = run_id
        self.config = TrainConfig.from_dict(checkpoint["train"])
        self.scaler = Scaler.from_state(checkpoint["scaler"])
        self.ext_scaler = ExternalScaler.from_state(checkpoint["ext_scaler"])
        self.bank = ResidualBank.from_state(checkpoint["bank"])
        self.thresholds = [np.asarray(t) for t in checkpoint["thresholds"]]
        self.calibration = Calibration.from_state(checkpoint["calibration"])
        self._factors: dict[pd.Timestamp, list[np.ndarray]] = {}  # band factors per issue step, overrides aside
        self.step = pd.Timedelta(checkpoint["step"])
        self.name = str(checkpoint["champion"])

    @property
    def horizons(self) -> int:
        return int(self.config.horizons)

    @property
    def target(self) -> str:
        return str(self.checkpoint["target"])

    @classmethod
    def load(cls, twin: Twin, run_id: int | None = None, *, target: str | None = None) -> ChampionForecaster:
        """The champion of model run ``run_id`` (default: the newest trained run, of ``target`` when given).

        A missing or unreadable checkpoint, or one saved by an earlier version, is an error.
        """
        row = latest_run(twin, run_id, target=target)
        try:
            ckpt = torch.load(row["checkpoint"], map_location="cpu", weights_only=False)
        except (OSError, EOFError, RuntimeError, pickle.UnpicklingError) as exc:
            raise ValidationError(f"checkpoint of model run {int(row['id'])} cannot be read ({exc}): train again "
                                  "with `ciu train`", source=str(row["checkpoint"]), field="run") from exc
        if ckpt.get("version") != 3:
            raise ValidationError(f"model run {int(row['id'])} was saved by an earlier version: train again with "
                                  "`ciu train`", field="run")
        return cls(load_forecaster(ckpt["forecaster"]), ckpt, run_id=int(row["id"]))

    def issue_time(self, issued_at: datetime | str | pd.Timestamp) -> pd.Timestamp:
        """``issued_at`` in UTC, on the model's step."""
        return utc(issued_at).floor(self.step)

    def lookback(self) -> int:
        """Steps before the issue step that the inputs reach (input window and seasonal lags)."""
        per_day = max(1, int(pd.Timedelta(days=1) // self.step))
        longest = max(7, math.ceil(self.horizons / per_day))
        return max(self.config.history - 1, longest * per_day)

    def forecast(self, twin: Twin, *, issued_at: datetime, horizons: int,
                 overrides: dict | None = None) -> pd.DataFrame:
        """Forecast every unit at every level for the steps ``issued_at + 1 .. issued_at + horizons``.

        Returns
        -------
        pandas.DataFrame
            Columns :data:`FORECAST_COLUMNS`.
        """
        if not 1 <= horizons <= self.horizons:
            raise ValidationError(f"horizons must be 1..{self.horizons} for this model", field="horizons")
        ov = check_overrides(overrides)
        self._check_units(twin)
        issued = self.issue_time(issued_at)
        back = self.lookback() + WINDOW + self.horizons  # the recent forecasts that calibrate the bands
        start = issued - back * self.step
        end = issued + (self.horizons + 1) * self.step
        series = build_graph(twin, target=self.target, levels=list(self.checkpoint["levels"]), start=start, end=end,
                             step=self.step)
        if [lv.codes for lv in series.levels] != self.checkpoint["codes"]:
            raise ValidationError(f"the twin's units differ from those model run {self.run_id} was trained on",
                                  field="code")
        t = back
        series.values[t + 1:] = np.nan  # the future is not an input
        history = series.values[t - self.config.history + 1:t + 1]
        if np.isnan(history).all():
            raise ValidationError(f"no observations of {self.target!r} in the {self.config.history} steps up to"
                                  f" {issued}", field="issued_at")
        if issued not in self._factors:
            self._factors = {issued: self._band_factors(series, t)}
        closed = self._apply(series, ov, t)
        inputs = Inputs.build(series, scaler=self.scaler, ext_scaler=self.ext_scaler, history=self.config.history,
                              horizons=self.horizons)
        point = self.model.predict(inputs, np.array([t]))
        if ov.get("event"):
            self._add_event(series, point, ov["event"], issued)
        if closed is not None:
            point[:, closed] = 0.0
        dist = self.calibration.apply(distribution(point, self.bank, series, self.thresholds, seed=self.run_id),
                                      self._factors[issued])
        return self._frame(series, roll_up(point, series), dist.quantiles, dist.risk, issued, horizons)

    def _check_units(self, twin: Twin) -> None:
        """Refuse at once (one count per level, no graph built) a twin whose units per level changed since training."""
        now = twin.count_units()
        then = {lv: len(codes) for lv, codes in zip(self.checkpoint["levels"], self.checkpoint["codes"])}
        changed = {lv: (n, now.get(lv, 0)) for lv, n in then.items() if now.get(lv, 0) != n}
        if changed:
            what = ", ".join(f"{lv} {a:,} then, {b:,} now" for lv, (a, b) in changed.items())
            raise ValidationError(f"the twin's units differ from those model run {self.run_id} was trained on"
                                  f" ({what}): train again (ciu train)", field="code")

    def _band_factors(self, series: HierSeries, t: int) -> list[np.ndarray]:
        """How far the model's bands must stretch to have held p10–p90 over its recent forecasts (before ``t``)."""
        inputs = Inputs.build(series, scaler=self.scaler, ext_scaler=self.ext_scaler, history=self.config.history,
                              horizons=self.horizons)
        recent = np.arange(max(self.lookback(), t - self.horizons - WINDOW + 1), t - self.horizons + 1)
        raw = distribution(self.model.predict(inputs, recent), self.bank, series, self.thresholds, samples=50,
                           seed=self.run_id)
        return band_factors(raw.quantiles, inputs.truth(recent), self.calibration.active,
                            fallback=self.calibration.factors)

    # -- overrides ------------------------------------------------------------------
    def _bottom_below(self, series: HierSeries, code: str) -> np.ndarray:
        for i, lv in enumerate(series.levels):
            if code in lv.codes:
                return np.flatnonzero(series.membership()[i] == lv.codes.index(code))
        raise ValidationError(f"unit {code!r} is not in the model's levels", field="code")

    def _apply(self, series: HierSeries, ov: dict[str, Any], t: int) -> np.ndarray | None:
        fut = slice(t + 1, t + 1 + self.horizons)
        names = series.external_names
        if ov.get("holiday"):
            series.external[fut, names.index("holiday")] = 1.0
            series.__dict__.pop("holiday", None)  # the cached calendar flag
        if ov.get("weather"):
            for key, value in ov["weather"].items():
                if value is None:
                    continue
                if key not in names:
                    raise ValidationError(f"this model has no weather input {key!r}", field=f"weather.{key}")
                series.external[fut, names.index(key)] = float(value)
        if ov.get("event"):
            self._bottom_below(series, ov["event"]["code"])  # a unit of the model's levels, else a clear error
        if ov.get("closure"):
            below = self._bottom_below(series, ov["closure"]["code"])
            series.values[:t + 1, below] = np.where(np.isnan(series.values[:t + 1, below]), np.nan, 0.0)
            return below
        return None

    def _add_event(self, series: HierSeries, point: np.ndarray, event: dict[str, Any], issued: pd.Timestamp) -> None:
        """Add a scenario event's people to the bottom forecasts ``(1, N0, H, C)`` of the steps it covers, spread
        by the one rule of every forecaster (:func:`ciu.forecast.event_shares`): N people add N at the event's unit
        and at every unit above it, the distribution shifts with them, and nothing changes before it starts."""
        below = self._bottom_below(series, event["code"])
        cap = None if series.capacity is None else series.capacity[below]
        share = event_shares(cap, len(below))
        steps = np.flatnonzero(event_steps(forecast_times(issued, point.shape[2], self.step), event, self.step))
        point[0, below[:, None], steps[None, :], :] += (event["people"] * share / point.shape[3])[:, None, None]

    def _frame(self, series: HierSeries, values: list[np.ndarray], quantiles: list[np.ndarray],
               risk: list[np.ndarray], issued: pd.Timestamp, horizons: int) -> pd.DataFrame:
        frames = []
        times = forecast_times(issued, horizons, self.step)
        for i, lv in enumerate(series.levels):
            n = lv.n
            v = values[i][0, :, :horizons].sum(-1)  # (N, H): channels summed
            q = quantiles[i][0, :, :horizons].sum(-2)  # (N, H, Q)
            r = risk[i][0, :, :horizons].max(-1)  # (N, H)
            hs = np.tile(np.arange(1, horizons + 1), n)
            frames.append(pd.DataFrame({
                "code": np.repeat(lv.codes, horizons), "level": lv.name, "variable": self.target,
                "horizon": hs, "time": np.tile(times, n), "value": v.ravel().astype(float),
                "q10": q[..., 0].ravel().astype(float), "q50": q[..., 1].ravel().astype(float),
                "q90": q[..., 2].ravel().astype(float), "risk": r.ravel().astype(float),
                "limit": np.repeat(self.thresholds[i].sum(-1), horizons).astype(float),
            }))
        return pd.concat(frames, ignore_index=True)[FORECAST_COLUMNS]


def latest_run(twin: Twin, run_id: int | None = None, *, target: str | None = None) -> pd.Series:
    """The model run ``run_id``, or the newest trained run with a checkpoint (of ``target`` when given)."""
    if run_id is None:
        newest = twin.newest_run(target=target)
        if newest is None:
            wanted = "" if target is None else f" of {target!r}"
            raise NotFound(f"no trained model run{wanted}: run `ciu train` first")
        run_id = int(newest["id"])
    rows = twin.model_runs(ids=[run_id])  # one row, not every run's metrics
    if rows.empty:
        raise NotFound(f"no model run with id {run_id}")
    row = rows.iloc[-1]
    if not row["checkpoint"] or not Path(row["checkpoint"]).is_file():
        raise NotFound(f"checkpoint of model run {int(row['id'])} not found: {row['checkpoint']}")
    return row
