"""CityJSON: buildings with footprints, measured height and storeys.

Each ``Building`` (and ``BuildingPart`` without a parent building) becomes a
feature whose footprint is the union of its surfaces projected on the ground,
with ``z_min``/``z_max`` from its vertices and ``measured_height`` from the
``measuredHeight`` attribute when given. ``BuildingStorey`` objects (CityJSON
2.0) become rows of the ``storeys`` part, with their z-range. The CRS comes
from ``metadata.referenceSystem``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from ciu.errors import ValidationError
from ciu.ingest.base import Layer, Loader, check_exists
from ciu.ingest.vector import finish_layer

VERSION = "1"
_EPSG = re.compile(r"EPSG(?:/\d+/|::?)(\d+)", re.IGNORECASE)


def _reference_system(doc: dict[str, Any]) -> CRS | None:
    ref = (doc.get("metadata") or {}).get("referenceSystem")
    if not ref:
        return None
    match = _EPSG.search(str(ref))
    crs = CRS.from_epsg(int(match.group(1))) if match else CRS.from_user_input(ref)
    if crs.is_compound:  # horizontal part of e.g. RD New + NAP height
        crs = crs.sub_crs_list[0]
    return crs


def _rings(boundaries: Any) -> list[list[int]]:
    """Every outer ring of every surface, whatever the nesting (MultiSurface, Solid, MultiSolid)."""
    out: list[list[int]] = []

    def walk(node: Any) -> None:
        if isinstance(node, list) and node and isinstance(node[0], int):
            out.append(node)
        elif isinstance(node, list) and node and isinstance(node[0], list) and node[0] and \
                isinstance(node[0][0], int):
            out.append(node[0])  # a surface: outer ring first, holes after
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(boundaries)
    return out


def _object_shape(obj: dict[str, Any], vertices: np.ndarray, *, source: str, oid: str
                  ) -> tuple[shapely.Geometry | None, float, float]:
    rings: list[list[int]] = []
    for geom in obj.get("geometry") or []:
        rings.extend(_rings(geom.get("boundaries", [])))
    if not rings:
        return None, np.nan, np.nan
    idx = np.concatenate([np.asarray(r, dtype=np.int64) for r in rings])
    if idx.min() < 0 or idx.max() >= len(vertices):
        raise ValidationError(f"refers to vertex {int(idx.max())} of {len(vertices)}", source=source, row=oid,
                              field="geometry")
    polys = [shapely.Polygon(vertices[r, :2]) for r in rings if len(r) >= 3]
    flat = [p for p in polys if p.is_valid and p.area > 0]
    footprint = shapely.union_all(flat) if flat else None
    z = vertices[idx, 2]
    return footprint, float(z.min()), float(z.max())


class CityJSONLoader(Loader):
    """CityJSON 1.x / 2.0 files (``.city.json``, ``.cityjson`` or a JSON with ``"type": "CityJSON"``)."""

    name = "cityjson"
    version = VERSION
    suffixes = (".city.json", ".cityjson")
    kind = "layer"

    def can_open(self, path: Path | str) -> bool:
        if super().can_open(path):
            return True
        if str(path).lower().endswith(".json"):
            from ciu.ingest.vector import json_type_is

            return json_type_is(Path(path), "CityJSON")
        return False

    def read(self, path: Path | str, *, crs: Any = None, **_: Any) -> Layer:
        path = check_exists(path)
        source = str(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValidationError(f"is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})",
                                  source=source) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ValidationError(f"cannot be read ({exc})", source=source) from exc
        if not isinstance(doc, dict) or doc.get("type") != "CityJSON":
            raise ValidationError("is not a CityJSON document (no \"type\": \"CityJSON\")", source=source,
                                  field="type")
        for name in ("CityObjects", "vertices"):
            if name not in doc:
                raise ValidationError(f"missing member {name!r}", source=source, field=name)
        vertices = np.asarray(doc["vertices"], dtype=float).reshape(-1, 3)
        tr = doc.get("transform")
        if tr:
            vertices = vertices * np.asarray(tr["scale"], dtype=float) + np.asarray(tr["translate"], dtype=float)
        file_crs = _reference_system(doc)
        rows, storeys = [], []
        objects: dict[str, Any] = doc["CityObjects"]
        for oid, obj in objects.items():
            kind = obj.get("type")
            attrs = obj.get("attributes") or {}
            if kind == "BuildingStorey":
                _, z0, z1 = _object_shape(obj, vertices, source=source, oid=oid)
                parents = obj.get("parents") or []
                if not parents:
                    raise ValidationError("storey has no parent building", source=source, row=oid, field="parents")
                storeys.append({"building": parents[0], "storey": oid, "z_min": z0, "z_max": z1,
                                "name": attrs.get("name", oid)})
                continue
            if kind == "BuildingPart" and obj.get("parents"):
                continue
            if kind not in ("Building", "BuildingPart"):
                continue
            footprint, z0, z1 = _object_shape(obj, vertices, source=source, oid=oid)
            if footprint is None:
                # a building whose geometry is in its parts: the union of the parts
                parts = [objects[c] for c in obj.get("children", []) if objects.get(c, {}).get("type") == "BuildingPart"]
                shapes = [_object_shape(p, vertices, source=source, oid=oid) for p in parts]
                shapes = [s for s in shapes if s[0] is not None]
                if not shapes:
                    raise ValidationError("building has no geometry", source=source, row=oid, field="geometry")
                footprint = shapely.union_all([s[0] for s in shapes])
                z0, z1 = min(s[1] for s in shapes), max(s[2] for s in shapes)
            height = attrs.get("measuredHeight")
            try:
                height = float(height) if height is not None else z1 - z0
            except (TypeError, ValueError):
                raise ValidationError(f"measuredHeight {height!r} is not a number", source=source, row=oid,
                                      field="measuredHeight") from None
            rows.append({"id": oid, "type": kind, "measured_height": height, "ground_z": z0,
                         "floors": attrs.get("storeysAboveGround"), "attributes": attrs, "geometry": footprint})
        if not rows:
            raise ValidationError("holds no buildings", source=source, field="CityObjects")
        frame = gpd.GeoDataFrame(rows, geometry="geometry", crs=file_crs)
        frame, source_crs = finish_layer(frame, source=source, crs=crs, key="id")
        storey_frame = pd.DataFrame(storeys, columns=["building", "storey", "z_min", "z_max", "name"])
        if len(storey_frame):
            unknown = ~storey_frame["building"].isin(frame["id"])
            if unknown.any():
                r = storey_frame[unknown].iloc[0]
                raise ValidationError(f"storey's parent {r['building']!r} is not a building", source=source,
                                      row=r["storey"], field="parents")
            ground = frame.set_index("id")["ground_z"]
            storey_frame["z_min"] = storey_frame["z_min"] - storey_frame["building"].map(ground)
            storey_frame["z_max"] = storey_frame["z_max"] - storey_frame["building"].map(ground)
        return Layer(frame=frame, uri=source, loader=f"ingest.{self.name}", loader_version=self.version,
                     source_crs=source_crs, parts={"storeys": storey_frame})


LOADERS = (CityJSONLoader(),)
