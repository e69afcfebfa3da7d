"""Observations over time: idempotent bulk loads, reads, and roll-ups up the tree.

The only module that writes the SQL of these tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from ciu import pgcopy
from ciu import rollup as rollup_arrays
from ciu.domain import LoadReport, interval_of
from ciu.errors import ConflictError, DuplicateError, ValidationError
from ciu.rollup import Hierarchy
from ciu.store.base import BUCKET_ORIGIN, PG_EPOCH, PG_EPOCH_NS, StoreBase, _frame, _translate, load_sql, pg_micros


class Observations(StoreBase):
    """Observations over time: idempotent bulk loads, reads, and roll-ups up the tree."""

    def ensure_partitions(self, start: datetime, end: datetime) -> None:
        """Monthly partitions of ``ciu.observation`` covering ``[start, end]``."""
        month = pd.Timestamp(start).tz_convert("UTC").tz_localize(None).to_period("M")
        last = pd.Timestamp(end).tz_convert("UTC").tz_localize(None).to_period("M")
        existing = {
            r[0]
            for r in self.conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'ciu.observation'::regclass"
            )
        }
        while month <= last:
            name = f"observation_{month.year:04d}_{month.month:02d}"
            if name not in existing:
                lo = month.start_time.tz_localize("UTC")
                hi = (month + 1).start_time.tz_localize("UTC")
                self.conn.execute(
                    sql.SQL("CREATE TABLE IF NOT EXISTS ciu.{} PARTITION OF ciu.observation FOR VALUES FROM ({}) TO ({})").format(
                        sql.Identifier(name), sql.Literal(lo.to_pydatetime()), sql.Literal(hi.to_pydatetime())
                    )
                )
            month += 1

    def load_observations(
        self,
        frame: pd.DataFrame,
        *,
        source_id: int | None = None,
        source: str | None = None,
        on_conflict: Literal["error", "keep"] = "error",
    ) -> LoadReport:
        """Load long-format observations (columns ``code, variable, time, value``).

        One transaction. Rows already stored with the same value are skipped
        (re-runs are no-ops); a different value for a stored (unit, variable,
        time) raises :class:`ConflictError` naming it, or with
        ``on_conflict="keep"`` is counted in the report and left as stored.
        """
        for name in ("code", "variable", "time", "value"):
            if name not in frame.columns:
                raise ValidationError(f"missing column {name!r}", source=source, field=name)
        report = LoadReport(source_id=source_id)
        if frame.empty:
            return report
        values = pd.to_numeric(frame["value"], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValidationError(f"value {frame['value'].iloc[i]!r} is not a finite number",
                                  source=source, row=i, field="value")
        times = pd.to_datetime(frame["time"], utc=True, errors="coerce")
        if times.isna().any():
            i = int(np.flatnonzero(times.isna().to_numpy())[0])
            raise ValidationError(f"time {frame['time'].iloc[i]!r} is not a timestamp", source=source, row=i, field="time")
        known = {v.name for v in self.variables()}
        unknown_var = ~frame["variable"].isin(known)
        if unknown_var.any():
            i = int(np.flatnonzero(unknown_var.to_numpy())[0])
            raise ValidationError(f"variable {frame['variable'].iloc[i]!r} is not registered (register it first:"
                                  " ciu variables add NAME --unit … --space … --rollup …; see ciu variables list)",
                                  source=source, row=i, field="variable")
        t_py = times.dt.tz_convert("UTC")
        micros = pg_micros(t_py)
        # resolve codes and variables through their few distinct values, not row by row
        code_pos, code_values = pd.factorize(frame["code"].astype(str))
        code_ids = self.unit_ids(list(code_values))
        ids_of_values = np.array([code_ids.get(c, -1) for c in code_values], dtype=np.int64)
        unit_id = ids_of_values[code_pos]
        if (unit_id < 0).any():
            i = int(np.flatnonzero(unit_id < 0)[0])
            raise ValidationError(f"unit {frame['code'].iloc[i]!r} is not in the twin", source=source,
                                  row=i, field="code")
        var_pos, var_values = pd.factorize(frame["variable"])
        variable_id = np.array([self._variable_id(v) for v in var_values], dtype=np.int16)[var_pos]
        order = np.lexsort((micros, unit_id, variable_id))
        same = ((variable_id[order][1:] == variable_id[order][:-1]) & (unit_id[order][1:] == unit_id[order][:-1])
                & (micros[order][1:] == micros[order][:-1]))
        if same.any():
            i = int(max(order[1:][same][0], order[:-1][same][0]))
            raise DuplicateError(
                f"unit {frame['code'].iloc[i]!r}, variable {frame['variable'].iloc[i]!r} at {times.iloc[i]} is given twice",
                source=source, row=i, field="time",
            )
        columns = [pgcopy.fixed(np.arange(len(frame)), "int4"), pgcopy.fixed(unit_id, "int8"),
                   pgcopy.fixed(variable_id, "int2"), pgcopy.fixed(micros, "timestamptz"),
                   pgcopy.fixed(values, "float8")]
        try:
            with self.transaction():
                self.ensure_partitions(t_py.min().to_pydatetime(), t_py.max().to_pydatetime())
                self.conn.execute(
                    "CREATE TEMP TABLE obs_stage (row int, unit_id bigint, variable_id smallint, time timestamptz,"
                    " value float8) ON COMMIT DROP"
                )
                pgcopy.copy_in(self.conn, "COPY obs_stage FROM STDIN (FORMAT BINARY)", [columns])
                # one load at a time: the anti-join below then sees every stored row
                self.conn.execute("LOCK TABLE ciu.observation IN SHARE ROW EXCLUSIVE MODE")
                self.conn.execute("ANALYZE obs_stage")
                conflict = self.conn.execute(load_sql("observation_conflicts")).fetchall()
                report.conflicts = len(conflict)
                if conflict and on_conflict == "error":
                    r = conflict[0]
                    raise ConflictError(
                        f"unit {r[1]!r}, variable {r[2]!r} at {r[3].isoformat()} is stored as {r[5]!r}; "
                        f"this source says {r[4]!r} ({len(conflict)} conflicting rows)",
                        source=source, row=int(r[0]), field="value",
                    )
                cur = self.conn.execute(load_sql("observation_insert"), {"source_id": source_id})
                report.inserted = cur.rowcount
                report.unchanged = len(frame) - report.inserted - report.conflicts
                self.conn.execute(load_sql("series_extent_refresh"))
                if report.inserted > 10_000:
                    self.conn.execute("ANALYZE ciu.observation")
        except psycopg.Error as exc:
            raise _translate(exc, what="observation") from exc
        return report

    def series_extent(self) -> pd.DataFrame:
        """Per variable and level: how many observations and their time range."""
        rows = self.conn.execute(
            "SELECT v.name AS variable, e.level, e.n, e.tmin, e.tmax FROM ciu.series_extent e"
            " JOIN ciu.variable v ON v.id = e.variable_id ORDER BY v.name, e.level"
        ).fetchall()
        return pd.DataFrame(rows, columns=["variable", "level", "n", "tmin", "tmax"])

    def observed_levels(self, variable: str) -> list[str]:
        """Levels at which a variable has stored observations, bottom first."""
        rows = self.conn.execute(
            "SELECT e.level FROM ciu.series_extent e JOIN ciu.variable v ON v.id = e.variable_id"
            " JOIN ciu.level l ON l.name = e.level WHERE v.name = %s AND e.n > 0 ORDER BY l.rank",
            (variable,),
        ).fetchall()
        return [r[0] for r in rows]

    def _unit_time_filters(
        self, alias: str, *, level: str | None, codes: Sequence[str] | None, start: datetime | None,
        end: datetime | None,
    ) -> tuple[list[sql.Composable], dict[str, Any]]:
        """WHERE terms on the unit ``u`` (level, codes) and on ``alias.time`` (start, end)."""
        where: list[sql.Composable] = []
        params: dict[str, Any] = {}
        if level is not None:
            self.rank(level)
            where.append(sql.SQL("u.level = %(level)s"))
            params["level"] = level
        if codes is not None:
            where.append(sql.SQL("u.code = ANY(%(codes)s)"))
            params["codes"] = list(codes)
        if start is not None:
            where.append(sql.SQL("{}.time >= %(start)s").format(sql.Identifier(alias)))
            params["start"] = start
        if end is not None:
            where.append(sql.SQL("{}.time < %(end)s").format(sql.Identifier(alias)))
            params["end"] = end
        return where, params

    def observations(
        self,
        variable: str,
        *,
        level: str | None = None,
        codes: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        """Stored observations of one variable as a frame ``code, time, value``."""
        where, params = self._unit_time_filters("o", level=level, codes=codes, start=start, end=end)
        where.append(sql.SQL("o.variable_id = %(vid)s"))
        params["vid"] = self._variable_id(variable)
        query = sql.SQL(
            "SELECT u.code, o.time, o.value FROM ciu.observation o JOIN ciu.unit u ON u.id = o.unit_id"
            " WHERE {} ORDER BY u.code, o.time"
        ).format(sql.SQL(" AND ").join(where))
        return _frame(self.conn, query, params, ["code", "time", "value"])

    def observation_times(self, variable: str, *, level: str, start: datetime | None = None,
                          end: datetime | None = None) -> pd.DatetimeIndex:
        """The distinct times (UTC) at which ``variable`` is observed at ``level``, sorted."""
        where, params = self._unit_time_filters("o", level=level, codes=None, start=start, end=end)
        where.append(sql.SQL("o.variable_id = %(vid)s"))
        params["vid"] = self._variable_id(variable)
        query = sql.SQL(
            "SELECT DISTINCT o.time FROM ciu.observation o JOIN ciu.unit u ON u.id = o.unit_id WHERE {} ORDER BY 1"
        ).format(sql.SQL(" AND ").join(where))
        rows = self.conn.execute(query, params).fetchall()
        return pd.DatetimeIndex([r[0] for r in rows]).tz_convert("UTC") if rows else pd.DatetimeIndex([], tz="UTC")

    def hierarchy(self) -> Hierarchy:
        """The whole unit tree as arrays (ids, parents, level ranks, areas, codes)."""
        rows = self.conn.execute(
            "SELECT u.id, coalesce(u.parent_id, -1), l.rank, u.area_m2, u.code"
            " FROM ciu.unit u JOIN ciu.level l ON l.name = u.level ORDER BY u.id"
        ).fetchall()
        if not rows:
            empty = np.array([], dtype=np.int64)
            return Hierarchy(empty, empty, empty, np.array([], dtype=float), np.array([], dtype=object))
        ids, parents, ranks, areas, codes = zip(*rows)
        return Hierarchy(np.asarray(ids, dtype=np.int64), np.asarray(parents, dtype=np.int64),
                         np.asarray(ranks, dtype=np.int64), np.asarray(areas, dtype=float),
                         np.asarray(codes, dtype=object))

    def series_arrays(
        self, variable: str, *, level: str, start: datetime | None = None, end: datetime | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stored observations of a variable at one level as arrays ``(unit id, time µs, value)``.

        Read with a binary ``COPY ... TO STDOUT`` and decoded with numpy in one pass.
        Times are microseconds since 2000-01-01 UTC (PostgreSQL's epoch).
        """
        query = sql.SQL(
            "COPY (SELECT o.unit_id, o.time, o.value FROM ciu.observation o JOIN ciu.unit u ON u.id = o.unit_id"
            " WHERE o.variable_id = {vid} AND u.level = {level}{start}{end}) TO STDOUT (FORMAT BINARY)"
        ).format(
            vid=sql.Literal(self._variable_id(variable)), level=sql.Literal(level),
            start=sql.SQL(" AND o.time >= {}").format(sql.Literal(start)) if start is not None else sql.SQL(""),
            end=sql.SQL(" AND o.time < {}").format(sql.Literal(end)) if end is not None else sql.SQL(""),
        )
        buf = bytearray()
        with self.conn.cursor() as cur:
            with cur.copy(query) as copy:
                for chunk in copy:
                    buf += chunk
        rec = np.dtype([("n", ">i2"), ("l0", ">i4"), ("unit", ">i8"), ("l1", ">i4"), ("time", ">i8"),
                        ("l2", ">i4"), ("value", ">f8")])
        body = bytes(buf[19:len(buf) - 2])
        arr = np.frombuffer(body, dtype=rec)
        return (arr["unit"].astype(np.int64), arr["time"].astype(np.int64), arr["value"].astype(np.float64))

    def values_at(self, variable: str, *, level: str, time: datetime,
                  tree: Hierarchy | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Unit ids and values of ``variable`` at exactly ``time`` for every unit of ``level`` that has one.

        :meth:`rollup` over the one instant (a bucket holds a single value per unit there).
        """
        tree = tree or self.hierarchy()
        frame = self.rollup(variable, level=level, start=time, end=pd.Timestamp(time) + pd.Timedelta(microseconds=1),
                            tree=tree)
        ids = tree.id[pd.Index(tree.code).get_indexer(frame["code"])]
        return ids, frame["value"].to_numpy(dtype=float)

    def rollup(
        self,
        variable: str,
        *,
        level: str,
        start: datetime | None = None,
        end: datetime | None = None,
        freq: str = "h",
        codes: Sequence[str] | None = None,
        tree: Hierarchy | None = None,
    ) -> pd.DataFrame:
        """Values of ``variable`` for every unit of ``level`` as ``code, time, value``.

        Observations are bucketed to ``freq`` by the variable's ``resample``
        rule at the lowest level where they are stored (at or below ``level``),
        then combined level by level up to ``level`` by its ``rollup`` rule.
        Below the lowest observed level (external features such as weather
        attached to the city) every unit takes the value of its nearest
        observed ancestor.
        """
        var = self.variable(variable)
        target = self.rank(level)
        observed = self.observed_levels(variable)
        empty = pd.DataFrame({"code": pd.Series(dtype=object), "time": pd.Series(dtype="datetime64[ns, UTC]"),
                              "value": pd.Series(dtype=float)})
        if not observed:
            return empty
        step_us = int(interval_of(freq) / pd.Timedelta(microseconds=1))
        origin_us = int((BUCKET_ORIGIN - PG_EPOCH) / pd.Timedelta(microseconds=1))
        below = [lv for lv in observed if self.rank(lv) <= target]
        base = below[0] if below else [lv for lv in observed if self.rank(lv) > target][0]
        tree = tree or self.hierarchy()
        unit, t, v = self.series_arrays(variable, level=base, start=start, end=end)
        unit, t, v = rollup_arrays.resample(unit, t, v, step_us=step_us, origin_us=origin_us, how=var.resample)
        if below:
            for _ in range(self.rank(base), target):
                unit, t, v = rollup_arrays.step_up(tree, unit, t, v, rule=var.rollup)
        else:
            unit, t, v = rollup_arrays.inherit_down(tree, unit, t, v, source_rank=self.rank(base), target_rank=target)
        frame = pd.DataFrame({
            "code": tree.code_of(unit) if len(unit) else np.array([], dtype=object),
            "time": pd.to_datetime(t.astype("int64") * 1000 + PG_EPOCH_NS, utc=True).as_unit("us"),
            "value": v.astype(float),
        })
        if codes is not None:
            frame = frame[frame["code"].isin(list(codes))]
        return frame.sort_values(["code", "time"], kind="stable").reset_index(drop=True)
