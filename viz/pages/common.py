"""Pieces shared by the pages: the time slider, map payloads of a level, KPI cards."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
from dash import dcc, html

from ciu.clock import local_label, utc
from ciu.viz.layers import base_layers, floor_layer, frame_payload, ramp_css, unit_layer, view_of
from ciu.viz.provider import DataProvider, LevelFrame


def time_label(times: list[str], n_history: int, step: int | None, tz: str = "UTC") -> str:
    """What a step of the time slider shows, in words, in the city's local time."""
    if not times:
        return "no data"
    i = n_history - 1 if step is None else max(0, min(int(step), len(times) - 1))
    when = local_label(times[i], tz)
    if i < n_history:
        ago = n_history - 1 - i
        return f"{when} · observed" + ("" if ago == 0 else f" ({ago} h ago)")
    return f"{when} · forecast +{i - n_history + 1} h"


def slider_marks(times: list[str], n_history: int, tz: str = "UTC") -> dict[int, Any]:
    """Marks at every sixth local hour, and the present."""
    marks: dict[int, Any] = {}
    for i, t in enumerate(times):
        ts = utc(t).tz_convert(tz)
        if ts.hour % 6 == 0:
            marks[i] = f"{ts:%H}h"
    if times:
        marks[n_history - 1] = {"label": "now", "style": {"color": "#d62728", "fontWeight": "bold"}}
    return marks


def time_controls(slider_id: str, label_id: str, play_id: str, tick_id: str, *, play_ms: int) -> html.Div:
    """A time slider with a play button (playback steps through history and forecast)."""
    return html.Div(className="time-controls", children=[
        html.Button("▶ play", id=play_id, n_clicks=0, className="btn"),
        html.Div(dcc.Slider(id=slider_id, min=0, max=1, step=1, value=0, marks={}, updatemode="drag"),
                 className="slider"),
        html.Span("", id=label_id, className="time-label"),
        dcc.Interval(id=tick_id, interval=play_ms, disabled=True),
    ])


def base_map(data: DataProvider) -> list[dict[str, Any]]:
    """The base map of the pages: districts filled, grid cells outlined (the twin's own geometry)."""
    levels = data.levels
    areas = {}
    for name in ("district", "grid"):
        if name in levels:
            areas[name] = data.units(name)
    if not areas:
        areas[levels[-1]] = data.units(levels[-1])
    return base_layers(areas)


def level_payload(frame: LevelFrame, *, base: list[dict[str, Any]], key: str, extruded: bool, label: str,
                  pitch: float = 0.0, bearing: float = 0.0, frame_on: Any = None) -> dict[str, Any]:
    """A map payload of a level frame: flat units, or units extruded (floors floor by floor).

    The view frames ``frame_on`` (units, e.g. the one drilled into) when given, else the frame's units;
    ``label`` names the values (the shown variable).
    """
    layer = floor_layer(frame.units) if extruded else unit_layer(frame.units, reference=frame.reference)
    view = view_of(frame.units if frame_on is None else frame_on, pitch=pitch, bearing=bearing)
    return frame_payload(layer, base=base, times=[t.isoformat() for t in frame.times], n_history=frame.n_history,
                         values=frame.values, density=frame.density, view=view, key=key, label=label, tz=frame.tz)


def kpi_cards(items: list[dict[str, str]]) -> list[html.Div]:
    return [html.Div(className="kpi", children=[html.Div(i["value"], className="kpi-value"),
                                                html.Div(i["label"], className="kpi-label")]) for i in items]


def rows_table(rows: list[tuple[str, str]], *, prefix: str) -> html.Table:
    """Label–text rows as a card table; each text cell's class is ``prefix`` and its label, slugged."""
    return html.Table(className="card-table", children=[
        html.Tr([html.Th(k), html.Td(v, className=prefix + re.sub(r"[^a-z0-9]+", "-", k.lower()).strip("-"))])
        for k, v in rows])


def as_matrix(rows: list[list[float | None]]) -> np.ndarray:
    """``times × units`` lists (None = missing) back to a ``units × times`` float array."""
    return np.array([[np.nan if v is None else v for v in col] for col in rows], dtype=float).T


def register_playback(app: Any, *, play: str, tick: str, time: str) -> None:
    """Play/pause button and the tick that steps the time slider (wrapping at its end)."""
    from dash import Input, Output, State

    @app.callback(Output(tick, "disabled"), Output(play, "children"), Input(play, "n_clicks"),
                  prevent_initial_call=True)
    def toggle(n: int):
        on = bool(n % 2)
        return not on, "❚❚ pause" if on else "▶ play"

    @app.callback(Output(time, "value", allow_duplicate=True), Input(tick, "n_intervals"),
                  State(time, "value"), State(time, "max"), prevent_initial_call=True)
    def step_forward(_n: int, step: int | None, top: int | None):
        return 0 if step is None or top is None or step >= top else step + 1


def map_panel(map_id: str, *, legend: str, tall: bool = False) -> html.Div:
    """The map canvas with its colour legend (0 % → ``legend``)."""

    return html.Div(className="map-wrap", children=[
        html.Div(id=map_id, className="map tall" if tall else "map"),
        html.Div(className="legend", children=[html.Span("0 %"), html.Span(className="ramp",
                 style={"background": ramp_css()}), html.Span(legend)]),
    ])
