"""The store layer: the only place in CIU Twin that speaks SQL.

Everything above it (the :class:`~ciu.twin.Twin`, ingest, models, the API)
calls these methods. Bulk loads go through binary ``COPY`` into a temporary
staging table, are checked there with set-based queries that name the bad row,
and are then moved into place in the same transaction: a load either lands
whole or leaves the database exactly as it was.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import resources
from typing import Any, Literal

import numpy as np
import orjson
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from psycopg import sql
from psycopg.rows import dict_row

from ciu import pgcopy
from ciu import rollup as rollup_arrays
from ciu.errors import (
    ConflictError,
    DatabaseUnavailable,
    DuplicateError,
    HierarchyError,
    NotFound,
    UnknownLevel,
    UnknownUnit,
    UnknownVariable,
    ValidationError,
)
from ciu.rollup import Hierarchy
from ciu.skill import FORECAST_KINDS

CODE_SEGMENT = re.compile(r"^[a-z0-9_]+$")
CODE = re.compile(r"^[a-z0-9_]+(/[a-z0-9_]+)*$")
SPACES = ("physical", "social", "information", "external")
SCOPES = ("public", "restricted")
ROLLUPS = ("sum", "mean", "area_weighted_mean", "max", "min")
RESAMPLES = ("sum", "mean", "max", "min")
#: the quantile columns of a stored forecast
QUANTILE_COLUMNS = ("q10", "q50", "q90")
PREDICTION_COLUMNS = ["run_id", "code", "level", "variable", "issued_at", "horizon", "time", "value", "risk",
                      *QUANTILE_COLUMNS]
#: origin of time buckets: a Monday, so weekly buckets start on Mondays (UTC)
BUCKET_ORIGIN = datetime(2000, 1, 3, tzinfo=timezone.utc)
#: PostgreSQL's epoch, in which binary COPY carries timestamps
PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
PG_EPOCH_NS = int(pd.Timestamp(PG_EPOCH).value)

#: loads of at least this many new units (that also double the table) rebuild the indexes once
BULK_ROWS = 50_000
#: rows per chunk of a unit COPY stream (encoding one overlaps with sending the one before)
COPY_CHUNK_ROWS = 65_536
#: rows in the first chunk; chunks double up to COPY_CHUNK_ROWS, so the server starts reading early
FIRST_CHUNK_ROWS = 4_096
JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
UNIT_COLUMNS = ("code", "parent_code", "level", "name", "geometry", "z_min", "z_max", "attrs", "restricted")


def subtree_pattern(code: str) -> str:
    """A LIKE pattern for every unit below ``code`` (its code, a slash, anything)."""
    return code.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"


@functools.cache
def load_sql(name: str) -> str:
    """A query shipped in ``ciu/sql/NAME.sql`` (read once per process)."""
    return resources.files("ciu.sql").joinpath(f"{name}.sql").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Variable:
    """A registered variable: what it measures and how it rolls up the hierarchy.

    ``rollup`` says how a parent's value comes from its children's values
    (``sum`` for counts, ``area_weighted_mean`` for temperature, ``max`` for
    risk, ...); ``resample`` says how values combine over time.
    """

    name: str
    unit_of_measure: str
    space: Literal["physical", "social", "information", "external"]
    rollup: Literal["sum", "mean", "area_weighted_mean", "max", "min"]
    resample: Literal["sum", "mean", "max", "min"] = "mean"
    scope: Literal["public", "restricted"] = "public"
    description: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValidationError("must be lower-case letters, digits and _", row=self.name, field="name")
        for fname, allowed in (("space", SPACES), ("scope", SCOPES), ("rollup", ROLLUPS), ("resample", RESAMPLES)):
            if getattr(self, fname) not in allowed:
                raise ValidationError(
                    f"{getattr(self, fname)!r} is not one of {allowed}", row=self.name, field=fname
                )


@dataclass
class LoadReport:
    """What a load did."""

    inserted: int = 0
    unchanged: int = 0
    conflicts: int = 0
    source_id: int | None = None
    skipped_source: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SourceRecord:
    """Provenance of a load: which file, its checksum, which loader, when."""

    id: int
    uri: str
    sha256: str
    loader: str
    loader_version: str
    loaded_at: datetime
    rows: int
    params: dict[str, Any]


def interval_of(freq: str) -> pd.Timedelta:
    """A pandas-style frequency (``h``, ``D``, ``W``, ``15min``) as a fixed interval."""
    text = freq.strip()
    try:
        delta = pd.to_timedelta(text if text[:1].isdigit() else f"1{text}")
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"{freq!r} is not a fixed frequency such as 'h', 'D', 'W' or '15min'", field="freq") from exc
    if delta <= pd.Timedelta(0):
        raise ValidationError(f"{freq!r} must be a positive interval", field="freq")
    return delta


def _translate(exc: psycopg.Error, *, what: str = "unit") -> Exception:
    """Turn a database error into the matching CiuError."""
    diag = exc.diag
    constraint = diag.constraint_name or ""
    detail = diag.message_detail or ""
    primary = diag.message_primary or str(exc)
    if constraint == "unit_tree":
        return HierarchyError(primary, row=detail or None, field=diag.column_name or "parent_id")
    if constraint == "unit_geom_not_empty":
        return ValidationError("geometry is empty", row=detail or None, field="geometry")
    if constraint == "unit_code_format":
        return ValidationError("code is not URL-safe", row=detail or None, field="code")
    if constraint == "unit_code" or isinstance(exc, psycopg.errors.UniqueViolation):
        return DuplicateError(primary + (f" ({detail})" if detail else ""), field="code")
    if constraint == "observation_finite":
        return ValidationError("value is NaN or infinite", field="value")
    if isinstance(exc, psycopg.errors.CheckViolation):
        return ValidationError(primary + (f" ({detail})" if detail else ""), field=diag.column_name)
    if isinstance(exc, psycopg.OperationalError):
        return DatabaseUnavailable(str(exc))
    return ValidationError(f"{what} rejected by the database: {primary}")


class Store:
    """All SQL of the twin, over one psycopg connection.

    Parameters
    ----------
    conn
        An open psycopg 3 connection to a migrated database.
    """

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self._levels: tuple[str, ...] | None = None

    @classmethod
    def connect(cls, url: str, *, timeout: float = 10.0) -> Store:
        try:
            conn = psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(timeout)))
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"cannot connect to PostGIS: {exc}") from exc
        return cls(conn)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """One transaction; on any error the database is left as it was."""
        with self.conn.transaction():
            yield self.conn

    # ------------------------------------------------------------------
    # levels and variables
    # ------------------------------------------------------------------
    def levels(self) -> tuple[str, ...]:
        """Level names, bottom to top."""
        if self._levels is None:
            self._levels = tuple(r[0] for r in self.conn.execute("SELECT name FROM ciu.level ORDER BY rank"))
        return self._levels

    def rank(self, level: str) -> int:
        try:
            return self.levels().index(level)
        except ValueError:
            raise UnknownLevel(f"unknown level {level!r}; the twin's levels are {list(self.levels())}") from None

    def register_variables(self, variables: Iterable[Variable]) -> None:
        """Register variables; a name already registered must keep its definition."""
        with self.transaction():
            for var in variables:
                row = asdict(var)
                self.conn.execute(
                    "INSERT INTO ciu.variable (name, unit_of_measure, space, scope, rollup, resample, description)"
                    " VALUES (%(name)s, %(unit_of_measure)s, %(space)s, %(scope)s, %(rollup)s, %(resample)s,"
                    " %(description)s) ON CONFLICT (name) DO NOTHING",
                    row,
                )
                stored = self.variable(var.name)
                for key in ("unit_of_measure", "space", "scope", "rollup", "resample"):
                    if getattr(stored, key) != getattr(var, key):
                        raise ConflictError(
                            f"variable already registered with {key}={getattr(stored, key)!r}, "
                            f"not {getattr(var, key)!r}",
                            row=var.name,
                            field=key,
                        )

    def variables(self) -> list[Variable]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT name, unit_of_measure, space, rollup, resample, scope, description"
                " FROM ciu.variable ORDER BY name"
            ).fetchall()
        return [Variable(**r) for r in rows]

    def variable(self, name: str) -> Variable:
        with self.conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "SELECT name, unit_of_measure, space, rollup, resample, scope, description"
                " FROM ciu.variable WHERE name = %s",
                (name,),
            ).fetchone()
        if row is None:
            known = [v.name for v in self.variables()]
            raise UnknownVariable(f"unknown variable {name!r}; registered: {known}")
        return Variable(**row)

    def _variable_id(self, name: str) -> int:
        row = self.conn.execute("SELECT id FROM ciu.variable WHERE name = %s", (name,)).fetchone()
        if row is None:
            self.variable(name)  # raises with the list of known names
        return int(row[0])  # type: ignore[index]

    # ------------------------------------------------------------------
    # provenance
    # ------------------------------------------------------------------
    def find_source(self, sha256: str, loader: str, params: dict[str, Any] | None = None) -> SourceRecord | None:
        with self.conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "SELECT * FROM ciu.source WHERE sha256 = %s AND loader = %s AND params::text = %s::jsonb::text",
                (sha256, loader, json.dumps(params or {}, sort_keys=True)),
            ).fetchone()
        return SourceRecord(**row) if row else None

    def add_source(
        self, *, uri: str, sha256: str, loader: str, loader_version: str, params: dict[str, Any] | None = None
    ) -> int:
        """Record a source (inside the caller's transaction); returns its id."""
        row = self.conn.execute(
            "INSERT INTO ciu.source (uri, sha256, loader, loader_version, params)"
            " VALUES (%s, %s, %s, %s, %s::jsonb) RETURNING id",
            (uri, sha256, loader, loader_version, json.dumps(params or {}, sort_keys=True)),
        ).fetchone()
        return int(row[0])  # type: ignore[index]

    def set_source_rows(self, source_id: int, rows: int) -> None:
        self.conn.execute("UPDATE ciu.source SET rows = %s WHERE id = %s", (rows, source_id))

    def sources(self) -> list[SourceRecord]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute("SELECT * FROM ciu.source ORDER BY id").fetchall()
        return [SourceRecord(**r) for r in rows]

    # ------------------------------------------------------------------
    # units
    # ------------------------------------------------------------------
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

    # ------------------------------------------------------------------
    # observations
    # ------------------------------------------------------------------
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
            raise ValidationError(f"variable {frame['variable'].iloc[i]!r} is not registered",
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

    # ------------------------------------------------------------------
    # roll-up
    # ------------------------------------------------------------------
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

    # ------------------------------------------------------------------
    # model runs, predictions, alerts
    # ------------------------------------------------------------------
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

    def model_runs(self) -> pd.DataFrame:
        rows = self.conn.execute(
            "SELECT id, name, kind, created_at, status, params, data_hash, code_version, metrics, checkpoint"
            " FROM ciu.model_run ORDER BY id").fetchall()
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
        given) is used; without ``issued_at`` its latest issue time.
        """
        if run_id is None:
            vid = self._variable_id(variable) if variable is not None else None
            row = self.conn.execute(
                "SELECT max(run_id) FROM ciu.prediction WHERE scenario = %s"
                " AND (%s::smallint IS NULL OR variable_id = %s::smallint)", (scenario, vid, vid)).fetchone()
            run_id = row[0] if row else None  # type: ignore[index]
            if run_id is None:
                return pd.DataFrame(columns=PREDICTION_COLUMNS)
        where = [sql.SQL("p.run_id = %(run)s"), sql.SQL("p.scenario = %(scenario)s")]
        params: dict[str, Any] = {"run": run_id, "scenario": scenario, "offset": int(offset)}
        if issued_at is None:
            where.append(sql.SQL("p.issued_at = (SELECT max(issued_at) FROM ciu.prediction"
                                 " WHERE run_id = %(run)s AND scenario = %(scenario)s)"))
        else:
            where.append(sql.SQL("p.issued_at = %(issued)s"))
            params["issued"] = issued_at
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

    def write_alerts(self, frame: pd.DataFrame, *, run_id: int | None) -> int:
        """Raise alerts (columns ``code, kind, severity, time, risk, threshold, message``); repeats are ignored."""
        if frame.empty:
            return 0
        ids = self.unit_ids(pd.unique(frame["code"].astype(str)))
        n = 0
        with self.transaction():
            for r in frame.itertuples(index=False):
                if r.code not in ids:
                    raise ValidationError(f"unit {r.code!r} is not in the twin", row=r.code, field="code")
                cur = self.conn.execute(
                    "INSERT INTO ciu.alert (run_id, unit_id, kind, severity, time, risk, threshold, message)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (run_id, unit_id, kind, time) DO NOTHING",
                    (run_id, ids[r.code], r.kind, r.severity, r.time, float(r.risk), float(r.threshold), r.message),
                )
                n += cur.rowcount
        return n

    def alerts(self, *, open_only: bool = False, codes: Sequence[str] | None = None, level: str | None = None,
               limit: int = 1000) -> pd.DataFrame:
        where = [sql.SQL("TRUE")]
        params: dict[str, Any] = {"limit": int(limit)}
        if open_only:
            where.append(sql.SQL("a.acknowledged_at IS NULL"))
        if codes is not None:
            where.append(sql.SQL("u.code = ANY(%(codes)s)"))
            params["codes"] = list(codes)
        if level is not None:
            self.rank(level)
            where.append(sql.SQL("u.level = %(level)s"))
            params["level"] = level
        query = sql.SQL(
            "SELECT a.id, a.run_id, u.code, u.level, a.kind, a.severity, a.time, a.issued_at, a.risk, a.threshold,"
            " a.message, a.acknowledged_at, a.acknowledged_by FROM ciu.alert a JOIN ciu.unit u ON u.id = a.unit_id"
            " WHERE {} ORDER BY a.time DESC, a.risk DESC NULLS LAST, a.id LIMIT %(limit)s"
        ).format(sql.SQL(" AND ").join(where))
        rows = self.conn.execute(query, params).fetchall()
        return pd.DataFrame(rows, columns=["id", "run_id", "code", "level", "kind", "severity", "time", "issued_at",
                                           "risk", "threshold", "message", "acknowledged_at", "acknowledged_by"])

    def acknowledge_alert(self, alert_id: int, *, by: str) -> None:
        """Mark an alert acknowledged (idempotent: the first acknowledgement is kept)."""
        with self.transaction():
            row = self.conn.execute(
                "UPDATE ciu.alert SET acknowledged_at = coalesce(acknowledged_at, now()),"
                " acknowledged_by = coalesce(acknowledged_by, %s) WHERE id = %s RETURNING id", (by, alert_id)
            ).fetchone()
        if row is None:
            raise NotFound(f"no alert with id {alert_id}")

    def data_hash(self) -> str:
        """A short fingerprint of the stored units and observations (for model runs)."""
        row = self.conn.execute(
            "SELECT (SELECT count(*) FROM ciu.unit), (SELECT coalesce(max(id), 0) FROM ciu.unit),"
            " (SELECT coalesce(sum(n), 0) FROM ciu.series_extent), (SELECT min(tmin) FROM ciu.series_extent),"
            " (SELECT max(tmax) FROM ciu.series_extent), (SELECT string_agg(sha256, ',' ORDER BY id) FROM ciu.source)"
        ).fetchone()
        return hashlib.sha256(repr(row).encode()).hexdigest()[:16]

    def sources_per_level(self) -> list[dict[str, Any]]:
        """Per level and source: how many units and observations came from it (``level, kind, source_id, uri, n``)."""
        with self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                "SELECT x.level, x.kind, x.source_id, s.uri, x.n FROM ("
                " SELECT level, 'units' AS kind, source_id, count(*) AS n FROM ciu.unit"
                "  WHERE source_id IS NOT NULL GROUP BY 1, 3"
                " UNION ALL"
                " SELECT u.level, 'observations', o.source_id, count(*) FROM ciu.observation o"
                "  JOIN ciu.unit u ON u.id = o.unit_id WHERE o.source_id IS NOT NULL GROUP BY 1, 3"
                ") x JOIN ciu.source s ON s.id = x.source_id ORDER BY x.level, x.kind DESC, x.source_id"
            ).fetchall()


def geodesic_area(geoms: np.ndarray) -> np.ndarray:
    """Area of each geometry on the WGS84 ellipsoid (m²), vectorised.

    Coordinates are projected to a Lambert azimuthal equal-area projection
    centred on the batch, which keeps areas exact wherever the batch lies.
    """
    if len(geoms) == 0:
        return np.array([], dtype=float)
    from pyproj import Transformer

    xmin, ymin, xmax, ymax = shapely.total_bounds(geoms)
    laea = f"+proj=laea +lat_0={(ymin + ymax) / 2} +lon_0={(xmin + xmax) / 2} +ellps=WGS84 +units=m"
    tr = Transformer.from_crs("EPSG:4326", laea, always_xy=True)
    projected = shapely.transform(geoms, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    return shapely.area(projected)


def _positions(values: pa.Array, among: pa.Array) -> np.ndarray:
    """For each value, its position in ``among`` (-1 where it is null or not there), by hashing."""
    return pc.index_in(values, value_set=among).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _strings(values: pd.Series) -> pa.Array:
    """A column as an Arrow string array, missing values null (values that are not text as their ``str``)."""
    try:
        arr = pa.array(values, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        arr = pa.array(values.where(values.isna(), values.astype(str)), type=pa.string(), from_pandas=True)
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def pg_micros(times: Any) -> np.ndarray:
    """Timestamps as int64 microseconds since PostgreSQL's epoch (binary ``timestamptz``)."""
    t = pd.DatetimeIndex(pd.to_datetime(times, utc=True)).tz_convert(None).as_unit("us")
    return t.asi8 - PG_EPOCH_NS // 1000


def distinct_geometries(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct geometries of an array and, per element, its index among them.

    Floors repeat their building's footprint, so checks, areas and WKB are
    computed once per footprint rather than once per floor. Elements that are
    the same object are found first (free), then equal shapes among the rest
    by their WKB (a frame read from a file holds one object per row).
    """
    keys = np.fromiter(map(id, geoms), dtype=np.int64, count=len(geoms))
    by_object, objects = pd.factorize(keys)
    first = _first_positions(by_object, len(objects))
    distinct = geoms[first]
    if len(distinct) > 1:
        encoded = pa.array(shapely.to_wkb(distinct), type=pa.binary()).dictionary_encode()
        by_shape = encoded.indices.to_numpy()
        if len(encoded.dictionary) < len(distinct):
            distinct = distinct[_first_positions(by_shape, len(encoded.dictionary))]
            by_object = by_shape[by_object]
    return distinct, by_object


def _first_positions(codes: np.ndarray, k: int) -> np.ndarray:
    """For codes 0..k-1, the first position where each occurs."""
    first = np.empty(k, dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
    return first


class UnitFields:
    """Columns of a unit frame as binary COPY fields, for one slice of rows at a time.

    Everything is encoded per slice, so that encoding a chunk overlaps with
    the server reading the one before. Geometry (extended WKB, SRID 4326)
    and the ellipsoidal area are computed once per distinct geometry, in the
    first slice that holds it.
    """

    def __init__(self, frame: pd.DataFrame, *, source: str | None, shapes: tuple[np.ndarray, np.ndarray]) -> None:
        self.frame = frame.reset_index(drop=True)
        self.source = source
        # the frame's distinct geometries and each row's index among them (Store.check_units finds them)
        self._distinct, self._inverse = shapes
        self._ewkb = np.empty(len(self._distinct), dtype=object)
        self._area = np.zeros(len(self._distinct))
        self._encoded = np.zeros(len(self._distinct), dtype=bool)

    def chunks(self, columns: Callable[[slice], list[pa.Array]]) -> Iterator[list[pa.Array]]:
        """``columns(s)`` for consecutive slices ``s``: small at first, doubling up to :data:`COPY_CHUNK_ROWS`."""
        start, size, n = 0, FIRST_CHUNK_ROWS, len(self.frame)
        while start < n:
            stop = min(start + size, n)
            yield columns(slice(start, stop))
            start, size = stop, min(2 * size, COPY_CHUNK_ROWS)

    def _shapes(self, rows: slice) -> np.ndarray:
        """Each row's index among the distinct geometries, encoding those not encoded yet."""
        where = self._inverse[rows]
        new = np.unique(where[~self._encoded[where]])
        if len(new):
            shapes = self._distinct[new]
            self._ewkb[new] = shapely.to_wkb(shapely.set_srid(shapes, 4326), include_srid=True)
            self._area[new] = geodesic_area(shapes)
            self._encoded[new] = True
        return where

    def text(self, name: str, rows: slice) -> pa.Array:
        n = rows.stop - rows.start
        if name not in self.frame.columns:
            return pgcopy.varlen(pa.nulls(n, pa.string()))
        return pgcopy.varlen(_strings(self.frame[name].iloc[rows]))

    def number(self, name: str, rows: slice) -> pa.Array:
        n = rows.stop - rows.start
        if name not in self.frame.columns:
            return pgcopy.fixed(np.zeros(n), "float8", null=np.ones(n, dtype=bool))
        values = pd.to_numeric(self.frame[name].iloc[rows]).to_numpy(dtype=float)
        return pgcopy.fixed(values, "float8", null=np.isnan(values))

    def json(self, name: str, rows: slice) -> pa.Array:
        codes = self.frame["code"].iloc[rows]  # to name a row in an error
        if name not in self.frame.columns:
            objects: list[Any] = [{}] * len(codes)
        else:
            values = self.frame[name].iloc[rows].to_numpy(dtype=object)
            objects = list(values)
            if not _finite_mappings(objects):  # otherwise checked (and converted) row by row, naming the row
                objects = [_json_mapping(v, row=c, field=name, source=self.source) for v, c in zip(values, codes)]
        try:
            texts = pgcopy.json_texts(objects, default=_json_default, option=JSON_OPTIONS)
        except TypeError:
            for obj, code in zip(objects, codes):  # name the row that holds what JSON cannot
                _json_text(obj, row=code, field=name, source=self.source)
            raise
        return pgcopy.varlen(texts, prefix=b"\x01")  # jsonb's binary form: version 1, then the text

    def content(self, rows: slice) -> list[pa.Array]:
        """Name, geometry, area, z-range, attributes and restricted attributes."""
        where = self._shapes(rows)
        return [self.text("name", rows), pgcopy.varlen(pa.array(self._ewkb[where], type=pa.large_binary())),
                pgcopy.fixed(self._area[where], "float8"), self.number("z_min", rows), self.number("z_max", rows),
                self.json("attrs", rows), self.json("restricted", rows)]


def _finite_mappings(objects: list[Any]) -> bool:
    """Whether every object is a dict whose top-level numbers are all finite (the usual case, in one pass)."""
    if not all(o.__class__ is dict for o in objects):
        return False
    numbers = np.fromiter((x for d in objects for x in d.values() if isinstance(x, (float, np.floating))), dtype=float)
    return bool(np.isfinite(numbers).all())


def _json_mapping(value: Any, *, row: Any, field: str, source: str | None) -> dict:
    """An attribute mapping, checked: a mapping (or JSON text of one; missing is empty) with no NaN or infinity."""
    if value.__class__ is not dict:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return {}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValidationError(f"is not JSON: {exc}", source=source, row=row, field=field) from exc
        if not isinstance(value, dict):
            raise ValidationError("must be a mapping of attribute names to values", source=source, row=row,
                                  field=field)
    for key, item in value.items():
        if isinstance(item, (float, np.floating)) and not math.isfinite(item):
            raise ValidationError(f"attribute {key!r} is NaN or infinite", source=source, row=row, field=field)
    return value


def _json_text(value: dict, *, row: Any, field: str, source: str | None) -> str:
    """A checked mapping as JSON text, naming the row when a value is not JSON."""
    try:
        return orjson.dumps(value, default=_json_default, option=JSON_OPTIONS).decode()
    except TypeError as exc:
        raise ValidationError(f"holds a value that is not JSON ({exc})", source=source, row=row, field=field) from exc


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (datetime, pd.Timestamp)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _frame(conn: psycopg.Connection, query: sql.Composable, params: dict[str, Any], columns: list[str]) -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute(query, params)
        rows = cur.fetchall()
    frame = pd.DataFrame(rows, columns=columns)
    if "time" in frame.columns:
        frame["time"] = pd.to_datetime(frame["time"], utc=True).dt.as_unit("us")
    if "value" in frame.columns:
        frame["value"] = frame["value"].astype(float)
    return frame
