"""The forecaster protocol: a trained tower, loaded from a model run, forecasting a twin.

>>> fc = TowerForecaster.load(twin)                                        # doctest: +SKIP
>>> fc.forecast(twin, issued_at=datetime(2026, 4, 10, 8, tzinfo=UTC), horizons=3,
...             overrides={"weather": {"temperature": 30.0}})              # doctest: +SKIP

Overrides change the model inputs of the forecast hours:

- ``event`` ``{"code", "time", "people", "hours"}``: announced attendance, spread
  evenly over the bottom units below ``code``, from ``time`` for ``hours``;
- ``closure`` ``{"code"}``: the unit and everything below it are closed: their
  recent series are zeroed and their bottom forecasts are zero;
- ``weather`` ``{"temperature", "rain"}``: the weather of the forecast hours;
- ``holiday`` (bool): the forecast hours are (not) a public holiday.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ciu.errors import ValidationError
from models.data import SEASONAL_LAGS, HierSeries
from models.graph import build_graph, series_from_graph
from models.runs import latest_run
from models.train import TrainConfig, pick_device, predict, prepare
from models.tower import Tower, TowerConfig

if TYPE_CHECKING:
    from ciu.twin import Twin

OVERRIDE_KEYS = ("event", "closure", "weather", "holiday")


def _utc(value: datetime | str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


class TowerForecaster:
    """A trained tower ready to forecast (use :meth:`load`)."""

    def __init__(self, model: Tower, checkpoint: dict[str, Any], *, run_id: int) -> None:
        self.model = model
        self.checkpoint = checkpoint
        self.run_id = run_id
        self.train_config = TrainConfig(**checkpoint["train"])

    @property
    def horizons(self) -> int:
        return int(self.model.config.horizons)

    @property
    def target(self) -> str:
        return str(self.checkpoint["target"])

    @classmethod
    def load(cls, twin: Twin, run_id: int | None = None, *, target: str | None = None) -> TowerForecaster:
        """The tower of model run ``run_id`` (default: the newest trained tower run, of ``target`` when given)."""
        row = latest_run(twin, run_id, target=target)
        device = pick_device(None)
        ckpt = torch.load(row["checkpoint"], map_location=device, weights_only=False)
        model = Tower(TowerConfig.from_dict(ckpt["tower"])).to(device)
        model.load_state_dict(ckpt["state_dict"])
        model.eval()
        return cls(model, ckpt, run_id=int(row["id"]))

    def forecast(self, twin: Twin, *, issued_at: datetime, horizons: int,
                 overrides: dict | None = None) -> pd.DataFrame:
        """Forecast every unit at every level for hours ``issued_at .. issued_at + horizons - 1``.

        Returns
        -------
        pandas.DataFrame
            Columns ``code, level, variable, horizon, time, value, risk``.
        """
        if not 1 <= horizons <= self.horizons:
            raise ValidationError(f"horizons must be 1..{self.horizons} for this model", field="horizons")
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(OVERRIDE_KEYS))
        if unknown:
            raise ValidationError(f"unknown override {unknown[0]!r}; use {list(OVERRIDE_KEYS)}", field=unknown[0])
        issued = _utc(issued_at).floor("h")
        back = max(max(SEASONAL_LAGS), self.train_config.history)
        start = issued - pd.Timedelta(hours=back)
        end = issued + pd.Timedelta(hours=self.horizons)
        levels = list(self.checkpoint["levels"])
        graph = build_graph(twin, target=self.target, levels=levels, start=start, end=end)
        series = series_from_graph(graph)
        if [lv.codes for lv in series.levels] != self.checkpoint["codes"]:
            raise ValidationError(f"the twin's units differ from those model run {self.run_id} was trained on",
                                  field="code")
        t = back
        series.values[t:] = np.nan  # the future is not an input
        bottom_mask = self._apply(series, overrides, t)
        history = series.values[t - self.train_config.history:t]
        if np.isnan(history).all():
            raise ValidationError(f"no observations of {self.target!r} in the {self.train_config.history} hours"
                                  f" before {issued}", field="issued_at")
        device = next(self.model.parameters()).device
        prep = prepare(series, fit_stop=len(series.times), config=self.train_config, device=device,
                       scales=self.checkpoint["scales"], ext_mean=self.checkpoint["ext_mean"],
                       ext_sd=self.checkpoint["ext_sd"], thresholds=self.checkpoint["thresholds"])
        mask_t = None if bottom_mask is None else torch.tensor(bottom_mask, dtype=torch.float32, device=device)
        dens, risk = predict(self.model, prep, np.array([t]), bottom_mask=mask_t)
        return self._frame(series, dens, risk, issued, horizons)

    # -- overrides ------------------------------------------------------------------
    def _bottom_below(self, series: HierSeries, code: str) -> np.ndarray:
        for i, lv in enumerate(series.levels):
            if code in lv.codes:
                return np.flatnonzero(series.membership()[i] == lv.codes.index(code))
        raise ValidationError(f"unit {code!r} is not in the twin", field="code")

    def _apply(self, series: HierSeries, overrides: dict, t: int) -> np.ndarray | None:
        fut = slice(t, t + self.horizons)
        names = series.external_names
        if "holiday" in overrides:
            series.external[fut, names.index("holiday")] = 1.0 if overrides["holiday"] else 0.0
        if "weather" in overrides:
            for key, value in dict(overrides["weather"]).items():
                if key not in names:
                    raise ValidationError(f"this model has no weather input {key!r}", field=f"weather.{key}")
                series.external[fut, names.index(key)] = float(value)
        if "event" in overrides:
            ev = dict(overrides["event"])
            missing = [k for k in ("code", "time", "people", "hours") if k not in ev]
            if missing:
                raise ValidationError(f"event needs {missing}", field=f"event.{missing[0]}")
            if series.covariates is None:
                raise ValidationError("this model has no event input", field="event")
            below = self._bottom_below(series, str(ev["code"]))
            t0 = series.times.get_indexer([_utc(ev["time"]).floor("h").tz_localize(None)])[0]
            if t0 < 0 or len(below) == 0:
                return self._closure(series, overrides, t)
            t1 = min(t0 + int(ev["hours"]), len(series.times))
            series.covariates[t0:t1, below, 0] += float(ev["people"]) / len(below)
        return self._closure(series, overrides, t)

    def _closure(self, series: HierSeries, overrides: dict, t: int) -> np.ndarray | None:
        if "closure" not in overrides:
            return None
        below = self._bottom_below(series, str(dict(overrides["closure"])["code"]))
        series.values[:t, below] = np.where(np.isnan(series.values[:t, below]), np.nan, 0.0)
        mask = np.ones(series.levels[0].n)
        mask[below] = 0.0
        return mask

    def _frame(self, series: HierSeries, dens: list[np.ndarray], risk: list[np.ndarray], issued: pd.Timestamp,
               horizons: int) -> pd.DataFrame:
        frames = []
        for i, lv in enumerate(series.levels):
            value = dens[i][0, :, :horizons].sum(-1)  # (N, H): channels summed
            r = risk[i][0, :, :horizons]
            n = lv.n
            hs = np.tile(np.arange(1, horizons + 1), n)
            frames.append(pd.DataFrame({
                "code": np.repeat(lv.codes, horizons), "level": lv.name, "variable": self.target,
                "horizon": hs, "time": issued + pd.to_timedelta(hs - 1, unit="h"),
                "value": value.ravel().astype(float), "risk": r.ravel().astype(float),
            }))
        return pd.concat(frames, ignore_index=True)
