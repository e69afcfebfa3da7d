"""The alert rule, written once: which forecasts raise an alert, and how severe it is.

A unit's forecast raises an alert where its risk (the calibrated probability
that the count exceeds the unit's threshold) reaches the rule's ``threshold``;
one alert per unit and hour, from the horizon with the highest risk; it is
``critical`` at or above ``critical``, else a ``warning``. Every level alerts,
the city included. The defaults come from ``CIU_ALERT_THRESHOLD`` (0.8) and
``CIU_ALERT_CRITICAL`` (0.95). Pure: no SQL, no I/O.

>>> from ciu.alerts import AlertRule
>>> AlertRule(threshold=0.5, critical=0.9).severity(0.95)
'critical'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ciu.errors import ConfigError

#: the columns of an alert frame (what the store writes)
ALERT_COLUMNS = ["code", "kind", "severity", "time", "risk", "threshold", "message"]


class AlertSettings(BaseSettings):
    """The alert rule's thresholds, read from ``CIU_ALERT_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="CIU_ALERT_", extra="ignore")

    threshold: float = Field(0.8, ge=0, le=1, description="risk at or above which a forecast raises an alert")
    critical: float = Field(0.95, ge=0, le=1, description="risk at or above which an alert is critical")


@dataclass(frozen=True)
class AlertRule:
    """When a forecast raises an alert (``risk >= threshold``) and when it is critical (``risk >= critical``)."""

    threshold: float = 0.8
    critical: float = 0.95

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0 or not 0.0 <= self.critical <= 1.0:
            raise ConfigError(f"alert thresholds must lie in [0, 1]: threshold {self.threshold}, "
                              f"critical {self.critical}")

    @classmethod
    def configured(cls, threshold: float | None = None) -> AlertRule:
        """The rule of the settings (``CIU_ALERT_*``), with another alert ``threshold`` when given."""
        settings = AlertSettings()
        threshold = settings.threshold if threshold is None else float(threshold)
        return cls(threshold=threshold, critical=max(settings.critical, threshold))

    def severity(self, risk: float) -> str:
        return "critical" if risk >= self.critical else "warning"

    def alerts(self, forecast: pd.DataFrame) -> pd.DataFrame:
        """The alerts of a forecast frame (columns ``code, level, variable, horizon, time, value, risk`` and, when the
        forecaster gives it, ``limit``: the unit's threshold, named in the message)."""
        hot = forecast[forecast["risk"] >= self.threshold]
        if hot.empty:
            return pd.DataFrame(columns=ALERT_COLUMNS)
        hot = hot.sort_values("risk", ascending=False, kind="stable").drop_duplicates(["code", "time"])
        return pd.DataFrame({
            "code": hot["code"].to_numpy(), "kind": "crowding",
            "severity": np.where(hot["risk"] >= self.critical, "critical", "warning"),
            "time": pd.to_datetime(hot["time"], utc=True).dt.to_pydatetime(), "risk": hot["risk"].to_numpy(),
            "threshold": self.threshold,
            "message": [f"{r.level} {r.code}: {r.variable} forecast {r.value:.0f}"
                        + (f" against a threshold of {r.limit:.0f}" if np.isfinite(getattr(r, "limit", np.nan)) else "")
                        + f" (risk {r.risk:.2f}) at horizon {r.horizon}" for r in hot.itertuples()],
        })
