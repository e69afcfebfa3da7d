"""The twin as the models' one graph: a :class:`~ciu.models.data.HierSeries`.

>>> from ciu.models.graph import build_graph, to_hetero            # doctest: +SKIP
>>> graph = build_graph(twin, target="people")                 # doctest: +SKIP
>>> graph.values.shape                                         # (T, N_floor, C)  # doctest: +SKIP
>>> graph.levels[0].parent                                     # floor → building  # doctest: +SKIP
>>> to_hetero(graph)["floor", "in", "building"].edge_index     # doctest: +SKIP

One object carries everything a model reads: per level the unit codes, the
parent of every unit in the level above, static features and same-level
adjacency (shared borders between areas, floors one storey apart); the
bottom-level values (NaN where unknown), the regular time index and its step,
the city's time zone, external features (holiday, weather), known-future
covariates and capacities. Every level's series is the sum of the bottom
level (:meth:`~ciu.models.data.HierSeries.sum_up`). :func:`to_hetero` shows the
same graph as a torch-geometric ``HeteroData``, for PyG's own tools.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import torch
from pandas.tseries.frequencies import to_offset
from torch_geometric.data import HeteroData

from ciu.clock import naive_utc
from ciu.errors import ValidationError
from ciu.forecast import announced_people
from ciu.models.data import HierSeries, Level, calendar_features, infer_step

if TYPE_CHECKING:
    from ciu.twin import Twin

#: numeric unit attributes used as static features when present
NUMERIC_ATTRS = ("floor", "capacity", "floors", "height_m", "year_built", "footprint_m2")
#: categorical unit attributes one-hot encoded when present
CATEGORICAL_ATTRS = {"use": ("residential", "office", "retail", "school", "hospital", "leisure"),
                     "land_use": ("residential", "office", "retail", "school", "hospital", "leisure")}
#: external variables looked for at the top level
EXTERNAL_VARIABLES = ("temperature", "rain")


def static_features(units: gpd.GeoDataFrame) -> np.ndarray:
    """Static features of units: log area, z-range, numeric attrs, one-hot categories (standardised)."""
    cols = [np.log1p(units["area_m2"].fillna(0).to_numpy(dtype=float)),
            units["z_min"].fillna(0).to_numpy(dtype=float), units["z_max"].fillna(0).to_numpy(dtype=float)]
    attrs = units["attrs"].apply(lambda a: a if isinstance(a, dict) else {})
    for name in NUMERIC_ATTRS:
        vals = attrs.apply(lambda a, k=name: a.get(k))
        if vals.notna().any():
            cols.append(pd.to_numeric(vals, errors="coerce").fillna(0).to_numpy(dtype=float))
    for name, cats in CATEGORICAL_ATTRS.items():
        vals = attrs.apply(lambda a, k=name: a.get(k))
        if vals.notna().any():
            cols.extend((vals == c).to_numpy(dtype=float) for c in cats)
    x = np.stack(cols, axis=1)
    sd = x.std(axis=0)
    return ((x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)).astype(np.float32)


def adjacency(units: gpd.GeoDataFrame, level: str) -> np.ndarray:
    """Same-level edges (both directions): floors one storey apart, other units sharing a border."""
    n = len(units)
    if n < 2:
        return np.zeros((2, 0), dtype=np.int64)
    storeys = units["attrs"].apply(lambda a: isinstance(a, dict) and "floor" in a).all()
    if storeys:
        parent = units["parent_code"].to_numpy()
        floor_no = units["attrs"].apply(lambda a: int(a.get("floor", 0))).to_numpy()
        frame = pd.DataFrame({"i": np.arange(n), "p": parent, "f": floor_no})
        up = frame.assign(f=frame["f"] + 1).merge(frame, on=["p", "f"], suffixes=("", "_up"))
        src, dst = up["i"].to_numpy(), up["i_up"].to_numpy()
    else:
        geoms = np.asarray(units.geometry.values, dtype=object)
        tree = shapely.STRtree(geoms)
        src, dst = tree.query(geoms, predicate="intersects")
        keep = src != dst
        src, dst = src[keep], dst[keep]
        # a shared border, not a shared point: for areas, the intersection must be a line or an area
        if len(src) and shapely.get_type_id(geoms[0]) in (3, 6):
            inter = shapely.intersection(geoms[src], geoms[dst])
            keep = shapely.length(inter) > 0
            src, dst = src[keep], dst[keep]
    edges = np.unique(np.concatenate([np.stack([src, dst]), np.stack([dst, src])], axis=1), axis=1)
    return edges.astype(np.int64)


def target_levels(twin: Twin, target: str) -> list[str]:
    """The levels a model of ``target`` works on: its lowest observed level and every level above it.

    A count is known where it is observed and wherever it sums up to; below
    that level nothing says how a zone's trips split over its buildings and
    floors, so those levels carry no truth to learn from and are left out.
    For the sample city's ``people`` (counted per floor) these are all levels.

    >>> target_levels(twin, "bike_arrivals")                  # doctest: +SKIP
    ['grid', 'district', 'city']
    """
    twin.variable(target)  # raises UnknownVariable
    levels = twin.levels_from(target)
    if not levels:
        raise ValidationError(f"no observations of {target!r} to build a model from", field="target")
    return levels


def check_levels(twin: Twin, target: str, levels: Sequence[str]) -> list[str]:
    """``levels`` as a list after checking that they fit the twin and ``target``.

    They must be consecutive levels of the twin, bottom to top, and the bottom
    one must not lie below the lowest level where ``target`` is observed.
    """
    levels = list(levels)
    known = list(twin.levels)
    for lv in levels:
        if lv not in known:
            twin.rank(lv)  # raises UnknownLevel
    start = known.index(levels[0]) if levels else 0
    if not levels or levels != known[start:start + len(levels)]:
        raise ValidationError(f"levels must be consecutive levels of the twin, bottom to top ({known}), not {levels}",
                              field="levels")
    lowest = target_levels(twin, target)[0]
    if known.index(levels[0]) < known.index(lowest):
        raise ValidationError(f"{target!r} is observed from level {lowest!r} up: a model cannot start at "
                              f"{levels[0]!r} below it", field="levels")
    return levels


def target_step(twin: Twin, target: str, level: str) -> pd.Timedelta:
    """The fixed step of ``target`` where it is observed (a clear error when its times are irregular)."""
    lowest = target_levels(twin, target)[0]
    times = twin.observation_times(target, level=lowest)
    return infer_step(times.tz_localize(None), what=f"series of {target!r} at level {lowest!r}")


def freq_alias(step: pd.Timedelta) -> str:
    """A pandas frequency string of a fixed step (``h``, ``15min``, ``4h``)."""
    return to_offset(step).freqstr



def build_graph(
    twin: Twin, *, target: str = "people", levels: Sequence[str] | None = None,
    start: datetime | str | None = None, end: datetime | str | None = None,
    covariate: str | None = "event_expected", step: pd.Timedelta | None = None,
) -> HierSeries:
    """The models' graph of a twin for forecasting ``target``.

    Parameters
    ----------
    twin
        Any twin.
    target
        The variable to forecast; observed (or rolled up) at the bottom level and
        summed up the hierarchy.
    levels
        Consecutive levels to use, bottom to top (default: :func:`target_levels`,
        the lowest level where ``target`` is observed and every level above it).
    start, end
        Time range of the series (``end`` excluded).
    covariate
        A known-future per-unit variable (announced event attendance), taken at
        the level where it is observed and spread over the bottom units below each
        unit by the event rule (:func:`ciu.forecast.announced_people`).
    step
        The series' step (default: inferred from the stored times of ``target``).
    """
    levels = check_levels(twin, target, levels) if levels is not None else target_levels(twin, target)
    step = step if step is not None else target_step(twin, target, levels[0])
    freq = freq_alias(step)
    names = {v.name for v in twin.variables()}
    frames = {lv: twin.units(level=lv) for lv in levels}
    bottom = frames[levels[0]]
    cube = twin.cube(level=levels[0], variables=[target], start=start, end=end, freq=freq)
    if cube.sizes["time"] == 0 and (start is None or end is None):
        raise ValidationError(f"no observations of {target!r} to build a graph from", field=target)
    if start is not None and end is not None:
        full = pd.date_range(naive_utc(start), naive_utc(end), freq=step, inclusive="left")
    else:
        times = pd.DatetimeIndex(cube["time"].values)
        full = pd.date_range(times.min(), times.max(), freq=step)
    cube = cube.reindex(time=full)
    values = np.asarray(cube[target].values, dtype=np.float64).T[:, :, None]  # (T, N0, 1)

    nodes = []
    for i, lv in enumerate(levels):
        units = frames[lv]
        parent = None
        if i + 1 < len(levels):
            up = levels[i + 1]
            parent = pd.Index(frames[up].index).get_indexer(units["parent_code"])
            if (parent < 0).any():
                bad = units.index[int(np.flatnonzero(parent < 0)[0])]
                raise ValidationError(f"unit has no parent at level {up!r}", row=bad, field="parent_code")
        nodes.append(Level(lv, list(units.index), parent, static_features(units), adjacency(units, lv)))

    # external features: holiday and weather at the top level (rolled up by their own rules)
    top = levels[-1]
    ext_vars = [v for v in ("holiday", *EXTERNAL_VARIABLES) if v in names]
    ext_cols = []
    ext_names: list[str] = []
    holiday = None
    if ext_vars:
        top_cube = twin.cube(level=top, variables=ext_vars, start=start, end=end, freq=freq).reindex(time=full)
        for v in ext_vars:
            series = pd.Series(top_cube[v].values.mean(axis=0), index=full).ffill().bfill().fillna(0.0)
            if v == "holiday":
                holiday = series.to_numpy()
            else:
                ext_cols.append(series.to_numpy())
                ext_names.append(v)
    hol, hol_names = calendar_features(full, holiday)
    external = np.concatenate([hol, np.stack(ext_cols, axis=1)], axis=1) if ext_cols else hol
    capacity = bottom["attrs"].apply(lambda a: a.get("capacity") if isinstance(a, dict) else None)
    graph = HierSeries(nodes, values, full, [target], external.astype(np.float32), hol_names + ext_names, step=step,
                       timezone=twin.timezone,
                       capacity=pd.to_numeric(capacity, errors="coerce").to_numpy(dtype=np.float64))

    if covariate is not None and covariate in names:
        known = pd.concat([frames[lv][["level", "parent_code"]] for lv in levels])
        cov = announced_people(twin, list(bottom.index), graph.capacity, full, variable=covariate, freq=freq,
                               units=known)
        graph.covariates = cov[:, :, None].astype(np.float32)
    return graph


def to_hetero(series: HierSeries) -> HeteroData:
    """The graph as a torch-geometric ``HeteroData`` (one node type per level), for PyG's own tools.

    Node stores carry ``x`` (static features), ``series`` ``(N, T, C)`` (the
    level's values, :meth:`HierSeries.level_values`) and ``code``; edges are
    ``(child, "in", parent)``, ``(parent, "has", child)`` and ``(level, "near",
    level)``; graph attributes ``time``, ``step``, ``timezone``, ``external``
    with ``external_names`` and ``channels``. The models read the
    :class:`HierSeries` itself; this is a view of it, built on demand.
    """
    data = HeteroData()
    values = series.level_values()
    for i, lv in enumerate(series.levels):
        store = data[lv.name]
        store.code = list(lv.codes)
        store.num_nodes = lv.n
        store.x = torch.tensor(np.asarray(lv.static, dtype=np.float32))
        store.series = torch.tensor(values[i].transpose(1, 0, 2).astype(np.float32))
        data[lv.name, "near", lv.name].edge_index = torch.tensor(np.asarray(lv.neighbours, dtype=np.int64))
        if lv.parent is not None:
            up = series.levels[i + 1].name
            child, parent = torch.arange(lv.n), torch.tensor(np.asarray(lv.parent, dtype=np.int64))
            data[lv.name, "in", up].edge_index = torch.stack([child, parent])
            data[up, "has", lv.name].edge_index = torch.stack([parent, child])
    if series.covariates is not None:
        data[series.levels[0].name].covariates = torch.tensor(series.covariates.transpose(1, 0, 2).astype(np.float32))
    data.time, data.step, data.timezone = series.times, series.step, series.timezone
    data.external = torch.tensor(np.asarray(series.external, dtype=np.float32))
    data.external_names, data.channels = list(series.external_names), list(series.channels)
    return data


def graph_from_arrays(
    *, levels: Sequence[str], codes: Sequence[Sequence[str]], parents: Sequence[np.ndarray], values: np.ndarray,
    times: pd.DatetimeIndex, channels: Sequence[str], external: np.ndarray, external_names: Sequence[str],
    static: Sequence[np.ndarray] | None = None, neighbours: Sequence[np.ndarray] | None = None,
    mask: np.ndarray | None = None, timezone: str | None = None, capacity: np.ndarray | None = None,
    covariates: np.ndarray | None = None,
) -> HierSeries:
    """The models' graph from plain arrays (real benchmark data sets).

    ``values`` is the bottom level ``(T, N0, C)``; ``parents[i]`` maps level ``i``
    to level ``i + 1``.
    """
    nodes = []
    for i, lv in enumerate(levels):
        n = len(codes[i])
        nodes.append(Level(
            lv, list(codes[i]), np.asarray(parents[i], dtype=np.int64) if i + 1 < len(levels) else None,
            np.asarray(static[i], dtype=np.float32) if static is not None else np.zeros((n, 1), dtype=np.float32),
            np.asarray(neighbours[i], dtype=np.int64) if neighbours is not None else np.zeros((2, 0), dtype=np.int64)))
    return HierSeries(nodes, np.asarray(values, dtype=np.float64), pd.DatetimeIndex(times), list(channels),
                      np.asarray(external, dtype=np.float32), list(external_names), covariates,
                      None if mask is None else np.asarray(mask, dtype=bool), timezone=timezone,
                      capacity=None if capacity is None else np.asarray(capacity, dtype=np.float64))
