"""The one alert rule, on its own (no database)."""

from __future__ import annotations

import pandas as pd
import pytest

from ciu.alerts import ALERT_COLUMNS, AlertRule
from ciu.errors import ConfigError


def _forecast(rows: list[tuple[str, int, str, float]]) -> pd.DataFrame:
    t0 = pd.Timestamp("2026-04-10 15:00", tz="UTC")
    return pd.DataFrame([{"code": code, "level": "building", "variable": "people", "horizon": h,
                          "time": t0 + pd.Timedelta(hours=int(hour[1:])), "value": 100.0 * risk, "risk": risk}
                         for code, h, hour, risk in rows])


def test_one_alert_per_unit_and_hour_at_its_highest_risk_with_the_severity_of_the_rule() -> None:
    frame = _forecast([("a", 1, "h1", 0.79), ("b", 1, "h1", 0.8), ("c", 1, "h1", 0.97), ("c", 2, "h1", 0.9),
                       ("c", 2, "h2", 0.85)])
    alerts = AlertRule(threshold=0.8, critical=0.95).alerts(frame)
    assert list(alerts.columns) == ALERT_COLUMNS
    got = {(r.code, r.time.hour, r.severity, r.risk) for r in alerts.itertuples()}
    assert got == {("b", 16, "warning", 0.8), ("c", 16, "critical", 0.97), ("c", 17, "warning", 0.85)}
    assert (alerts["threshold"] == 0.8).all() and alerts["message"].str.contains("(risk 0.97) at horizon 1", regex=False).any()


def test_nothing_hot_gives_an_empty_frame_with_the_columns() -> None:
    alerts = AlertRule().alerts(_forecast([("a", 1, "h1", 0.1)]))
    assert alerts.empty and list(alerts.columns) == ALERT_COLUMNS


def test_the_rule_reads_its_settings_and_refuses_thresholds_outside_zero_one(monkeypatch) -> None:
    monkeypatch.setenv("CIU_ALERT_THRESHOLD", "0.6")
    monkeypatch.setenv("CIU_ALERT_CRITICAL", "0.9")
    assert AlertRule.configured() == AlertRule(threshold=0.6, critical=0.9)
    assert AlertRule.configured(0.95) == AlertRule(threshold=0.95, critical=0.95)  # critical never below the alert
    assert AlertRule.configured(0.3).severity(0.89) == "warning"
    with pytest.raises(ConfigError, match="alert thresholds"):
        AlertRule(threshold=1.5)


def test_the_message_says_why_a_unit_is_at_risk() -> None:
    frame = _forecast([("a", 2, "h1", 0.93)]).assign(limit=115.0)
    message = AlertRule(threshold=0.8).alerts(frame)["message"].iloc[0]
    assert message == "building a: people forecast 93 against a threshold of 115 (risk 0.93) at horizon 2"
