"""Planner (3D): the lowest shown level extruded (floors, building by building), coloured by forecast; cards;
what-if scenarios."""

from __future__ import annotations

from typing import Any

import dash
import pandas as pd
from dash import Dash, Input, Output, State, dcc, html, no_update

from ciu.clock import local_label
from ciu.errors import CiuError
from ciu.viz.figures import card_rows, scenario_numbers, scenario_overrides, scenario_units, skill_rows
from ciu.viz.ids import Id
from ciu.viz.layers import difference_payload, floor_layer, view_of
from ciu.viz.provider import DataProvider
from ciu.viz.pages.common import (base_map, level_payload, map_panel, register_playback, rows_table, slider_marks,
                              time_controls, time_label)

PATH = "/planner"
PITCH, BEARING = 50.0, -20.0
RENDER_JS = ("function(payload, step) {{ return window.ciu ? window.ciu.render(payload, step, '{map}', '{click}',"
             " {{basemap: false}}) : 'waiting'; }}")


def _number(label: str, id_: str, value: float | None, **kw: Any) -> html.Div:
    return html.Div(className="field", children=[html.Label(label), dcc.Input(id=id_, type="number", value=value,
                                                                              debounce=True, **kw)])


def scenario_form(data: DataProvider) -> html.Div:
    """Event of N more (people, trips) at a unit and hour, closure, weather and holiday overrides."""
    units = data.all_units()
    levels = [lv for lv in reversed(data.levels[1:]) if data.kind(lv) != "storey"]  # not the city, not storeys
    choices = units[units["level"].isin(levels)].sort_index()
    options = [{"label": f"{row['level']} · {row['name'] or code}", "value": code} for code, row in choices.iterrows()]
    first = next((o["value"] for lv in levels for o in options if units.loc[o["value"], "level"] == lv), None)
    h = data.horizons
    return html.Div(className="scenario-form", children=[
        html.H3("Scenario"),
        html.Div(f"the model forecasts {h} hour{'s' if h != 1 else ''} ahead: a scenario covers those",
                 className="muted", id=Id.SCN_HORIZONS),
        dcc.RadioItems(id=Id.SCN_KIND, options=[{"label": "event", "value": "event"},
                                                {"label": "closure", "value": "closure"},
                                                {"label": "none", "value": "none"}], value="event", inline=True),
        html.Div(className="field", children=[html.Label("unit"), dcc.Dropdown(id=Id.SCN_UNIT, options=options,
                                                                                 value=first, clearable=False)]),
        _number(data.settings.variable, Id.SCN_PEOPLE, 600, min=0, step=50),
        _number("starts at forecast hour", Id.SCN_HOUR, 2, min=1, max=h, step=1),
        _number("lasting (hours)", Id.SCN_HOURS, 3, min=1, max=h, step=1),
        _number("temperature override (°C)", Id.SCN_TEMPERATURE, None, step=0.5),
        _number("rain override (mm/h)", Id.SCN_RAIN, None, min=0, step=0.5),
        dcc.Checklist(id=Id.SCN_HOLIDAY, options=[{"label": "treat as holiday", "value": "holiday"}], value=[]),
        html.Button("run scenario", id=Id.SCN_RUN, n_clicks=0, className="btn primary"),
    ])


def layout(data: DataProvider, **_: Any) -> html.Div:
    bottom = data.bottom_level
    above = data.levels[-2] if len(data.levels) > 1 else None
    stacked = data.kind(bottom) == "storey" and above is not None
    noun = bottom if stacked else "unit"
    return html.Div(className="page", children=[
        time_controls(Id.PLAN_TIME, Id.PLAN_TIME_LABEL, Id.PLAN_PLAY, Id.PLAN_TICK, play_ms=data.settings.play_ms),
        html.Div(className="main", children=[
            map_panel(Id.PLAN_MAP, tall=True, legend=f"100 % of {noun} capacity" if data.has_capacity
                      else f"100 % of each {noun}'s {data.reference_name}"),
            html.Div(className="side", children=[
                html.H3(f"{bottom.capitalize()} / {above}" if stacked else bottom.capitalize()),
                html.Div(f"click a {noun}", id=Id.PLAN_CARD, className="card"),
            ]),
        ]),
        html.Div(className="main scenario", children=[
            scenario_form(data),
            html.Div(className="map-wrap", children=[
                html.Div(id=Id.SCN_MAP, className="map"),
                html.Div(className="legend", children=[html.Span("fewer"), html.Span(
                    className="ramp", style={"background": "linear-gradient(to right, rgb(33,102,172),"
                                                           " rgb(200,200,200), rgb(178,24,43))"}),
                    html.Span(f"more {data.settings.variable} than the baseline")]),
            ]),
            html.Div(id=Id.SCN_NUMBERS, className="side numbers", children="run a scenario to compare"),
        ]),
        dcc.Store(id=Id.PLAN_FRAME), dcc.Store(id=Id.PLAN_CLICK), dcc.Store(id=Id.SCN_FRAME),
        html.Div("", id=Id.PLAN_RENDERED, className="rendered"),
        html.Div("", id=Id.SCN_RENDERED, className="rendered"),
    ])


def card_table(card: dict[str, Any], skill: dict[str, Any] | None = None) -> html.Table:
    """The unit's card; below it, when ``skill`` is given, the model behind its forecast and its test scores."""
    return rows_table(card_rows(card) + (skill_rows(skill) if skill is not None else []), prefix="f-")


def numbers_table(nums: dict[str, Any], *, model: str, variable: str, unit: str, tz: str = "UTC") -> html.Div:
    rows = [
        ("hour compared", f"{local_label(nums['time'], tz)} (+{nums['horizon']} h)"),
        (f"{variable}, baseline", f"{nums['baseline_total']:,.0f}"),
        (f"{variable}, scenario", f"{nums['scenario_total']:,.0f}"),
        ("difference", f"{nums['scenario_total'] - nums['baseline_total']:+,.0f}"),
        (f"{unit}s changed", str(nums["units_changed"])),
        (f"{unit}s ≥ 80 % (baseline → scenario)", f"{nums['baseline_over']} → {nums['scenario_over']}"),
        ("peak risk (baseline → scenario)", f"{nums['baseline_peak_risk']:.0%} → {nums['scenario_peak_risk']:.0%}"),
        ("model", model),
    ]
    return html.Div([html.H3("Scenario vs baseline"), html.Table(className="card-table", children=[
        html.Tr([html.Th(k), html.Td(v, className="scn-" + str(i))]) for i, (k, v) in enumerate(rows)])])


def units_table(units: pd.DataFrame, *, tz: str = "UTC") -> html.Div:
    """The units the scenario changes, at the hour it changes each most: baseline and scenario with their p10–p90
    bands, the difference and the risk."""
    def band(low: float, high: float) -> str:
        return "" if pd.isna(low) or pd.isna(high) else f" ({low:,.0f}–{high:,.0f})"

    head = html.Tr([html.Th(h) for h in ("unit", "level", "hour", "baseline (p10–p90)", "scenario (p10–p90)",
                                         "difference", "risk")])
    body = [html.Tr(className="scn-unit", children=[
        html.Td("/".join(r.code.split("/")[-2:]), title=r.code), html.Td(r.level), html.Td(local_label(r.time, tz,
                                                                                                "%a %H:%M")),
        html.Td(f"{r.value_b:,.0f}{band(r.q10_b, r.q90_b)}"), html.Td(f"{r.value_s:,.0f}{band(r.q10_s, r.q90_s)}"),
        html.Td(f"{r.delta:+,.0f}"), html.Td(f"{r.risk_b:.0%} → {r.risk_s:.0%}")]) for r in units.itertuples()]
    return html.Div(id="scn-units", children=[html.H3(f"Units changed ({len(units)} shown)"),
                                              html.Table(className="card-table units-table", children=[head, *body])])


def register(app: Dash, data: DataProvider) -> None:
    """Register the page and its callbacks on ``app``."""
    dash.register_page("ciu.viz.pages.planner", path=PATH, name="Planner", title="CIU Twin · planner", order=1,
                       layout=lambda **kw: layout(data, **kw))
    bottom = data.bottom_level

    @app.callback(Output(Id.PLAN_FRAME, "data"), Output(Id.PLAN_TIME, "max"), Output(Id.PLAN_TIME, "marks"),
                  Output(Id.PLAN_TIME, "value"), Input(Id.REFRESH, "n_intervals"),
                  State(Id.PLAN_TIME, "value"), State(Id.PLAN_FRAME, "data"))
    def load_frame(_n: int, step: int | None, old: dict | None):
        frame = data.level_frame(bottom)
        payload = level_payload(frame, base=base_map(data), key=bottom, extruded=True, pitch=PITCH, bearing=BEARING,
                                label=data.settings.variable)
        value = min(int(step), len(frame.times) - 1) if old is not None and step is not None else frame.n_history - 1
        return payload, len(frame.times) - 1, slider_marks(payload["times"], frame.n_history, frame.tz), value

    @app.callback(Output(Id.PLAN_TIME_LABEL, "children"), Input(Id.PLAN_TIME, "value"),
                  State(Id.PLAN_FRAME, "data"))
    def label(step: int | None, payload: dict | None):
        return time_label(payload["times"], payload["n_history"], step, payload.get("tz", "UTC")) if payload else ""

    @app.callback(Output(Id.PLAN_CARD, "children"), Input(Id.PLAN_CLICK, "data"), Input(Id.PLAN_TIME, "value"),
                  State(Id.PLAN_FRAME, "data"), prevent_initial_call=True)
    def card(click: dict | None, step: int | None, payload: dict | None):
        if not click or not payload:
            return no_update
        i = payload["n_history"] - 1 if step is None else int(step)
        card = data.card(click["code"], time=pd.Timestamp(payload["times"][i]))
        return card_table(card, data.skill(card["level"]))

    register_playback(app, play=Id.PLAN_PLAY, tick=Id.PLAN_TICK, time=Id.PLAN_TIME)

    @app.callback(Output(Id.SCN_FRAME, "data"), Output(Id.SCN_NUMBERS, "children"),
                  Input(Id.SCN_RUN, "n_clicks"),
                  State(Id.SCN_KIND, "value"), State(Id.SCN_UNIT, "value"), State(Id.SCN_PEOPLE, "value"),
                  State(Id.SCN_HOUR, "value"), State(Id.SCN_HOURS, "value"), State(Id.SCN_TEMPERATURE, "value"),
                  State(Id.SCN_RAIN, "value"), State(Id.SCN_HOLIDAY, "value"), prevent_initial_call=True)
    def run_scenario(_n: int, kind: str, code: str | None, people: float | None, hour: int | None,
                     hours: int | None, temperature: float | None, rain: float | None, holiday: list[str]):
        start = data.now() + pd.Timedelta(hours=int(hour or 1))
        overrides = scenario_overrides(kind=kind, code=code, people=people, hours=hours, time=start,
                                       temperature=temperature, rain=rain, holiday=bool(holiday))
        try:
            result = data.scenario(overrides)
        except CiuError as exc:
            return no_update, html.Div(f"scenario not run: {exc}", className="error")
        nums = scenario_numbers(result["baseline"], result["scenario"], level=bottom)
        floors = data.units(bottom)
        diff = nums["diff"].reindex(floors.index).fillna(0.0).to_numpy()
        payload = difference_payload(floor_layer(floors), base=base_map(data), diff=diff,
                                     view=view_of(floors, pitch=PITCH, bearing=BEARING),
                                     key=f"scenario:{_n}")
        changed = scenario_units(result["baseline"], result["scenario"], levels=data.levels[::-1])
        return payload, [numbers_table(nums, model=result["model"], variable=data.settings.variable, unit=bottom,
                                       tz=data.timezone), units_table(changed, tz=data.timezone)]

    for map_id, click_id, frame_id, time_id, out_id in (
            (Id.PLAN_MAP, Id.PLAN_CLICK, Id.PLAN_FRAME, Id.PLAN_TIME, Id.PLAN_RENDERED),
            (Id.SCN_MAP, Id.PLAN_CLICK, Id.SCN_FRAME, None, Id.SCN_RENDERED)):
        inputs = [Input(frame_id, "data")] + ([Input(time_id, "value")] if time_id else [])
        js = RENDER_JS.format(map=map_id.value, click=click_id.value)
        if time_id is None:
            js = js.replace("function(payload, step)", "function(payload)").replace("payload, step,", "payload, 0,")
        app.clientside_callback(js, Output(out_id, "children"), *inputs)
