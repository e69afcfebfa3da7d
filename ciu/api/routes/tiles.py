"""Vector tiles of a level with current and forecast values (``ST_AsMVT``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from ciu.api.deps import VARIABLE_DEFAULT, Ctx
from ciu.clock import utc_or_none
from ciu.errors import ValidationError
from ciu.forecast import forecast_variable

router = APIRouter(tags=["tiles"])

MVT = "application/vnd.mapbox-vector-tile"
@router.get("/tiles/{level}/{z}/{x}/{y}.mvt", summary="A Mapbox vector tile of a level (Web Mercator)",
            response_class=Response, responses={200: {"content": {MVT: {"schema": {"type": "string",
                                                                                   "format": "binary"}}}}},
            description="One layer named after the level. Each feature carries the unit's code, name, level, "
                        "z-range, area, public attributes, the restricted attributes the caller's role may see, "
                        "`current` (the variable at `time`, default its latest observation), `forecast` and "
                        "`forecast_risk` at `horizon` from the newest stored run.")
def tile(
    ctx: Ctx,
    level: str,
    z: Annotated[int, Path(ge=0, le=22)],
    x: Annotated[int, Path(ge=0)],
    y: Annotated[int, Path(ge=0)],
    variable: Annotated[str | None, Query(description=VARIABLE_DEFAULT, examples=["people"])] = None,
    horizon: Annotated[int, Query(ge=1, le=10_000)] = 1,
    time: Annotated[datetime | None, Query(description="time of the current value")] = None,
) -> Response:
    if x >= 2**z or y >= 2**z:
        raise ValidationError(f"tile {z}/{x}/{y} does not exist (x and y must be below {2**z})", field="x")
    time = utc_or_none(time)
    allowed = list(ctx.who.role.restricted_attrs)
    variable = variable or ctx.reused(("variable",), lambda: forecast_variable(ctx.twin))
    context = ctx.reused(("context", level, variable),
                         lambda: ctx.api.tile_context(level=level, variable=variable))
    current = ctx.reused(("current", level, context["vid"], time or context["latest_time"]),
                         lambda: ctx.api.current_values(context, time=time))
    forecast = ctx.reused(("forecast", level, context["vid"], context["run"], context["issued"], horizon),
                          lambda: ctx.api.forecast_values(context, horizon=horizon))
    data = ctx.api.tile(context, z=z, x=x, y=y, current=current, forecast=forecast, allowed=allowed,
                        **ctx.privacy())
    ctx.audit(units=0, restricted=bool(allowed))
    return Response(data, media_type=MVT, headers={"Cache-Control": "max-age=60"})
