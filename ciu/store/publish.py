"""What the API publishes, read fast: level counts, pages of units, forecasts as JSON, model runs, vector tiles.

Long queries live in ``ciu/sql/api_*.sql``.

The only module that writes the SQL of these tables.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.rows import dict_row

from ciu.errors import NotFound, UnknownLevel
from ciu.store.base import load_sql, subtree_pattern
from ciu.store.catalog import Catalog
from ciu.store.observations import Observations


#: roll-up rules for which a parent's value from all its base descendants at once equals the value
#: combined level by level (the rule of ciu.rollup), so one SQL step may compute it
ONE_STEP_EXACT = ("sum", "max", "min")


class ArrayLiteral(str):
    """A PostgreSQL array in its text form, sent as it is (the query casts it).

    Per-level values reused by many tile requests travel this way: no
    element-by-element adaptation on every request.
    """


class _ArrayLiteralDumper(Dumper):
    oid = 0  # unknown: the server takes the type from the cast in the query

    def dump(self, obj: str) -> bytes:
        return obj.encode()


psycopg.adapters.register_dumper(ArrayLiteral, _ArrayLiteralDumper)


@functools.cache
def _query(name: str, **fragments: str) -> bytes:
    """The shipped query ``name`` with fixed SQL fragments (constants of this module) filled in.

    Composed once per process: the hot reads send the same bytes every time.
    """
    parts = {k: sql.SQL(v) for k, v in fragments.items()}  # type: ignore[arg-type]
    return sql.SQL(load_sql(name)).format(**parts).as_bytes(None)  # type: ignore[arg-type]

#: tile attributes: the public ones, or merged with the restricted ones the caller may read
TILE_ATTRS_PUBLIC = "u.attrs"

TILE_ATTRS_RESTRICTED = (
    "u.attrs || coalesce((SELECT jsonb_object_agg(r.key, r.value) FROM jsonb_each(u.restricted) r"
    " WHERE '*' = ANY(%(allowed)s::text[]) OR r.key = ANY(%(allowed)s::text[])), '{}'::jsonb)")

#: the base-level units of a unit: itself, or those below it (codes between 'code/' and 'code0',
#: '0' following '/': a range the code index, text_pattern_ops, serves)
TILE_SAME_UNIT = "d.id = t.id"

TILE_SUBTREE = "d.code ~>=~ (t.code || '/') AND d.code ~<~ (t.code || '0')"

#: model runs: the fixed filters and the columns of one run in full (see api_model_runs.sql)
RUN_OF_KINDS = "r.kind = ANY(%(kinds)s::text[])"

RUN_OF_TARGET = "coalesce(r.params->>'target', 'people') = %(target)s"

RUN_BY_ID = "r.id = %(run)s"

RUN_IN_FULL = ", r.params, r.data_hash, r.code_version, r.metrics"


class Publish(Catalog, Observations):
    """What the API publishes, read fast: level counts, pages of units, forecasts as JSON, model runs, vector tiles."""

    def ping(self) -> None:
        self.conn.execute("SELECT 1")

    def level_counts(self) -> list[dict[str, Any]]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                "SELECT l.name, l.rank, count(u.id)::bigint AS units FROM ciu.level l"
                " LEFT JOIN ciu.unit u ON u.level = l.name GROUP BY l.name, l.rank ORDER BY l.rank").fetchall()

    def level_extents(self) -> dict[str, tuple[float, float, float, float] | None]:
        """Bounding box (min lon, min lat, max lon, max lat) of each level's units."""
        rows = self.conn.execute(
            "SELECT l.name, ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM ciu.level l"
            " LEFT JOIN (SELECT level, ST_Extent(geom) AS e FROM ciu.unit GROUP BY level) x ON x.level = l.name"
            " ORDER BY l.rank").fetchall()
        return {r[0]: (None if r[1] is None else (r[1], r[2], r[3], r[4])) for r in rows}

    def count_units(self, *, level: str | None = None, bbox: tuple[float, float, float, float] | None = None,
                    within: str | None = None, codes: Sequence[str] | None = None) -> int:
        """How many units match the filters of :meth:`ciu.store.Store.unit_rows`."""
        x0, y0, x1, y1 = bbox if bbox is not None else (None, None, None, None)
        row = self.conn.execute(
            "SELECT count(*) FROM ciu.unit u"
            " WHERE (%(level)s::text IS NULL OR u.level = %(level)s)"
            " AND (%(x0)s::float8 IS NULL OR u.geom && ST_MakeEnvelope(%(x0)s, %(y0)s, %(x1)s, %(y1)s, 4326))"
            " AND (%(within)s::text IS NULL OR u.code = %(within)s OR u.code LIKE %(within_like)s)"
            " AND (%(codes)s::text[] IS NULL OR u.code = ANY(%(codes)s::text[]))",
            {"level": level, "x0": x0, "y0": y0, "x1": x1, "y1": y1, "within": within,
             "within_like": subtree_pattern(within) if within is not None else None,
             "codes": list(codes) if codes is not None else None},
        ).fetchone()
        return int(row[0])  # type: ignore[index]

    def predictions_json(
        self, *, variable: str | None = None, codes: Sequence[str] | None = None, level: str | None = None,
        run_id: int | None = None, horizon: int | None = None, issued_at: datetime | None = None,
        scenario: str = "baseline", limit: int = 1000, offset: int = 0, exact: bool = True, k: float = 0.0,
        epsilon: float | None = None,
    ) -> tuple[str, int]:
        """Stored forecasts as a JSON array text and its length (same choice of run as ``Store.predictions``)."""
        filters = ["TRUE"]
        if variable is not None:
            filters.append("v.name = %(variable)s")
        if codes is not None:
            filters.append("u.code = ANY(%(codes)s::text[])")
        if level is not None:
            filters.append("u.level = %(level)s")
        if horizon is not None:
            filters.append("p.horizon = %(horizon)s")
        row = self.conn.execute(_query("api_predictions", filters=" AND ".join(filters)), {
            "variable": variable, "codes": list(codes) if codes is not None else None, "level": level,
            "run": run_id, "horizon": horizon, "issued": issued_at, "scenario": scenario, "limit": int(limit),
            "offset": int(offset), "exact": exact, "k": float(k), "epsilon": epsilon,
        }).fetchone()
        return row[0], int(row[1])  # type: ignore[index]

    def model_runs(self, *, kinds: Sequence[str], target: str | None = None, limit: int = 100
                   ) -> list[dict[str, Any]]:
        """Model runs of ``kinds`` (of the variable ``target`` when given), newest first, with headline skill.

        Each row: ``id, name, kind, status, created_at, target, step, levels,
        horizons, champion`` and ``skill``, one entry per level (bottom first)
        with the champion's test RMSE over every horizon, seasonal naive's, the
        gain over it in per cent and the p10..p90 coverage. Runs recorded
        before targets were stored forecast ``people``.
        """
        filters = [RUN_OF_KINDS] + ([RUN_OF_TARGET] if target is not None else [])
        with self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(_query("api_model_runs", filters=" AND ".join(filters), columns=""),
                               {"kinds": list(kinds), "target": target, "limit": int(limit)}).fetchall()

    def model_run(self, run_id: int) -> dict[str, Any]:
        """One model run of any kind: the row of :meth:`model_runs` with ``params, data_hash, code_version, metrics``.

        Raises :class:`NotFound` when there is no run ``run_id``.
        """
        with self.conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(_query("api_model_runs", filters=RUN_BY_ID, columns=RUN_IN_FULL),
                              {"run": run_id, "limit": 1}).fetchone()
        if row is None:
            raise NotFound(f"no model run with id {run_id}")
        return row

    def latest_issue(self, *, scenario: str = "baseline", variable_id: int | None = None
                     ) -> tuple[int, datetime] | None:
        """The newest run with stored forecasts (of the variable ``variable_id`` when given) and its latest issue time."""
        row = self.conn.execute("SELECT run_id, issued_at FROM ciu.newest_issue(%s, %s::smallint)",
                                (scenario, variable_id)).fetchone()
        return (int(row[0]), row[1]) if row and row[1] is not None else None

    def tile_context(self, *, level: str, variable: str) -> dict[str, Any]:
        """What a tile of ``level`` showing ``variable`` needs besides its address (cacheable for seconds)."""
        if level not in self.levels():
            raise UnknownLevel(f"unknown level {level!r}; the twin's levels are {list(self.levels())}")
        var = self.variable(variable)
        observed = self.observed_levels(variable)
        base_levels = [lv for lv in observed if self.rank(lv) <= self.rank(level)]
        base = base_levels[0] if base_levels else None
        latest_time = None
        if base is not None:
            row = self.conn.execute(
                "SELECT e.tmax FROM ciu.series_extent e JOIN ciu.variable v ON v.id = e.variable_id"
                " WHERE v.name = %s AND e.level = %s", (variable, base)).fetchone()
            latest_time = row[0] if row else None
        vid = self.conn.execute("SELECT id FROM ciu.variable WHERE name = %s", (variable,)).fetchone()
        latest = self.latest_issue(variable_id=vid[0] if vid else None)  # type: ignore[index]
        run, issued = latest if latest else (None, None)
        return {"level": level, "variable": variable, "rule": var.rollup, "counted": var.is_count,
                "base": base, "vid": vid[0] if vid else None,  # type: ignore[index]
                "latest_time": latest_time, "run": run, "issued": issued}

    def current_values(self, context: dict[str, Any], *, time: datetime | None) -> tuple[ArrayLiteral, ArrayLiteral]:
        """The variable at ``time`` (default: its latest observation) for every unit of the context's level.

        Returns unit ids and values as array literals for :meth:`tile` (units
        with no observation are left out).
        """
        if context["base"] is None:
            return ArrayLiteral("{}"), ArrayLiteral("{}")
        at = time or context["latest_time"]
        if context["rule"] not in ONE_STEP_EXACT and context["base"] != context["level"] and at is not None:
            # a mean of means is not the mean of all the leaves: level by level, as every roll-up
            ids, values = self.values_at(context["variable"], level=context["level"], time=at)
            return (ArrayLiteral("{" + ",".join(str(int(i)) for i in ids) + "}"),
                    ArrayLiteral("{" + ",".join(repr(float(v)) for v in values) + "}"))
        subtree = TILE_SAME_UNIT if context["base"] == context["level"] else TILE_SUBTREE
        row = self.conn.execute(_query("api_current", subtree=subtree), {
            "rule": context["rule"], "base": context["base"], "vid": context["vid"],
            "t": at, "level": context["level"]}).fetchone()
        return ArrayLiteral(row[0]), ArrayLiteral(row[1])  # type: ignore[index]

    def forecast_values(self, context: dict[str, Any], *, horizon: int) -> tuple[ArrayLiteral, ...]:
        """The newest stored forecast at ``horizon`` for every unit of the context's level.

        Returns unit ids, values and risks as array literals for :meth:`tile`
        (units without a forecast are left out).
        """
        if context["run"] is None or context["vid"] is None:
            return ArrayLiteral("{}"), ArrayLiteral("{}"), ArrayLiteral("{}")
        row = self.conn.execute(load_sql("api_forecast"), {
            "run": context["run"], "issued": context["issued"], "vid": context["vid"], "horizon": horizon,
            "level": context["level"]}).fetchone()
        return tuple(ArrayLiteral(v) for v in row)  # type: ignore[union-attr]

    def tile(
        self, context: dict[str, Any], *, z: int, x: int, y: int,
        current: tuple[ArrayLiteral, ArrayLiteral], forecast: tuple[ArrayLiteral, ...],
        allowed: Sequence[str], exact: bool, k: float, epsilon: float | None,
    ) -> bytes:
        """A Mapbox vector tile (``ST_AsMVT``) of the units of a level in tile ``z/x/y``.

        Every feature carries the unit's public attributes, the restricted ones
        named in ``allowed``, ``current`` (from :meth:`current_values`) and
        ``forecast``/``forecast_risk`` (from :meth:`forecast_values`); counts
        (:attr:`ciu.domain.Variable.is_count`) are protected for the caller.
        ``context`` comes from :meth:`tile_context`.
        """
        attrs = TILE_ATTRS_RESTRICTED if allowed else TILE_ATTRS_PUBLIC
        row = self.conn.execute(_query("api_tile", attrs=attrs), {
            "z": z, "x": x, "y": y, "level": context["level"], "allowed": list(allowed),
            "cur_ids": current[0], "cur_vals": current[1],
            "fc_ids": forecast[0], "fc_vals": forecast[1], "fc_risks": forecast[2],
            "exact": exact, "k": float(k), "epsilon": epsilon, "layer": context["level"], "counted": context["counted"],
        }).fetchone()
        return bytes(row[0]) if row and row[0] is not None else b""  # type: ignore[index]
