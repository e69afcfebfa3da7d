"""Units as GeoJSON features, with restricted attributes only for roles that may see them."""

from __future__ import annotations

from typing import Any

import shapely
from shapely.geometry import mapping

from ciu.api.deps import Context
from ciu.errors import ValidationError

def parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    """``"minlon,minlat,maxlon,maxlat"`` as four floats, checked."""
    if text is None or text == "":
        return None
    parts = text.split(",")
    if len(parts) != 4:
        raise ValidationError("bbox must be four numbers: min lon, min lat, max lon, max lat", field="bbox")
    try:
        x0, y0, x1, y1 = (float(p) for p in parts)
    except ValueError:
        raise ValidationError("bbox must be four numbers: min lon, min lat, max lon, max lat", field="bbox") from None
    if not all(map(lambda v: v == v and abs(v) != float("inf"), (x0, y0, x1, y1))):
        raise ValidationError("bbox numbers must be finite", field="bbox")
    if not (-180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90):
        raise ValidationError("bbox must be min lon ≤ max lon in [-180, 180], min lat ≤ max lat in [-90, 90]",
                              field="bbox")
    return x0, y0, x1, y1


def check_level(ctx: Context, level: str | None) -> None:
    if level is not None:
        ctx.twin.rank(level)  # raises UnknownLevel


def unit_rows(ctx: Context, **filters: Any) -> list[dict[str, Any]]:
    """``Store.unit_rows`` asking for restricted attributes only when the caller may see some."""
    return ctx.twin.unit_rows(include_restricted=ctx.who.sees_restricted, **filters)


def feature(ctx: Context, row: dict[str, Any], *, base: str | None = None) -> dict[str, Any]:
    """A unit row as a GeoJSON feature (restricted attributes filtered by the caller's role)."""
    geom = shapely.from_wkb(bytes(row["geometry"]))
    props = {
        "code": row["code"], "level": row["level"], "name": row["name"], "parent": row["parent_code"],
        "z_min": row["z_min"], "z_max": row["z_max"], "area_m2": round(float(row["area_m2"]), 1),
        "attrs": row["attrs"], "restricted": ctx.who.visible(row.get("restricted")),
    }
    out: dict[str, Any] = {"type": "Feature", "id": row["code"], "geometry": mapping(geom), "properties": props}
    if base is not None:
        out["links"] = [{"href": f"{base}/units/{row['code']}", "rel": "self", "type": "application/geo+json"}]
    return out


def page_links(url: Any, *, offset: int, limit: int, returned: int, matched: int,
               media: str = "application/geo+json") -> list[dict[str, Any]]:
    """``self``, ``next`` and ``prev`` links for offset paging."""
    links = [{"href": str(url), "rel": "self", "type": media}]
    if offset + returned < matched:
        links.append({"href": str(url.include_query_params(offset=offset + limit, limit=limit)), "rel": "next",
                      "type": media})
    if offset > 0:
        links.append({"href": str(url.include_query_params(offset=max(0, offset - limit), limit=limit)),
                      "rel": "prev", "type": media})
    return links
