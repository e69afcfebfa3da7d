"""Levels and units: the hierarchy as GeoJSON."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ciu.api.deps import Ctx
from ciu.api.features import check_level, feature, page_links, parse_bbox, unit_rows
from ciu.api.schemas import FeatureCollection, Level, UnitDetail
from ciu.errors import UnknownUnit

router = APIRouter(tags=["units"])

BBOX = Query(description="min lon, min lat, max lon, max lat (EPSG:4326)", examples=["5.10,52.08,5.14,52.10"])


@router.get("/levels", response_model=list[Level], summary="The hierarchy's levels, bottom first")
def levels(ctx: Ctx) -> list[dict]:
    rows = ctx.api.level_counts()
    ctx.audit(units=0)
    return rows


@router.get("/units", response_model=FeatureCollection, summary="Units as a GeoJSON FeatureCollection",
            response_model_exclude_none=True)
def units(
    ctx: Ctx,
    level: Annotated[str | None, Query(description="only units of this level", examples=["building"])] = None,
    bbox: Annotated[str | None, BBOX] = None,
    within: Annotated[str | None, Query(description="only this unit and the units below it",
                                        examples=["tiny/d01"])] = None,
    code: Annotated[list[str] | None, Query(description="only these codes (repeat the parameter)")] = None,
    limit: Annotated[int | None, Query(ge=1, description="page size")] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> dict:
    limit = min(limit or ctx.settings.page_default, ctx.settings.page_max)
    check_level(ctx, level)
    box = parse_bbox(bbox)
    if within is not None:
        ctx.twin.unit_row(within)
    matched = ctx.api.count_units(level=level, bbox=box, within=within, codes=code)
    rows = unit_rows(ctx, level=level, bbox=box, within=within, codes=code, limit=limit, offset=offset)
    base = str(ctx.request.base_url).rstrip("/")
    feats = [feature(ctx, r, base=base) for r in rows]
    ctx.audit(units=len(feats), restricted=ctx.who.sees_restricted)
    return {"type": "FeatureCollection", "features": feats, "numberMatched": matched, "numberReturned": len(feats),
            "links": page_links(ctx.request.url, offset=offset, limit=limit, returned=len(feats), matched=matched)}


def unit_detail(ctx: Ctx, code: str) -> dict:
    rows = unit_rows(ctx, codes=[code])
    if not rows:
        raise UnknownUnit(f"no unit with code {code!r}")
    base = str(ctx.request.base_url).rstrip("/")
    out = feature(ctx, rows[0], base=base)
    out["parent"] = rows[0]["parent_code"]
    out["children"] = ctx.twin.child_codes(code)
    out["ancestors"] = ctx.twin.ancestor_codes(code)
    ctx.audit(units=1, restricted=ctx.who.sees_restricted)
    return out


detail_router = APIRouter(tags=["units"])


@detail_router.get("/units/{code:path}", response_model=UnitDetail, response_model_exclude_none=True,
                   summary="One unit: attributes, parent, children and ancestors")
def unit(ctx: Ctx, code: str) -> dict:
    return unit_detail(ctx, code)
