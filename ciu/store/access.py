"""Access to the API: roles, hashed keys, the audit log and usage counters.

The only module that writes the SQL of these tables.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pyarrow as pa
from psycopg.rows import dict_row

from ciu import pgcopy
from ciu.errors import NotFound, ValidationError
from ciu.store.base import StoreBase, pg_micros


#: prefix of every token, so a leaked one is easy to recognise
TOKEN_PREFIX = "ciu_"


def hash_token(token: str) -> str:
    """The stored form of a token: its sha256 in hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Role:
    """What a key may see and do."""

    name: str
    restricted_attrs: tuple[str, ...] = ()
    exact_counts: bool = False
    can_acknowledge: bool = False
    can_audit: bool = False
    description: str = ""

    def allows(self, attribute: str) -> bool:
        """Whether this role may read the restricted attribute ``attribute``."""
        return "*" in self.restricted_attrs or attribute in self.restricted_attrs


@dataclass(frozen=True)
class ApiKey:
    """A stored key (never the token itself)."""

    id: int
    name: str
    role: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class AuditRecord:
    """One API call, as written to the audit log."""

    at: datetime
    key_id: int | None
    role: str
    method: str
    path: str
    query: str
    status: int
    units: int
    restricted_read: bool
    duration_ms: float


class Access(StoreBase):
    """Access to the API: roles, hashed keys, the audit log and usage counters."""

    def roles(self) -> dict[str, Role]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT name, restricted_attrs, exact_counts, can_acknowledge, can_audit, description"
                " FROM ciu.api_role ORDER BY name").fetchall()
        return {r["name"]: Role(**{**r, "restricted_attrs": tuple(r["restricted_attrs"])}) for r in rows}

    def create_key(self, *, name: str, role: str) -> tuple[ApiKey, str]:
        """Make a key for ``role``; returns the stored record and the token (shown once)."""
        if not name.strip():
            raise ValidationError("a key needs a name", field="name")
        roles = self.roles()
        if role not in roles:
            raise ValidationError(f"unknown role {role!r}; roles: {sorted(roles)}", field="role")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "INSERT INTO ciu.api_key (name, role, prefix, token_sha256) VALUES (%s, %s, %s, %s)"
                " RETURNING id, name, role, prefix, created_at, revoked_at",
                (name.strip(), role, token[:10], hash_token(token)),
            ).fetchone()
        return ApiKey(**row), token  # type: ignore[arg-type]

    def keys(self) -> list[ApiKey]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute("SELECT id, name, role, prefix, created_at, revoked_at FROM ciu.api_key ORDER BY id")
            return [ApiKey(**r) for r in rows.fetchall()]

    def revoke_key(self, key_id: int) -> None:
        row = self.conn.execute(
            "UPDATE ciu.api_key SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s RETURNING id", (key_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no API key with id {key_id}")

    def key_by_token(self, token: str) -> ApiKey | None:
        """The live key whose token this is, or ``None``."""
        with self.conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "SELECT id, name, role, prefix, created_at, revoked_at FROM ciu.api_key"
                " WHERE token_sha256 = %s AND revoked_at IS NULL", (hash_token(token),)
            ).fetchone()
        return ApiKey(**row) if row else None

    def write_audit(self, records: Sequence[AuditRecord]) -> None:
        """Append audit records (binary COPY, one transaction)."""
        if not records:
            return
        key_id = np.array([-1 if r.key_id is None else r.key_id for r in records], dtype=np.int64)
        columns = [
            pgcopy.fixed(pg_micros([r.at for r in records]), "timestamptz"),
            pgcopy.fixed(key_id, "int8", null=key_id < 0),
            *(pgcopy.varlen(pa.array([getattr(r, name) for r in records], type=pa.string()))
              for name in ("role", "method", "path", "query")),
            pgcopy.fixed(np.array([r.status for r in records]), "int4"),
            pgcopy.fixed(np.array([r.units for r in records]), "int4"),
            pgcopy.fixed(np.array([r.restricted_read for r in records]), "bool"),
            pgcopy.fixed(np.array([r.duration_ms for r in records]), "float8"),
        ]
        with self.conn.transaction():
            pgcopy.copy_in(self.conn, "COPY ciu.api_audit (at, key_id, role, method, path, query, status, units,"
                           " restricted_read, duration_ms) FROM STDIN (FORMAT BINARY)", [columns])

    def add_usage(self, counts: dict[tuple[int, str, date], tuple[int, int]]) -> None:
        """Add call and error counts per ``(key id, endpoint, day)`` (0 = no key)."""
        if not counts:
            return
        keys = list(counts)
        self.conn.execute(
            "INSERT INTO ciu.api_usage (key_id, endpoint, day, calls, errors)"
            " SELECT * FROM unnest(%s::bigint[], %s::text[], %s::date[], %s::bigint[], %s::bigint[])"
            " ON CONFLICT (key_id, endpoint, day) DO UPDATE"
            " SET calls = ciu.api_usage.calls + excluded.calls, errors = ciu.api_usage.errors + excluded.errors",
            ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
             [counts[k][0] for k in keys], [counts[k][1] for k in keys]),
        )

    def usage(self, *, key_id: int | None = None) -> list[dict[str, Any]]:
        """Calls per key and endpoint (all keys when ``key_id`` is ``None``)."""
        with self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                "SELECT u.key_id, k.name AS key_name, u.endpoint, sum(u.calls)::bigint AS calls,"
                " sum(u.errors)::bigint AS errors, min(u.day) AS first_day, max(u.day) AS last_day"
                " FROM ciu.api_usage u LEFT JOIN ciu.api_key k ON k.id = u.key_id"
                " WHERE %(key)s::bigint IS NULL OR u.key_id = %(key)s"
                " GROUP BY u.key_id, k.name, u.endpoint ORDER BY u.key_id, u.endpoint",
                {"key": key_id},
            ).fetchall()

    def audit(self, *, key_id: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                "SELECT id, at, key_id, role, method, path, query, status, units, restricted_read, duration_ms"
                " FROM ciu.api_audit WHERE %(key)s::bigint IS NULL OR key_id = %(key)s"
                " ORDER BY id DESC LIMIT %(limit)s", {"key": key_id, "limit": int(limit)},
            ).fetchall()
