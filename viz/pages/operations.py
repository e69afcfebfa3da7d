"""Operations (2D): the units of a level coloured by how full they are, now and over the forecast."""

from __future__ import annotations

from typing import Any

import dash
import numpy as np
import pandas as pd
from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update

from ciu.clock import local_label, utc
from ciu.viz.figures import kpis, series_figure, skill_rows
from ciu.viz.ids import Id
from ciu.viz.provider import DataProvider
from ciu.viz.pages.common import (as_matrix, base_map, kpi_cards, level_payload, map_panel, register_playback,
                              rows_table, slider_marks, time_controls, time_label)

PATH = "/"
RENDER_JS = ("function(payload, step) {{ return window.ciu ? window.ciu.render(payload, step, '{map}', '{click}',"
             " {{basemap: true}}) : 'waiting'; }}")


def default_level(data: DataProvider) -> str:
    """The level shown first: districts when there are any, else the one below the top."""
    levels = data.levels
    return "district" if "district" in levels else levels[min(1, len(levels) - 1)]


def layout(data: DataProvider, **_: Any) -> html.Div:
    """The page; ``data`` gives the levels, everything else arrives through callbacks."""
    settings = data.settings
    return html.Div(className="page", children=[
        html.Div(className="toolbar", children=[
            html.Span("level", className="tool-label"),
            dcc.RadioItems(id=Id.OPS_LEVEL, options=data.levels, value=default_level(data), inline=True,
                           className="levels"),
            html.Button("drill down", id=Id.OPS_DRILL, n_clicks=0, className="btn"),
            html.Button("up", id=Id.OPS_UP, n_clicks=0, className="btn"),
            html.Span("", id=Id.OPS_PATH, className="path"),
        ]),
        time_controls(Id.OPS_TIME, Id.OPS_TIME_LABEL, Id.OPS_PLAY, Id.OPS_TICK, play_ms=settings.play_ms),
        html.Div(id=Id.OPS_KPIS, className="kpis"),
        html.Div(className="main", children=[
            map_panel(Id.OPS_MAP, legend=f"100 % of {data.reference_name}"),
            html.Div(className="side", children=[
                html.H3("Alerts"),
                html.Div(id=Id.OPS_ALERTS, className="alerts"),
                html.H3("select a unit on the map", id=Id.OPS_UNIT_TITLE),
                dcc.Graph(id=Id.OPS_UNIT_CHART, config={"displayModeBar": False}, style={"height": "260px"}),
                html.H3("Forecast", id=Id.OPS_SKILL_TITLE),
                html.Div(id=Id.OPS_SKILL, className="skill"),
            ]),
        ]),
        dcc.Store(id=Id.OPS_FRAME), dcc.Store(id=Id.OPS_WITHIN, data=None), dcc.Store(id=Id.OPS_CLICK),
        dcc.Store(id=Id.OPS_SELECTED),
        html.Div("", id=Id.OPS_RENDERED, className="rendered"),
    ])


def _navigate(data: DataProvider, trigger: Any, selected: str | None, within: str | None,
              level: str) -> tuple[Any, Any]:
    units = data.all_units()
    if trigger == Id.OPS_DRILL and selected in units.index:
        below = data.child_level(units.loc[selected, "level"])
        return (below, selected) if below else (no_update, no_update)
    if trigger == Id.OPS_UP and within:
        parent = units.loc[within, "parent_code"]
        top = data.levels[0]
        return units.loc[within, "level"], (parent if isinstance(parent, str) and units.loc[parent, "level"] != top
                                            else None)
    return no_update, no_update


def _span(first: Any, last: Any, tz: str) -> str:
    """An alert episode's steps in local time: ``Sun 18:00 CEST`` or ``Sun 18:00–20:00 CEST``."""
    start = utc(first).tz_convert(tz).strftime("%a %H:%M")
    return local_label(last, tz, start if utc(last) == utc(first) else f"{start}–%H:%M")


def _alert_rows(frame: pd.DataFrame, tz: str = "UTC") -> list[html.Div] | html.Div:
    if frame.empty:
        return html.Div("no open alerts", className="muted")
    rows = []
    for a in frame.itertuples(index=False):
        rows.append(html.Div(className=f"alert {a.severity}", children=[
            html.Div(f"{a.severity} · {_span(a.time, a.until, tz)}", className="alert-head"),
            html.Div(a.message, className="alert-msg"),
            html.Button("acknowledge", id={"type": Id.OPS_ACK, "index": int(a.id)}, n_clicks=0,
                        className="btn small ack"),
        ]))
    return rows


def register(app: Dash, data: DataProvider) -> None:
    """Register the page and its callbacks on ``app``."""
    dash.register_page("ciu.viz.pages.operations", path=PATH, name="Operations", title="CIU Twin · operations",
                       order=0, layout=lambda **kw: layout(data, **kw))

    @app.callback(Output(Id.OPS_LEVEL, "value"), Output(Id.OPS_WITHIN, "data"),
                  Input(Id.OPS_DRILL, "n_clicks"), Input(Id.OPS_UP, "n_clicks"),
                  State(Id.OPS_SELECTED, "data"), State(Id.OPS_WITHIN, "data"), State(Id.OPS_LEVEL, "value"),
                  prevent_initial_call=True)
    def navigate(_d: int, _u: int, selected: str | None, within: str | None, level: str):
        return _navigate(data, ctx.triggered_id, selected, within, level)

    @app.callback(Output(Id.OPS_FRAME, "data"), Output(Id.OPS_TIME, "max"), Output(Id.OPS_TIME, "marks"),
                  Output(Id.OPS_TIME, "value"), Output(Id.OPS_PATH, "children"),
                  Input(Id.OPS_LEVEL, "value"), Input(Id.OPS_WITHIN, "data"), Input(Id.REFRESH, "n_intervals"),
                  State(Id.OPS_TIME, "value"), State(Id.OPS_FRAME, "data"))
    def load_frame(level: str, within: str | None, _n: int, step: int | None, old: dict | None):
        frame = data.level_frame(level, within=within)
        key = f"{level}:{within or 'all'}"
        area = data.all_units().loc[[within]] if within else None
        payload = level_payload(frame, base=base_map(data), key=key, extruded=False, frame_on=area,
                                label=data.settings.variable)
        keep = old is not None and old.get("key") == key and step is not None
        value = min(int(step), len(frame.times) - 1) if keep else frame.n_history - 1
        path = f"{level}s in {within}" if within else f"every {level}"
        return payload, len(frame.times) - 1, slider_marks(payload["times"], frame.n_history, frame.tz), value, path

    @app.callback(Output(Id.OPS_TIME_LABEL, "children"), Input(Id.OPS_TIME, "value"), State(Id.OPS_FRAME, "data"))
    def label(step: int | None, payload: dict | None):
        return time_label(payload["times"], payload["n_history"], step, payload.get("tz", "UTC")) if payload else ""

    @app.callback(Output(Id.OPS_KPIS, "children"), Input(Id.OPS_TIME, "value"), Input(Id.OPS_FRAME, "data"),
                  Input(Id.OPS_ALERTS, "children"))
    def key_figures(step: int | None, payload: dict | None, _alerts: Any):
        if not payload:
            return no_update
        values = as_matrix(payload["values"])
        ref = np.array([d["reference"] or np.nan for d in payload["layer"]["data"]], dtype=float)
        density = values / np.where(ref > 0, ref, np.nan)[:, None]
        i = payload["n_history"] - 1 if step is None else min(int(step), values.shape[1] - 1)
        codes = [d["code"] for d in payload["layer"]["data"]]
        return kpi_cards(kpis(values, density, codes, n_open_alerts=len(data.alerts()), step=i,
                              variable=data.settings.variable, reference=data.reference_name))

    @app.callback(Output(Id.OPS_ALERTS, "children"), Input(Id.REFRESH, "n_intervals"),
                  Input({"type": Id.OPS_ACK, "index": ALL}, "n_clicks"))
    def alerts(_n: int, clicks: list[int | None]):
        trig = ctx.triggered_id
        if isinstance(trig, dict) and ctx.triggered and ctx.triggered[0]["value"]:
            data.acknowledge(int(trig["index"]))
        return _alert_rows(data.alerts(), data.timezone)

    @app.callback(Output(Id.OPS_SKILL_TITLE, "children"), Output(Id.OPS_SKILL, "children"),
                  Input(Id.OPS_LEVEL, "value"), Input(Id.REFRESH, "n_intervals"))
    def skill(level: str, _n: int):
        return f"Forecast · {level} level", rows_table(skill_rows(data.skill(level)), prefix="skill-")

    @app.callback(Output(Id.OPS_SELECTED, "data"), Input(Id.OPS_CLICK, "data"), prevent_initial_call=True)
    def select(click: dict | None):
        return click["code"] if click else no_update

    @app.callback(Output(Id.OPS_UNIT_TITLE, "children"), Output(Id.OPS_UNIT_CHART, "figure"),
                  Input(Id.OPS_SELECTED, "data"), prevent_initial_call=True)
    def unit_panel(code: str | None):
        if not code:
            return no_update, no_update
        unit = data.all_units().loc[code]
        hist, fc = data.unit_series(code)
        title = f"{unit['name'] or code} ({unit['level']})"
        capacity = float(data.capacity().get(code, np.nan)) if data.has_capacity else None
        return title, series_figure(hist, fc, title=code, variable=data.settings.variable, now=data.now(),
                                    capacity=capacity)

    register_playback(app, play=Id.OPS_PLAY, tick=Id.OPS_TICK, time=Id.OPS_TIME)

    app.clientside_callback(RENDER_JS.format(map=Id.OPS_MAP.value, click=Id.OPS_CLICK.value),
                            Output(Id.OPS_RENDERED, "children"), Input(Id.OPS_FRAME, "data"),
                            Input(Id.OPS_TIME, "value"))
