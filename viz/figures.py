"""Pure builders of the dashboard's charts, cards and scenario numbers (no database, no I/O)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ciu.clock import local_label
from ciu.scenarios import compare


#: the forecast's colour, and its p10–p90 band's
FORECAST_COLOR = "#f58518"
BAND_COLOR = "rgba(245, 133, 24, 0.22)"


def forecast_band(forecast: pd.DataFrame) -> pd.DataFrame:
    """The steps of ``forecast`` with both a 10th and a 90th percentile (``time, q10, q90``); empty when none has."""
    if not {"q10", "q90"} <= set(forecast.columns):
        return pd.DataFrame(columns=["time", "q10", "q90"])
    band = forecast[["time", "q10", "q90"]].astype({"q10": float, "q90": float})
    return band[np.isfinite(band["q10"]) & np.isfinite(band["q90"])]


def series_figure(history: pd.DataFrame, forecast: pd.DataFrame, *, title: str, variable: str,
                  now: pd.Timestamp | None = None, capacity: float | None = None) -> go.Figure:
    """History (solid) and forecast (dashed) of one unit's ``variable``, with its capacity when it has one.

    Where the forecast has percentiles (columns ``q10``, ``q90``), the band between
    them is shaded behind it: eight times in ten the value should fall inside.
    """
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=history["time"], y=history["value"], mode="lines", name="observed",
                             line={"color": "#4c78a8", "width": 2}))
    band = forecast_band(forecast)
    if len(band):
        fig.add_trace(go.Scatter(x=band["time"], y=band["q90"], mode="lines", name="p90", showlegend=False,
                                 line={"width": 0, "color": FORECAST_COLOR},
                                 hovertemplate="p90 %{y:,.0f}<extra></extra>"))
        fig.add_trace(go.Scatter(x=band["time"], y=band["q10"], mode="lines", name="p10–p90", fill="tonexty",
                                 fillcolor=BAND_COLOR, line={"width": 0, "color": FORECAST_COLOR},
                                 hovertemplate="p10 %{y:,.0f}<extra></extra>"))
    if len(forecast):
        fig.add_trace(go.Scatter(x=forecast["time"], y=forecast["value"], mode="lines+markers", name="forecast",
                                 line={"color": FORECAST_COLOR, "width": 2, "dash": "dash"}, marker={"size": 4}))
    if capacity is not None and np.isfinite(capacity) and capacity > 0:
        fig.add_hline(y=capacity, line={"color": "#b00026", "width": 1, "dash": "dot"},
                      annotation_text="capacity", annotation_position="top left")
    if now is not None:
        fig.add_vline(x=now.to_pydatetime(), line={"color": "#888", "width": 1})
    fig.update_layout(title={"text": title, "font": {"size": 13}}, height=260, margin={"l": 40, "r": 10, "t": 36, "b": 30},
                      legend={"orientation": "h", "y": -0.25, "traceorder": "normal"}, template="plotly_white",
                      yaxis_title=variable)
    return fig


def _span(step: str | None, horizons: int | None) -> str:
    """How far ahead a model forecasts, in words (``next 3 h``); empty when unknown."""
    if not step or not horizons:
        return ""
    total = pd.Timedelta(step) * int(horizons)
    if total % pd.Timedelta(days=1) == pd.Timedelta(0) and total >= pd.Timedelta(days=2):
        return f"next {total.days} days"
    if total % pd.Timedelta(hours=1) == pd.Timedelta(0):
        return f"next {int(total / pd.Timedelta(hours=1))} h"
    return f"next {int(total / pd.Timedelta(minutes=1))} min"


def skill_rows(skill: dict[str, Any]) -> list[tuple[str, str]]:
    """The model behind a forecast and its test scores at one level, as label–text pairs, in order.

    ``skill`` is what :meth:`ciu.viz.data.DashboardData.skill` returns: ``model``,
    ``run_id``, ``trained``, ``scored``, ``level``, ``variable``, ``rmse``,
    ``gain_pct`` (per cent of RMSE below seasonal naive), ``coverage`` (share of
    test values between the 10th and 90th percentiles), ``step``, ``horizons``
    and, for the baseline, ``waiting`` (a trained run that has not forecast yet).
    """
    if not skill["trained"]:
        name = str(skill["model"]).replace("_", " ")
        why = (f"model run {skill['waiting']} is trained but has not forecast yet" if skill.get("waiting") is not None
               else f"no model of {skill['variable']} has been trained")
        return [("forecast by", f"{name} (baseline)"), ("test scores", f"none: {why}")]
    rows = [("forecast by", f"{skill['model']} (model run {skill['run_id']})")]
    if not skill["scored"]:
        return rows + [("test scores", f"none recorded at {skill['level']} level")]
    span = _span(skill.get("step"), skill.get("horizons"))
    rmse = float(skill["rmse"])
    rows.append(("test RMSE", f"{rmse:,.{1 if abs(rmse) < 100 else 0}f} {skill['variable']}"
                              + (f" ({span})" if span else "")))
    gain = skill["gain_pct"]
    if gain is None:
        versus = "–"
    elif round(gain) == 0:
        versus = "the same RMSE"
    else:
        versus = f"{abs(gain):.0f} % {'lower' if gain > 0 else 'higher'} RMSE"
    rows.append(("vs seasonal naive", versus))
    cov = skill["coverage"]
    rows.append(("p10–p90 coverage", "–" if cov is None else f"{100 * cov:.0f} % (ideal 80 %)"))
    return rows


def kpis(values: np.ndarray, density: np.ndarray, codes: list[str], *, n_open_alerts: int, step: int,
         variable: str, reference: str = "capacity") -> list[dict[str, str]]:
    """Key figures at one time step: the variable's total, fullest unit, units over 80 % of ``reference``, open alerts."""
    col = values[:, step] if values.size else np.array([])
    dens = density[:, step] if density.size else np.array([])
    seen = np.isfinite(col)
    total = float(np.nansum(col)) if seen.any() else float("nan")
    finite = np.isfinite(dens)
    top = int(np.nanargmax(np.where(finite, dens, -np.inf))) if finite.any() else None
    return [
        {"label": variable, "value": "–" if not np.isfinite(total) else f"{total:,.0f}"},
        {"label": "fullest unit", "value": "–" if top is None else f"{codes[top].rsplit('/', 1)[-1]} {dens[top]:.0%}"},
        {"label": f"over 80 % of {reference}", "value": f"{int((dens[finite] >= 0.8).sum())} / {len(codes)}"},
        {"label": "open alerts", "value": str(n_open_alerts)},
    ]


def card_rows(card: dict[str, Any]) -> list[tuple[str, str]]:
    """The seed's fields of a floor/building card, as label–text pairs, in order."""
    def num(v: Any, fmt: str) -> str:
        return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, fmt)

    tax = card["tax_status"] if card["tax_status"] is not None else "restricted"
    return [
        ("id", card["code"]),
        ("level", card["level"] + (f" {card['floor']}" if card.get("floor") is not None else "")),
        ("floor count", num(card["floors"], "d") if isinstance(card["floors"], int) else str(card["floors"] or "–")),
        ("use", str(card["use"] or "–")),
        ("ownership", str(card["ownership"] or "–")),
        ("tax status", str(tax)),
        ("weather", f"{num(card['temperature'], '.1f')} °C, rain {num(card['rain'], '.1f')} mm"),
        ("flow", f"{num(card['value'], ',.0f')} {card['variable']}"
                 + ("" if card.get("capacity") is None else f" of {num(card['capacity'], ',.0f')}")),
        ("date", local_label(card["time"], card.get("tz", "UTC"))),
    ]


def scenario_numbers(baseline: pd.DataFrame, scenario: pd.DataFrame, *, level: str) -> dict[str, Any]:
    """Where and when a scenario differs most from the baseline, at ``level``.

    Both frames have ``code, level, horizon, time, value, risk``. Returns the
    hour of the largest total difference, the per-unit difference at that hour
    and totals and peaks of both runs.
    """
    b = baseline[baseline["level"] == level].set_index(["code", "horizon"]).sort_index()
    s = scenario[scenario["level"] == level].set_index(["code", "horizon"]).sort_index().reindex(b.index)
    diff = (s["value"] - b["value"]).rename("diff")
    by_hour = diff.groupby(level="horizon").sum()
    hour = int(by_hour.abs().idxmax()) if len(by_hour) else 1
    at = diff.xs(hour, level="horizon")
    time = pd.Timestamp(b.xs(hour, level="horizon")["time"].iloc[0]) if len(b) else None
    return {
        "horizon": hour, "time": time, "diff": at,
        "baseline_total": float(b.xs(hour, level="horizon")["value"].sum()),
        "scenario_total": float(s.xs(hour, level="horizon")["value"].sum()),
        "baseline_peak_risk": float(b["risk"].max()), "scenario_peak_risk": float(s["risk"].max()),
        "units_changed": int((at.abs() > 0.5).sum()),
        "baseline_over": int((b.xs(hour, level="horizon")["risk"] >= 0.8).sum()),
        "scenario_over": int((s.xs(hour, level="horizon")["risk"] >= 0.8).sum()),
    }


def scenario_units(baseline: pd.DataFrame, scenario: pd.DataFrame, *, levels: list[str], limit: int = 12) -> pd.DataFrame:
    """The units a scenario changes, one row each at the hour it changes them most: the upper levels first, then
    the largest change (:func:`ciu.scenarios.compare`, as the API answers). Columns ``code, level, time, value_b,
    value_s, delta, risk_b, risk_s`` and the bands ``q10_b, q90_b, q10_s, q90_s`` (NaN without bands)."""
    rows = compare(baseline, scenario, levels=levels, max_units=limit).rows
    if rows.empty:
        return rows
    at = rows.loc[rows["delta"].abs().groupby(rows["code"], sort=False).idxmax()]
    for col in ("q10_b", "q90_b", "q10_s", "q90_s"):
        if col not in at:
            at[col] = float("nan")
    return at.reset_index(drop=True)


def scenario_overrides(*, kind: str, code: str | None, people: float | None, hours: int | None,
                       time: pd.Timestamp | None, temperature: float | None, rain: float | None,
                       holiday: bool) -> dict[str, Any]:
    """The forecaster's ``overrides`` for the scenario form's fields."""
    out: dict[str, Any] = {}
    if kind == "event" and code:
        out["event"] = {"code": code, "time": time, "people": float(people or 0), "hours": int(hours or 1)}
    elif kind == "closure" and code:
        out["closure"] = {"code": code}
    if temperature is not None or rain is not None:
        out["weather"] = {"temperature": temperature, "rain": rain}
    if holiday:
        out["holiday"] = True
    return out
