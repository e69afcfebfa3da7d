"""What every table family of the store shares: the connection, shipped queries, error translation, constants."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import resources
from typing import Any, Self

import numpy as np
import orjson
import pandas as pd
import psycopg
from psycopg import sql

from ciu.errors import DatabaseUnavailable, DuplicateError, HierarchyError, ValidationError
from ciu.levels import Level


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


def pg_micros(times: Any) -> np.ndarray:
    """Timestamps as int64 microseconds since PostgreSQL's epoch (binary ``timestamptz``)."""
    t = pd.DatetimeIndex(pd.to_datetime(times, utc=True)).tz_convert(None).as_unit("us")
    return t.asi8 - PG_EPOCH_NS // 1000


class StoreBase:
    """One psycopg connection to a migrated database, shared by every table family of the store."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self._levels: tuple[Level, ...] | None = None

    @classmethod
    def connect(cls, url: str, *, timeout: float = 10.0) -> Self:
        try:
            conn = psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(timeout)))
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"cannot connect to PostGIS: {exc}") from exc
        return cls(conn)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def statement_timeout(self, seconds: float) -> Iterator[None]:
        """Every statement inside is cancelled by the database after ``seconds`` (reset to none after)."""
        self.conn.execute("SELECT set_config('statement_timeout', %s, false)", (str(int(seconds * 1000)),))
        try:
            yield
        finally:
            self.conn.execute("SELECT set_config('statement_timeout', '0', false)")

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """One transaction; on any error the database is left as it was."""
        with self.conn.transaction():
            yield self.conn
