"""The unit tree: checked bulk loads of units, and reads by code, level and subtree.

The only module that writes the SQL of these tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from psycopg import sql
from psycopg.rows import dict_row

from ciu import pgcopy
from ciu.domain import CODE, LoadReport
from ciu.errors import DuplicateError, HierarchyError, UnknownUnit, ValidationError
from ciu.store.base import BULK_ROWS, StoreBase, _translate, load_sql, subtree_pattern
from ciu.store.encoding import UnitFields, _positions, _strings, distinct_geometries


class Units(StoreBase):
    """The unit tree: checked bulk loads of units, and reads by code, level and subtree."""

    def check_units(self, frame: pd.DataFrame, *, source: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Check a frame of units before it touches the database.

        The frame has the columns of :data:`UNIT_COLUMNS`; ``geometry`` holds
        shapely geometries in EPSG:4326. Raises a :class:`ValidationError`
        naming the row (its code) and the field. Returns the frame's distinct
        geometries and each row's index among them (see
        :func:`distinct_geometries`), which the loader reuses.
        """
        missing = [c for c in ("code", "level", "geometry") if c not in frame.columns]
        if missing:
            raise ValidationError(f"missing columns {missing}", source=source, field=missing[0])
        crs = getattr(frame, "crs", None)  # a GeoDataFrame says its CRS: it must be the twin's
        if crs is not None and not crs.equals("EPSG:4326"):
            raise ValidationError(f"units must be in EPSG:4326, not {crs.to_string()}", source=source,
                                  field="geometry")
        levels = self.levels()
        codes = frame["code"]
        if codes.isna().any():
            i = int(np.flatnonzero(codes.isna().to_numpy())[0])
            raise ValidationError("code is missing", source=source, row=i, field="code")
        code_arr = _strings(codes)
        bad = ~pc.match_substring_regex(code_arr, CODE.pattern).to_numpy(zero_copy_only=False)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValidationError(
                f"code {codes.iloc[i]!r} is not URL-safe (lower-case letters, digits, _ and / between parts)",
                source=source, row=i, field="code",
            )
        if len(pc.unique(code_arr)) != len(code_arr):
            dup = codes.duplicated(keep=False)
            rows = np.flatnonzero(dup.to_numpy())
            first = codes.iloc[rows[0]]
            twins = [int(r) for r in rows if codes.iloc[r] == first][:2]
            raise DuplicateError(f"code {first!r} appears twice (rows {twins[0]} and {twins[1]})",
                                 source=source, row=twins[1], field="code")
        bad_level = ~frame["level"].isin(levels)
        if bad_level.any():
            i = int(np.flatnonzero(bad_level.to_numpy())[0])
            raise ValidationError(f"level {frame['level'].iloc[i]!r} is not one of {list(levels)}",
                                  source=source, row=codes.iloc[i], field="level")
        geoms = np.asarray(frame["geometry"], dtype=object)
        none = np.array([g is None for g in geoms])
        if none.any():
            i = int(np.flatnonzero(none)[0])
            raise ValidationError("geometry is missing", source=source, row=codes.iloc[i], field="geometry")
        distinct, inverse = distinct_geometries(geoms)

        def first_row(bad: np.ndarray) -> Any:
            return codes.iloc[int(np.flatnonzero(bad[inverse])[0])]

        empty = shapely.is_empty(distinct)
        if empty.any():
            raise ValidationError("geometry is empty", source=source, row=first_row(empty), field="geometry")
        valid = shapely.is_valid(distinct)
        if not valid.all():
            reason = shapely.is_valid_reason(distinct[np.flatnonzero(~valid)[0]])
            raise ValidationError(f"geometry is invalid ({reason})", source=source, row=first_row(~valid),
                                  field="geometry")
        bounds = shapely.bounds(distinct)
        outside = (bounds[:, 0] < -180) | (bounds[:, 2] > 180) | (bounds[:, 1] < -90) | (bounds[:, 3] > 90)
        if outside.any():
            raise ValidationError("coordinates are not longitude/latitude (EPSG:4326)", source=source,
                                  row=first_row(outside), field="geometry")
        for col in ("z_min", "z_max"):
            if col in frame.columns:
                z = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
                given = frame[col].notna().to_numpy()
                bad_z = given & ~np.isfinite(z)
                if bad_z.any():
                    i = int(np.flatnonzero(bad_z)[0])
                    raise ValidationError(f"{col} is not a finite number", source=source, row=codes.iloc[i], field=col)
        if "z_min" in frame.columns and "z_max" in frame.columns:
            zmin = pd.to_numeric(frame["z_min"]).to_numpy(dtype=float)
            zmax = pd.to_numeric(frame["z_max"]).to_numpy(dtype=float)
            inverted = zmin > zmax
            if inverted.any():
                i = int(np.flatnonzero(inverted)[0])
                raise ValidationError(f"z_min {zmin[i]} is above z_max {zmax[i]}", source=source,
                                      row=codes.iloc[i], field="z_min")
        if "parent_code" in frame.columns:
            parents = _strings(frame["parent_code"])
            head = pc.list_element(pc.split_pattern(code_arr, "/", max_splits=1, reverse=True), 0)
            # null where there is no parent: nothing to extend
            wrong = pc.fill_null(pc.or_(pc.not_equal(head, parents), pc.equal(head, code_arr)), False).to_numpy(
                zero_copy_only=False)
            if wrong.any():
                i = int(np.flatnonzero(wrong)[0])
                raise HierarchyError(f"code {codes.iloc[i]!r} does not extend its parent's code "
                                     f"{frame['parent_code'].iloc[i]!r}", source=source, row=codes.iloc[i],
                                     field="code")
        return distinct, inverse

    def load_units(
        self,
        frame: pd.DataFrame,
        *,
        source_id: int | None = None,
        source: str | None = None,
        progress: Any = None,
    ) -> LoadReport:
        """Load units (one transaction). Units already stored unchanged are skipped.

        A unit whose code is stored with a different level, parent or geometry
        raises :class:`DuplicateError`; a parent that is neither stored nor in
        the frame raises :class:`HierarchyError`. The frame is checked first
        (codes, levels, parents, geometry validity, z-ranges); ids and parents
        are resolved here, and the new units go into ``ciu.unit`` with one
        binary ``COPY``. The database's statement-level triggers then check
        the tree invariant over all of them at once. A load that at least
        doubles the table rebuilds the secondary indexes once instead of
        updating them row by row.
        """
        frame = frame.reset_index(drop=True)
        distinct, inverse = self.check_units(frame, source=source)
        report = LoadReport(source_id=source_id)
        n = len(frame)
        # codes stay Arrow strings: parents and stored units are found with hash lookups, not Python objects
        codes = _strings(frame["code"])
        parents = _strings(frame["parent_code"]) if "parent_code" in frame.columns else pa.nulls(n, pa.string())
        levels = self.levels()
        own_rank = _positions(_strings(frame["level"]), pa.array(levels, pa.string()))  # all known (checked)
        try:
            with self.transaction():
                self.conn.execute("LOCK TABLE ciu.unit IN SHARE ROW EXCLUSIVE MODE")
                stored_total = int(self.conn.execute("SELECT count(*) FROM ciu.unit").fetchone()[0])  # type: ignore[index]
                stored_codes, stored_ids = self._stored_ids(codes if stored_total else codes[:0])
                # parents: in this frame, or already stored
                has_parent = parents.is_valid().to_numpy(zero_copy_only=False)
                parent_pos = _positions(parents, codes)
                inside = parent_pos >= 0
                parent_rank = np.full(n, -1, dtype=np.int64)
                parent_rank[inside] = own_rank[parent_pos[inside]]
                parent_id = np.full(n, -1, dtype=np.int64)
                outside = np.flatnonzero(has_parent & ~inside)
                if len(outside):
                    wanted = parents.take(outside)
                    rows = self.conn.execute("SELECT code, id, level FROM ciu.unit WHERE code = ANY(%s)",
                                             (pc.unique(wanted).to_pylist(),)).fetchall()
                    found = _positions(wanted, pa.array([r[0] for r in rows], pa.string()))
                    if (found < 0).any():
                        i = int(outside[np.flatnonzero(found < 0)[0]])
                        raise HierarchyError(f"parent {parents[i].as_py()!r} of unit {codes[i].as_py()!r} does not "
                                             "exist", source=source, row=codes[i].as_py(), field="parent_code")
                    parent_rank[outside] = np.array([levels.index(r[2]) for r in rows], dtype=np.int64)[found]
                    parent_id[outside] = np.array([r[1] for r in rows], dtype=np.int64)[found]
                root_bad = ~has_parent & (own_rank != len(levels) - 1)
                if root_bad.any():
                    i = int(np.flatnonzero(root_bad)[0])
                    raise HierarchyError(f"unit {codes[i].as_py()!r} (level {levels[own_rank[i]]}) has no parent; "
                                         f"only {levels[-1]} units may be roots", source=source, row=codes[i].as_py(),
                                         field="parent_code")
                level_bad = has_parent & (parent_rank != own_rank + 1)
                if level_bad.any():
                    i = int(np.flatnonzero(level_bad)[0])
                    raise HierarchyError(
                        f"unit {codes[i].as_py()!r} (level {levels[own_rank[i]]}) has parent {parents[i].as_py()!r} at "
                        f"level {levels[parent_rank[i]]}; its parent must be one level up",
                        source=source, row=codes[i].as_py(), field="parent_code")
                stored_pos = _positions(codes, stored_codes)
                is_new = stored_pos < 0
                if not is_new.all():
                    self._check_unchanged(frame[~is_new], source=source, shapes=(distinct, inverse[~is_new]))
                    report.unchanged = int((~is_new).sum())
                k = int(is_new.sum())
                if k == 0:
                    return report
                # ids for the new units, in one block of the sequence (the table is locked)
                first = int(self.conn.execute("SELECT nextval('ciu.unit_id_seq')").fetchone()[0])  # type: ignore[index]
                self.conn.execute("SELECT setval('ciu.unit_id_seq', %s)", (first + k - 1,))
                ids = np.zeros(n, dtype=np.int64)
                ids[is_new] = first + np.arange(k)
                ids[~is_new] = stored_ids[stored_pos[~is_new]]
                parent_id[inside] = ids[parent_pos[inside]]
                rebuild = k >= BULK_ROWS and k >= stored_total
                indexes = self._drop_unit_indexes() if rebuild else []
                self._copy_units(frame[is_new], ids[is_new], parent_id[is_new], source_id=source_id, source=source,
                                 shapes=(distinct, inverse[is_new]))
                report.inserted = k
                if progress is not None:
                    for level in reversed(levels):
                        progress(level, int(((frame["level"] == level).to_numpy() & is_new).sum()))
                for definition in indexes:
                    self.conn.execute(definition)  # the server's own definition of the index
                if rebuild:
                    self.conn.execute("ANALYZE ciu.unit")
        except psycopg.Error as exc:
            raise _translate(exc) from exc
        return report

    def _stored_ids(self, codes: pa.Array) -> tuple[pa.Array, np.ndarray]:
        """The given codes that are already stored, and their ids (staged through COPY: fast for many codes)."""
        if len(codes) == 0:
            return pa.array([], pa.string()), np.zeros(0, dtype=np.int64)
        self.conn.execute("CREATE TEMP TABLE IF NOT EXISTS unit_keys (code text) ON COMMIT DROP")
        self.conn.execute("TRUNCATE unit_keys")
        pgcopy.copy_in(self.conn, "COPY unit_keys FROM STDIN (FORMAT BINARY)", [[pgcopy.varlen(codes)]])
        rows = self.conn.execute("SELECT u.code, u.id FROM unit_keys k JOIN ciu.unit u ON u.code = k.code").fetchall()
        return pa.array([c for c, _ in rows], pa.string()), np.array([i for _, i in rows], dtype=np.int64)

    def _check_unchanged(self, frame: pd.DataFrame, *, source: str | None,
                         shapes: tuple[np.ndarray, np.ndarray]) -> None:
        """Units of the frame that are stored already must be stored exactly so."""
        self.conn.execute(
            "CREATE TEMP TABLE unit_stage (row int, code text, parent_code text, level text, name text,"
            " geom geometry, area_m2 float8, z_min float8, z_max float8, attrs jsonb, restricted jsonb) ON COMMIT DROP"
        )
        fields = UnitFields(frame, source=source, shapes=shapes)
        pgcopy.copy_in(self.conn, "COPY unit_stage FROM STDIN (FORMAT BINARY)", fields.chunks(lambda r: [
            pgcopy.fixed(np.arange(r.start, r.stop), "int4"), fields.text("code", r), fields.text("parent_code", r),
            fields.text("level", r), *fields.content(r)]))
        changed = self.conn.execute(load_sql("unit_changed")).fetchone()
        if changed:
            raise DuplicateError(f"code {changed[1]!r} is already stored with a different {changed[2]}",
                                 source=source, row=changed[1], field="code")

    def _drop_unit_indexes(self) -> list[str]:
        """Drop the secondary indexes of ``ciu.unit``; returns their definitions to rebuild them."""
        indexes = self.conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'ciu' AND tablename = 'unit'"
            " AND indexname <> 'unit_pkey'").fetchall()
        for name, _ in indexes:
            self.conn.execute(sql.SQL("DROP INDEX ciu.{}").format(sql.Identifier(name)))
        return [definition for _, definition in indexes]

    def _copy_units(self, frame: pd.DataFrame, ids: np.ndarray, parent_id: np.ndarray, *, source_id: int | None,
                    source: str | None, shapes: tuple[np.ndarray, np.ndarray]) -> None:
        """Binary COPY of new units straight into ``ciu.unit``, chunk by chunk (:func:`ciu.pgcopy.copy_in`)."""
        fields = UnitFields(frame, source=source, shapes=shapes)

        def columns(rows: slice) -> list[pa.Array]:
            pid, n = parent_id[rows], rows.stop - rows.start
            return [pgcopy.fixed(ids[rows], "int8"), fields.text("code", rows), fields.text("level", rows),
                    pgcopy.fixed(np.maximum(pid, 0), "int8", null=pid < 0), *fields.content(rows),
                    pgcopy.fixed(np.full(n, source_id or 0), "int8", null=np.full(n, source_id is None))]

        pgcopy.copy_in(self.conn, "COPY ciu.unit (id, code, level, parent_id, name, geom, area_m2, z_min, z_max, attrs,"
                       " restricted, source_id) FROM STDIN (FORMAT BINARY)", fields.chunks(columns))

    def delete_subtree(self, code: str) -> int:
        """Delete a unit, everything below it and their observations."""
        with self.transaction():
            cur = self.conn.execute(
                "DELETE FROM ciu.unit WHERE code = %s OR code LIKE %s", (code, subtree_pattern(code))
            )
            self.conn.execute("SELECT ciu.refresh_series_extent()")
        return cur.rowcount

    def count_units(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT level, count(*) FROM ciu.unit GROUP BY level").fetchall()
        got = dict(rows)
        return {lv: int(got.get(lv, 0)) for lv in self.levels()}

    def unit_ids(self, codes: Sequence[str]) -> dict[str, int]:
        """Database ids of the given unit codes (codes not stored are left out)."""
        rows = self.conn.execute(
            "SELECT code, id FROM ciu.unit WHERE code = ANY(%s)", (list(codes),)
        ).fetchall()
        return dict(rows)

    def unit_rows(
        self,
        *,
        level: str | None = None,
        bbox: tuple[float, float, float, float] | None = None,
        within: str | None = None,
        codes: Sequence[str] | None = None,
        include_restricted: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Units as dicts with ``geometry`` as WKB, filtered by level, bbox and subtree."""
        where = [sql.SQL("TRUE")]
        params: dict[str, Any] = {}
        if level is not None:
            self.rank(level)
            where.append(sql.SQL("u.level = %(level)s"))
            params["level"] = level
        if bbox is not None:
            xmin, ymin, xmax, ymax = (float(v) for v in bbox)
            if not (xmin <= xmax and ymin <= ymax):
                raise ValidationError(f"bbox {bbox} must be (min lon, min lat, max lon, max lat)", field="bbox")
            where.append(sql.SQL("u.geom && ST_MakeEnvelope(%(x0)s, %(y0)s, %(x1)s, %(y1)s, 4326)"))
            params.update(x0=xmin, y0=ymin, x1=xmax, y1=ymax)
        if within is not None:
            self.unit_row(within)  # raises UnknownUnit
            where.append(sql.SQL("(u.code = %(within)s OR u.code LIKE %(within_like)s)"))
            params["within"] = within
            params["within_like"] = subtree_pattern(within)
        if codes is not None:
            where.append(sql.SQL("u.code = ANY(%(codes)s)"))
            params["codes"] = list(codes)
        restricted = sql.SQL(", u.restricted") if include_restricted else sql.SQL("")
        query = sql.SQL(
            "SELECT u.id, u.code, u.level, u.name, p.code AS parent_code, ST_AsBinary(u.geom) AS geometry,"
            " u.z_min, u.z_max, u.area_m2, u.attrs{restricted}"
            " FROM ciu.unit u LEFT JOIN ciu.unit p ON p.id = u.parent_id"
            " WHERE {where} ORDER BY u.code {limit} OFFSET %(offset)s"
        ).format(
            restricted=restricted,
            where=sql.SQL(" AND ").join(where),
            limit=sql.SQL("LIMIT %(limit)s") if limit is not None else sql.SQL(""),
        )
        params["offset"] = int(offset)
        if limit is not None:
            params["limit"] = int(limit)
        with self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(query, params).fetchall()

    def unit_row(self, code: str, *, include_restricted: bool = False) -> dict[str, Any]:
        rows = self.unit_rows(codes=[code], include_restricted=include_restricted)
        if not rows:
            raise UnknownUnit(f"no unit with code {code!r}")
        return rows[0]

    def child_codes(self, code: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT c.code FROM ciu.unit c JOIN ciu.unit p ON c.parent_id = p.id WHERE p.code = %s ORDER BY c.code",
            (code,),
        ).fetchall()
        return [r[0] for r in rows]

    def ancestor_codes(self, code: str) -> list[str]:
        """Codes of the ancestors of a unit, the parent first and the root last."""
        self.unit_row(code)
        parts = code.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]
        rows = self.conn.execute("SELECT code FROM ciu.unit WHERE code = ANY(%s)", (prefixes,)).fetchall()
        found = {r[0] for r in rows}
        return [p for p in prefixes if p in found]
