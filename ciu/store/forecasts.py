"""Forecasts: model runs, stored predictions and alerts.

The only module that writes the SQL of these tables.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from psycopg import sql

from ciu import pgcopy
from ciu.errors import NotFound, ValidationError
from ciu.skill import FORECAST_KINDS
from ciu.store.base import PREDICTION_COLUMNS, QUANTILE_COLUMNS, StoreBase, _frame, _json_default, pg_micros


#: the states of an alert episode, and ``live`` (any but resolved) as a filter
ALERT_STATES = ("open", "acknowledged", "resolved", "live")
#: the columns of :meth:`Forecasts.alerts`
ALERT_FIELDS = ["id", "run_id", "code", "level", "kind", "severity", "time", "until", "issued_at", "risk", "threshold",
                "message", "state", "acknowledged_at", "acknowledged_by", "resolved_at", "resolved_by"]


def _runs(group: pd.DataFrame, step: pd.Timedelta) -> list[pd.DataFrame]:
    """A unit's alerted steps (sorted by time) cut into runs of consecutive steps."""
    gap = group["time"].diff() > step
    return [g for _, g in group.groupby(gap.cumsum(), sort=True)]


class Forecasts(StoreBase):
    """Forecasts: model runs, stored predictions and alerts."""

    def add_model_run(
        self, *, name: str, kind: str = "tower", params: dict[str, Any] | None = None, data_hash: str | None = None,
        code_version: str | None = None, metrics: dict[str, Any] | None = None, checkpoint: str | None = None,
        status: str = "trained",
    ) -> int:
        """Record a model run (hyper-parameters, data hash, metrics, code version); returns its id."""
        row = self.conn.execute(
            "INSERT INTO ciu.model_run (name, kind, params, data_hash, code_version, metrics, checkpoint, status)"
            " VALUES (%s, %s, %s::jsonb, %s, %s, %s::jsonb, %s, %s) RETURNING id",
            (name, kind, json.dumps(params or {}, default=_json_default), data_hash, code_version,
             json.dumps(metrics or {}, default=_json_default), checkpoint, status),
        ).fetchone()
        return int(row[0])  # type: ignore[index]

    def update_model_run(self, run_id: int, *, metrics: dict[str, Any] | None = None, checkpoint: str | None = None,
                         status: str | None = None, name: str | None = None) -> None:
        self.conn.execute(
            "UPDATE ciu.model_run SET metrics = coalesce(%s::jsonb, metrics), checkpoint = coalesce(%s, checkpoint),"
            " status = coalesce(%s, status), name = coalesce(%s, name) WHERE id = %s",
            (json.dumps(metrics, default=_json_default) if metrics is not None else None, checkpoint, status, name,
             run_id),
        )

    def newest_run(self, *, target: str | None = None, kinds: Sequence[str] = FORECAST_KINDS) -> dict[str, Any] | None:
        """The newest trained model run of one of ``kinds`` with a checkpoint, of ``target`` when given.

        The one rule for "the newest run" (``id, kind, target, checkpoint``);
        runs recorded before targets were stored forecast ``people``.
        """
        row = self.conn.execute(
            "SELECT id, kind, coalesce(nullif(params->>'target', ''), 'people'), checkpoint FROM ciu.model_run"
            " WHERE kind = ANY(%(kinds)s) AND status = 'trained' AND checkpoint IS NOT NULL"
            " AND (%(target)s::text IS NULL OR coalesce(nullif(params->>'target', ''), 'people') = %(target)s)"
            " ORDER BY id DESC LIMIT 1", {"kinds": list(kinds), "target": target}).fetchone()
        return None if row is None else dict(zip(("id", "kind", "target", "checkpoint"), row))

    def newest_target(self) -> str | None:
        """The target variable of the newest trained model run (:meth:`newest_run`), if any."""
        run = self.newest_run()
        return None if run is None else str(run["target"])

    def model_runs(self, *, ids: Sequence[int] | None = None) -> pd.DataFrame:
        """Model runs in id order (only ``ids`` when given): what was trained, on what, how well, where it is kept."""
        rows = self.conn.execute(
            "SELECT id, name, kind, created_at, status, params, data_hash, code_version, metrics, checkpoint"
            " FROM ciu.model_run WHERE %(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s) ORDER BY id",
            {"ids": None if ids is None else [int(i) for i in ids]}).fetchall()
        return pd.DataFrame(rows, columns=["id", "name", "kind", "created_at", "status", "params", "data_hash",
                                           "code_version", "metrics", "checkpoint"])

    def write_predictions(self, frame: pd.DataFrame, *, run_id: int, scenario: str = "baseline") -> int:
        """Store forecasts (columns ``code, variable, issued_at, horizon, time, value`` and optional ``risk``).

        One transaction; a forecast already stored for the same run, scenario,
        unit, variable, issue time and horizon is replaced.
        """
        need = ["code", "variable", "issued_at", "horizon", "time", "value"]
        missing = [c for c in need if c not in frame.columns]
        if missing:
            raise ValidationError(f"missing columns {missing}", field=missing[0])
        if frame.empty:
            return 0
        values = frame["value"].to_numpy(dtype=float)
        if not np.isfinite(values).all():
            i = int(np.flatnonzero(~np.isfinite(values))[0])
            raise ValidationError("forecast value is not finite", row=i, field="value")
        risk = frame["risk"].to_numpy(dtype=float) if "risk" in frame.columns else np.full(len(frame), np.nan)
        quantiles = {q: frame[q].to_numpy(dtype=float) if q in frame.columns else np.full(len(frame), np.nan)
                     for q in QUANTILE_COLUMNS}
        ids = self.unit_ids(pd.unique(frame["code"].astype(str)))
        unit_id = frame["code"].astype(str).map(ids)
        if unit_id.isna().any():
            i = int(np.flatnonzero(unit_id.isna().to_numpy())[0])
            raise ValidationError(f"unit {frame['code'].iloc[i]!r} is not in the twin", row=i, field="code")
        var_ids = {v: self._variable_id(v) for v in pd.unique(frame["variable"])}
        columns = [
            pgcopy.fixed(unit_id.to_numpy(dtype=np.int64), "int8"),
            pgcopy.fixed(frame["variable"].map(var_ids).to_numpy(dtype=np.int16), "int2"),
            pgcopy.fixed(pg_micros(frame["issued_at"]), "timestamptz"),
            pgcopy.fixed(frame["horizon"].to_numpy(dtype=np.int32), "int4"),
            pgcopy.fixed(pg_micros(frame["time"]), "timestamptz"),
            pgcopy.fixed(values, "float8"),
            pgcopy.fixed(risk, "float8", null=np.isnan(risk)),
            *(pgcopy.fixed(q, "float8", null=np.isnan(q)) for q in quantiles.values()),
        ]
        with self.transaction():
            self.conn.execute(
                "CREATE TEMP TABLE pred_stage (unit_id bigint, variable_id smallint, issued_at timestamptz,"
                " horizon int, time timestamptz, value float8, risk float8, q10 float8, q50 float8, q90 float8)"
                " ON COMMIT DROP")
            pgcopy.copy_in(self.conn, "COPY pred_stage FROM STDIN (FORMAT BINARY)", [columns])
            cur = self.conn.execute(
                "INSERT INTO ciu.prediction (run_id, scenario, unit_id, variable_id, issued_at, horizon, time, value,"
                " risk, q10, q50, q90)"
                " SELECT %(run)s, %(scenario)s, unit_id, variable_id, issued_at, horizon, time, value, risk, q10, q50,"
                " q90 FROM pred_stage"
                " ON CONFLICT (run_id, scenario, variable_id, unit_id, issued_at, horizon)"
                " DO UPDATE SET value = excluded.value, risk = excluded.risk, time = excluded.time,"
                " q10 = excluded.q10, q50 = excluded.q50, q90 = excluded.q90",
                {"run": run_id, "scenario": scenario},
            )
        return cur.rowcount

    def predictions(
        self, *, variable: str | None = None, codes: Sequence[str] | None = None, level: str | None = None,
        run_id: int | None = None, horizon: int | None = None, issued_at: datetime | None = None,
        start: datetime | None = None, end: datetime | None = None, scenario: str = "baseline",
        limit: int | None = None, offset: int = 0,
    ) -> pd.DataFrame:
        """Stored forecasts as ``run_id, code, level, variable, issued_at, horizon, time, value, risk, q10, q50, q90``.

        Without ``run_id`` the newest run with forecasts (of ``variable`` when
        given) is used; without ``issued_at`` its latest issue time (both by the
        one rule, the SQL function ``ciu.newest_issue``).
        """
        vid = self._variable_id(variable) if variable is not None else None
        newest = self.conn.execute("SELECT run_id, issued_at FROM ciu.newest_issue(%s, %s::smallint, %s::bigint)",
                                   (scenario, vid, run_id)).fetchone()
        if newest is None or (issued_at is None and newest[1] is None):
            return pd.DataFrame(columns=PREDICTION_COLUMNS)
        where = [sql.SQL("p.run_id = %(run)s"), sql.SQL("p.scenario = %(scenario)s"),
                 sql.SQL("p.issued_at = %(issued)s")]
        params: dict[str, Any] = {"run": newest[0], "scenario": scenario, "offset": int(offset),
                                  "issued": newest[1] if issued_at is None else issued_at}
        if variable is not None:
            where.append(sql.SQL("p.variable_id = %(vid)s"))
            params["vid"] = self._variable_id(variable)
        if horizon is not None:
            where.append(sql.SQL("p.horizon = %(h)s"))
            params["h"] = int(horizon)
        more, more_params = self._unit_time_filters("p", level=level, codes=codes, start=start, end=end)
        where += more
        params.update(more_params)
        query = sql.SQL(
            "SELECT p.run_id, u.code, u.level, v.name, p.issued_at, p.horizon, p.time, p.value, p.risk, p.q10, p.q50,"
            " p.q90 FROM ciu.prediction p JOIN ciu.unit u ON u.id = p.unit_id JOIN ciu.variable v ON v.id = p.variable_id"
            " WHERE {} ORDER BY u.code, v.name, p.horizon {} OFFSET %(offset)s"
        ).format(sql.SQL(" AND ").join(where), sql.SQL("LIMIT %(limit)s") if limit is not None else sql.SQL(""))
        if limit is not None:
            params["limit"] = int(limit)
        frame = _frame(self.conn, query, params, PREDICTION_COLUMNS)
        frame["issued_at"] = pd.to_datetime(frame["issued_at"], utc=True)
        return frame

    def write_alerts(self, frame: pd.DataFrame, *, run_id: int | None, step: pd.Timedelta | None = None,
                     covering: Sequence[str] | None = None) -> int:
        """Raise alerts (columns ``code, kind, severity, time, risk, threshold, message``) as episodes.

        An episode is one unit's run of alerted steps of one kind (``time`` ..
        ``until``). An alerted step within one ``step`` (default: the smallest
        gap between the frame's times, else an hour) of a live (not resolved)
        episode of its unit and kind extends it (span, highest risk and
        severity); else it opens a new one. ``covering`` (the units a forecast
        covered) resolves their live episodes that this frame no longer raises.
        Every change is written to the history. Returns how many episodes were
        opened or extended.
        """
        codes = pd.unique(frame["code"].astype(str)) if len(frame) else []
        ids = self.unit_ids(codes) if len(codes) else {}
        missing = [c for c in codes if c not in ids]
        if missing:
            raise ValidationError(f"unit {missing[0]!r} is not in the twin", row=missing[0], field="code")
        covered = set(self.unit_ids(list(covering)).values()) if covering is not None else set()
        if step is None:
            gaps = np.diff(np.unique(pd.to_datetime(frame["time"], utc=True).to_numpy())) if len(frame) else []
            step = pd.Timedelta(gaps.min()) if len(gaps) else pd.Timedelta(hours=1)
        touched: set[int] = set()
        with self.transaction():
            units = sorted({*ids.values(), *covered})
            live = pd.DataFrame(self.conn.execute(
                "SELECT id, unit_id, kind, time, until, risk FROM ciu.alert WHERE state <> 'resolved'"
                " AND unit_id = ANY(%s) ORDER BY id FOR UPDATE", (units,)).fetchall(),
                columns=["id", "unit_id", "kind", "time", "until", "risk"])
            if len(frame):
                rows = frame.assign(unit_id=frame["code"].astype(str).map(ids),
                                    time=pd.to_datetime(frame["time"], utc=True))
                for (unit, kind), group in rows.sort_values("time").groupby(["unit_id", "kind"], sort=False):
                    for run in _runs(group, step):
                        touched.add(self._merge_episode(live, int(unit), str(kind), run, run_id, step))
            for r in live.itertuples(index=False):
                if int(r.id) not in touched and int(r.unit_id) in covered:
                    self.conn.execute(
                        "UPDATE ciu.alert SET state = 'resolved', resolved_at = now(), resolved_by = 'forecast'"
                        " WHERE id = %s", (int(r.id),))
                    self._history(int(r.id), "resolved", None, "the newest forecast no longer raises it")
        return len(touched)

    def _merge_episode(self, live: pd.DataFrame, unit: int, kind: str, run: pd.DataFrame, run_id: int | None,
                       step: pd.Timedelta) -> int:
        """Extend the live episode that ``run`` (consecutive alerted steps) meets, or open one; returns its id."""
        first, last = run["time"].min(), run["time"].max()
        top = run.loc[run["risk"].astype(float).idxmax()]
        severity = "critical" if (run["severity"] == "critical").any() else str(top["severity"])
        mine = live[(live["unit_id"] == unit) & (live["kind"] == kind)]
        meets = mine[(pd.to_datetime(mine["time"], utc=True) - step <= last)
                     & (pd.to_datetime(mine["until"], utc=True) + step >= first)]
        if len(meets):
            alert_id = int(meets["id"].iloc[0])
            self.conn.execute(
                "UPDATE ciu.alert SET time = least(time, %(first)s), until = greatest(until, %(last)s),"
                " run_id = coalesce(%(run)s, run_id), issued_at = now(),"
                " severity = CASE WHEN severity = 'critical' OR %(sev)s = 'critical' THEN 'critical' ELSE %(sev)s END,"
                " message = CASE WHEN %(risk)s >= coalesce(risk, 0) THEN %(msg)s ELSE message END,"
                " risk = greatest(risk, %(risk)s), threshold = %(thr)s WHERE id = %(id)s",
                {"first": first, "last": last, "run": run_id, "sev": severity, "risk": float(top["risk"]),
                 "msg": str(top["message"]), "thr": float(top["threshold"]), "id": alert_id})
            self._history(alert_id, "extended", None, f"{first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M} UTC")
            return alert_id
        row = self.conn.execute(
            "INSERT INTO ciu.alert (run_id, unit_id, kind, severity, time, until, risk, threshold, message)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (run_id, unit, kind, severity, first, last, float(top["risk"]), float(top["threshold"]),
             str(top["message"]))).fetchone()
        alert_id = int(row[0])  # type: ignore[index]
        self._history(alert_id, "opened", None, "")
        return alert_id

    def _history(self, alert_id: int, event: str, by: str | None, note: str) -> None:
        self.conn.execute("INSERT INTO ciu.alert_history (alert_id, event, by, note) VALUES (%s, %s, %s, %s)",
                          (alert_id, event, by, note))

    def alerts(self, *, open_only: bool = False, codes: Sequence[str] | None = None, level: str | None = None,
               severity: str | None = None, ids: Sequence[int] | None = None, state: str | None = None,
               limit: int = 1000) -> pd.DataFrame:
        """Alert episodes, newest first, filtered in SQL (open only, state, units, level, severity, alert ids).

        ``state`` is ``open``, ``acknowledged``, ``resolved`` or ``live`` (not resolved).
        """
        where = [sql.SQL("TRUE")]
        params: dict[str, Any] = {"limit": int(limit)}
        if open_only:
            where.append(sql.SQL("a.state = 'open'"))
        if state is not None:
            if state not in ALERT_STATES:
                raise ValidationError(f"unknown alert state {state!r}; known: {list(ALERT_STATES)}", field="state")
            where.append(sql.SQL("a.state <> 'resolved'") if state == "live" else sql.SQL("a.state = %(state)s"))
            params["state"] = state
        if severity is not None:
            where.append(sql.SQL("a.severity = %(severity)s"))
            params["severity"] = severity
        if ids is not None:
            where.append(sql.SQL("a.id = ANY(%(ids)s)"))
            params["ids"] = [int(i) for i in ids]
        if codes is not None:
            where.append(sql.SQL("u.code = ANY(%(codes)s)"))
            params["codes"] = list(codes)
        if level is not None:
            self.rank(level)
            where.append(sql.SQL("u.level = %(level)s"))
            params["level"] = level
        query = sql.SQL(
            "SELECT a.id, a.run_id, u.code, u.level, a.kind, a.severity, a.time, a.until, a.issued_at, a.risk,"
            " a.threshold, a.message, a.state, a.acknowledged_at, a.acknowledged_by, a.resolved_at, a.resolved_by"
            " FROM ciu.alert a JOIN ciu.unit u ON u.id = a.unit_id"
            " WHERE {} ORDER BY a.time DESC, a.risk DESC NULLS LAST, a.id LIMIT %(limit)s"
        ).format(sql.SQL(" AND ").join(where))
        rows = self.conn.execute(query, params).fetchall()
        return pd.DataFrame(rows, columns=ALERT_FIELDS)

    def acknowledge_alert(self, alert_id: int, *, by: str) -> None:
        """Acknowledge an alert episode (idempotent: the first acknowledgement is kept; a resolved one stays so)."""
        with self.transaction():
            if self._lock_alert(alert_id)[1] is None:
                self.conn.execute(
                    "UPDATE ciu.alert SET acknowledged_at = now(), acknowledged_by = %s,"
                    " state = CASE WHEN state = 'open' THEN 'acknowledged' ELSE state END WHERE id = %s",
                    (by, alert_id))
                self._history(alert_id, "acknowledged", by, "")

    def resolve_alert(self, alert_id: int, *, by: str, note: str = "") -> None:
        """Close an alert episode by hand (idempotent: the first resolution is kept)."""
        with self.transaction():
            if self._lock_alert(alert_id)[0] != "resolved":
                self.conn.execute("UPDATE ciu.alert SET state = 'resolved', resolved_at = now(), resolved_by = %s"
                                  " WHERE id = %s", (by, alert_id))
                self._history(alert_id, "resolved", by, note)

    def _lock_alert(self, alert_id: int) -> tuple[str, datetime | None]:
        """The state and acknowledgement time of an alert, its row locked until the transaction ends."""
        row = self.conn.execute("SELECT state, acknowledged_at FROM ciu.alert WHERE id = %s FOR UPDATE",
                                (alert_id,)).fetchone()
        if row is None:
            raise NotFound(f"no alert with id {alert_id}")
        return row[0], row[1]

    def alert_history(self, alert_id: int) -> pd.DataFrame:
        """What happened to one alert episode, oldest first (``at, event, by, note``)."""
        rows = self.conn.execute("SELECT at, event, by, note FROM ciu.alert_history WHERE alert_id = %s"
                                 " ORDER BY at, id", (alert_id,)).fetchall()
        if not rows and self.conn.execute("SELECT 1 FROM ciu.alert WHERE id = %s", (alert_id,)).fetchone() is None:
            raise NotFound(f"no alert with id {alert_id}")
        return pd.DataFrame(rows, columns=["at", "event", "by", "note"])
