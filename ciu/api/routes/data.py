"""Time series, stored forecasts, risk and alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import numpy as np
import orjson
import pandas as pd
from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from ciu.api.deps import VARIABLE_DEFAULT, Ctx
from ciu.api.features import check_level
from ciu.api.privacy import public_counts, public_forecasts
from ciu.api.schemas import Alert, AlertEvent, PredictionPage, Risk, Series
from ciu.clock import utc_or_none
from ciu.errors import NotFound, ValidationError
from ciu.forecast import forecast_variable
from ciu.store import QUANTILE_COLUMNS

router = APIRouter()

MAX_POINTS = 20_000


@router.get("/units/{code:path}/series", response_model=Series, tags=["series"],
            summary="A unit's time series: observed, or rolled up from the levels below")
def series(
    ctx: Ctx,
    code: str,
    variable: Annotated[str | None, Query(description=VARIABLE_DEFAULT, examples=["people"])] = None,
    start: Annotated[datetime | None, Query(description="from (inclusive, ISO 8601)")] = None,
    end: Annotated[datetime | None, Query(description="to (exclusive, ISO 8601)")] = None,
    freq: Annotated[str, Query(description="bucket: h, D, W, 15min, ...", examples=["h"])] = "h",
    source: Annotated[Literal["rollup", "observed"], Query(description="rollup (any level) or stored")] = "rollup",
) -> dict:
    unit = ctx.twin.unit_row(code)
    variable = variable or forecast_variable(ctx.twin)
    var = ctx.twin.variable(variable)
    start, end = utc_or_none(start), utc_or_none(end)
    if start is not None and end is not None and start >= end:
        raise ValidationError("start must be before end", field="start")
    if source == "observed":
        frame = ctx.twin.observations(variable, codes=[code], start=start, end=end)
    else:
        frame = ctx.twin.rollup(variable, level=unit["level"], codes=[code], start=start, end=end, freq=freq)
    frame = frame.head(MAX_POINTS)
    values = frame["value"].to_numpy(dtype=float)
    if var.is_count:
        shown = public_counts(values, **ctx.privacy())
    else:
        shown = [float(v) for v in values]
    ctx.audit(units=1)
    return {"code": code, "level": unit["level"], "variable": variable, "freq": freq, "source": source,
            "unit_of_measure": var.unit_of_measure,
            "points": [{"time": t.isoformat(), "value": v} for t, v in zip(frame["time"], shown)]}


def _known_level(ctx: Ctx, level: str | None) -> None:
    cache = ctx.request.app.state.levels
    if level is None or level in cache:
        return
    check_level(ctx, level)
    ctx.request.app.state.levels = ctx.twin.levels


@router.get("/predictions", response_model=PredictionPage, tags=["forecasts"],
            summary="Stored forecasts by unit or level, horizon, issue time and model run",
            description="Each forecast is issued at `issued_at`, the last step whose observations it may use; "
                        "horizon h is the step `issued_at + h × step` (the run's step, see `/models/{run_id}`). "
                        "`q10`, `q50`, `q90` are the forecast's percentiles where the run stored them. Counts "
                        "and their percentiles are protected for the public (see docs/api.md).")
def predictions(
    ctx: Ctx,
    code: Annotated[list[str] | None, Query(description="units (repeat the parameter)")] = None,
    level: Annotated[str | None, Query(examples=["district"])] = None,
    variable: Annotated[str | None, Query(examples=["people"])] = None,
    horizon: Annotated[int | None, Query(ge=1, le=10_000, description="steps ahead of issued_at")] = None,
    issued_at: Annotated[datetime | None, Query(description="issue time: the last step whose observations the "
                                                            "forecast may use (default: the run's latest)")] = None,
    run_id: Annotated[int | None, Query(ge=1, le=2**62, description="model run (default: the newest)")] = None,
    scenario: Annotated[str, Query(max_length=100)] = "baseline",
    limit: Annotated[int | None, Query(ge=1)] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    limit = min(limit or ctx.settings.page_max, ctx.settings.page_max)
    privacy = ctx.privacy()

    def read() -> tuple[str, int]:
        _known_level(ctx, level)
        if variable is not None:
            ctx.twin.variable(variable)
        return ctx.api.predictions_json(variable=variable, codes=code, level=level, run_id=run_id, horizon=horizon,
                                        issued_at=utc_or_none(issued_at), scenario=scenario, limit=limit, offset=offset,
                                        **privacy)

    # stored forecasts change when a run writes them, not per call: the same question within
    # reuse_s seconds gets the same answer without a database round trip
    body, n = ctx.reused(("predictions", str(ctx.request.url.query), tuple(privacy.items())), read)
    url = ctx.request.url
    links = [{"href": str(url), "rel": "self", "type": "application/json"}]
    if n == limit:
        links.append({"href": str(url.include_query_params(offset=offset + limit, limit=limit)), "rel": "next",
                      "type": "application/json"})
    ctx.audit(units=n)
    # the forecasts come serialised from the database; the page around them is PredictionPage's shape
    page = {"predictions": orjson.Fragment(body), "numberReturned": n, "links": links}
    return Response(orjson.dumps(page), media_type="application/json")


@router.get("/risk", response_model=list[Risk], tags=["forecasts"],
            summary="Units ranked by forecast risk (newest run)")
def risk(
    ctx: Ctx,
    level: Annotated[str | None, Query(examples=["building"])] = None,
    code: Annotated[list[str] | None, Query()] = None,
    horizon: Annotated[int, Query(ge=1, le=10_000)] = 1,
    min_risk: Annotated[float, Query(ge=0, le=1)] = 0.0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[dict]:
    check_level(ctx, level)
    frame = ctx.twin.predictions(level=level, codes=code, horizon=horizon)
    frame = frame[frame["risk"].notna() & (frame["risk"].astype(float) >= min_risk)]
    frame = frame.sort_values(["risk", "code"], ascending=[False, True]).head(limit)
    values, quantiles = _published(ctx, frame)
    rows = [{"code": r.code, "level": r.level, "time": r.time.isoformat(), "horizon": int(r.horizon),
             "risk": float(r.risk), "value": v, "q10": q[0], "q50": q[1], "q90": q[2]}
            for r, v, q in zip(frame.itertuples(index=False), values, quantiles)]
    ctx.audit(units=len(rows))
    return rows


def _published(ctx: Ctx, frame: pd.DataFrame) -> tuple[list[float | None], list[list[float | None]]]:
    """Stored forecast values and quantiles as the caller may see them (counts protected, others as stored)."""
    counts = {v.name for v in ctx.twin.variables() if v.is_count}
    counted = frame["variable"].isin(counts).to_numpy()
    values = frame["value"].to_numpy(dtype=float)
    quantiles = frame[list(QUANTILE_COLUMNS)].to_numpy(dtype=float)
    shown: list[float | None] = [None] * len(frame)
    bands: list[list[float | None]] = [[None] * 3 for _ in range(len(frame))]
    for rows, privacy in ((counted, ctx.privacy()), (~counted, {"exact": True, "k": 0.0, "epsilon": None})):
        v, q = public_forecasts(values[rows], quantiles[rows], **privacy)
        for i, vi, qi in zip(np.flatnonzero(rows), v, q):
            shown[i], bands[i] = vi, qi
    return shown, bands


def _alert_rows(frame: pd.DataFrame) -> list[dict]:
    out = []
    for r in frame.to_dict("records"):
        for key in ("risk", "threshold", "run_id", "acknowledged_at", "acknowledged_by", "resolved_at", "resolved_by"):
            if r[key] is None or pd.isna(r[key]):
                r[key] = None
        if r["run_id"] is not None:
            r["run_id"] = int(r["run_id"])
        out.append(r)
    return out


@router.get("/alerts", response_model=list[Alert], tags=["alerts"], summary="Alert episodes, newest first")
def alerts(
    ctx: Ctx,
    open: Annotated[bool, Query(description="only alerts not yet acknowledged (state open)")] = False,
    state: Annotated[Literal["open", "acknowledged", "resolved", "live"] | None, Query(
        description="only alerts in this state (live: open or acknowledged)")] = None,
    code: Annotated[list[str] | None, Query()] = None,
    level: Annotated[str | None, Query()] = None,
    severity: Annotated[Literal["info", "warning", "critical"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[dict]:
    check_level(ctx, level)
    frame = ctx.twin.alerts(open_only=open, state=state, codes=code, level=level, severity=severity, limit=limit)
    rows = _alert_rows(frame)
    ctx.audit(units=len(rows))
    return rows


def _one_alert(ctx: Ctx, alert_id: int) -> dict:
    frame = ctx.twin.alerts(ids=[alert_id], limit=1)
    if frame.empty:
        raise NotFound(f"no alert with id {alert_id}")
    ctx.audit(units=1)
    return _alert_rows(frame)[0]


@router.post("/alerts/{alert_id}/acknowledge", response_model=Alert, tags=["alerts"],
             summary="Acknowledge an alert (roles that may)")
def acknowledge(ctx: Ctx, alert_id: Annotated[int, Path(ge=1, le=2**62)]) -> dict:
    ctx.who.require("acknowledge")
    ctx.twin.acknowledge_alert(alert_id, by=ctx.who.label)
    return _one_alert(ctx, alert_id)


@router.post("/alerts/{alert_id}/resolve", response_model=Alert, tags=["alerts"],
             summary="Resolve an alert by hand (roles that may acknowledge)")
def resolve(ctx: Ctx, alert_id: Annotated[int, Path(ge=1, le=2**62)],
            note: Annotated[str, Query(max_length=500, description="why")] = "") -> dict:
    ctx.who.require("acknowledge")
    ctx.twin.resolve_alert(alert_id, by=ctx.who.label, note=note)
    return _one_alert(ctx, alert_id)


@router.get("/alerts/{alert_id}/history", response_model=list[AlertEvent], tags=["alerts"],
            summary="What happened to an alert, oldest first")
def history(ctx: Ctx, alert_id: Annotated[int, Path(ge=1, le=2**62)]) -> list[dict]:
    frame = ctx.twin.alert_history(alert_id)
    ctx.audit(units=1)
    return [{**r, "by": None if r["by"] is None or pd.isna(r["by"]) else r["by"]} for r in frame.to_dict("records")]
