"""OGC API - Features, Part 1 (Core): landing page, conformance, one collection per level."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from ciu.api.deps import Ctx
from ciu.api.features import feature, page_links, parse_bbox, unit_rows
from ciu.api.schemas import Feature, FeatureCollection
from ciu.errors import UnknownLevel, UnknownUnit

router = APIRouter(tags=["OGC API Features"])

GEOJSON = "application/geo+json"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"


def _base(ctx: Ctx) -> str:
    return str(ctx.request.base_url).rstrip("/")


@router.get("/", summary="Landing page", response_model=dict[str, Any])
def landing(ctx: Ctx) -> dict:
    base = _base(ctx)
    ctx.audit(units=0)
    return {
        "title": ctx.settings.title,
        "description": "City Information Units (floor → building → grid → district → city), their forecasts, "
                       "risk, scenarios and vector tiles.",
        "links": [
            {"href": f"{base}/", "rel": "self", "type": "application/json", "title": "this document"},
            {"href": f"{base}/openapi.json", "rel": "service-desc",
             "type": "application/vnd.oai.openapi+json;version=3.0", "title": "the API definition"},
            {"href": f"{base}/docs", "rel": "service-doc", "type": "text/html", "title": "the API documentation"},
            {"href": f"{base}/conformance", "rel": "conformance", "type": "application/json"},
            {"href": f"{base}/collections", "rel": "data", "type": "application/json"},
        ],
    }


@router.get("/conformance", summary="Conformance classes", response_model=dict[str, list[str]])
def conformance(ctx: Ctx) -> dict:
    ctx.audit(units=0)
    return {"conformsTo": CONFORMANCE}


def _collection(base: str, level: str, extent: tuple[float, float, float, float] | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": level, "title": f"{level} units", "itemType": "feature", "crs": [CRS84],
        "links": [
            {"href": f"{base}/collections/{level}", "rel": "self", "type": "application/json"},
            {"href": f"{base}/collections/{level}/items", "rel": "items", "type": GEOJSON},
            {"href": f"{base}/tiles/{level}/{{z}}/{{x}}/{{y}}.mvt", "rel": "item",
             "type": "application/vnd.mapbox-vector-tile", "templated": True},
        ],
    }
    if extent is not None:
        out["extent"] = {"spatial": {"bbox": [list(extent)], "crs": CRS84}}
    return out


@router.get("/collections", summary="One collection per level", response_model=dict[str, Any])
def collections(ctx: Ctx) -> dict:
    base = _base(ctx)
    extents = ctx.api.level_extents()
    ctx.audit(units=0)
    return {"collections": [_collection(base, lv, ext) for lv, ext in extents.items()],
            "links": [{"href": f"{base}/collections", "rel": "self", "type": "application/json"}]}


@router.get("/collections/{level}", summary="A level as a collection", response_model=dict[str, Any])
def collection(ctx: Ctx, level: str) -> dict:
    extents = ctx.api.level_extents()
    if level not in extents:
        raise UnknownLevel(f"no collection {level!r}; collections: {list(extents)}")
    ctx.audit(units=0)
    return _collection(_base(ctx), level, extents[level])


@router.get("/collections/{level}/items", summary="Units of a level (GeoJSON)", response_model=FeatureCollection,
            response_class=JSONResponse, responses={200: {"content": {GEOJSON: {}}}})
def items(
    ctx: Ctx,
    level: str,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    bbox: Annotated[str | None, Query(description="min lon, min lat, max lon, max lat (CRS84)")] = None,
) -> JSONResponse:
    ctx.twin.rank(level)
    limit = min(limit, ctx.settings.page_max)
    box = parse_bbox(bbox)
    matched = ctx.api.count_units(level=level, bbox=box)
    rows = unit_rows(ctx, level=level, bbox=box, limit=limit, offset=offset)
    base = _base(ctx)
    feats = []
    for r in rows:
        f = feature(ctx, r)
        f["links"] = [{"href": f"{base}/collections/{level}/items/{r['code']}", "rel": "self", "type": GEOJSON}]
        feats.append(f)
    ctx.audit(units=len(feats), restricted=ctx.who.sees_restricted)
    links = page_links(ctx.request.url, offset=offset, limit=limit, returned=len(feats), matched=matched)
    links.append({"href": f"{base}/collections/{level}", "rel": "collection", "type": "application/json"})
    body = {"type": "FeatureCollection", "features": feats, "numberMatched": matched, "numberReturned": len(feats),
            "timeStamp": datetime.now(timezone.utc).isoformat(), "links": links}
    return JSONResponse(body, media_type=GEOJSON)


@router.get("/collections/{level}/items/{feature_id:path}", summary="One unit (GeoJSON)", response_model=Feature,
            response_class=JSONResponse, responses={200: {"content": {GEOJSON: {}}}})
def item(ctx: Ctx, level: str, feature_id: str) -> JSONResponse:
    ctx.twin.rank(level)
    rows = unit_rows(ctx, level=level, codes=[feature_id])
    if not rows:
        raise UnknownUnit(f"no {level} unit with code {feature_id!r}")
    base = _base(ctx)
    f = feature(ctx, rows[0])
    f["links"] = [{"href": f"{base}/collections/{level}/items/{feature_id}", "rel": "self", "type": GEOJSON},
                  {"href": f"{base}/collections/{level}", "rel": "collection", "type": "application/json"}]
    ctx.audit(units=1, restricted=ctx.who.sees_restricted)
    return JSONResponse(f, media_type=GEOJSON)
