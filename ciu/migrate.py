"""Numbered SQL migrations for the ``ciu`` schema.

Migrations live in ``ciu/migrations/NNN_name.sql`` and are applied in order,
each in its own transaction, under an advisory lock. Re-running is a no-op.
They are the history; the current schema, one file per concern, is in
``ciu/schema/*.sql`` (units and the tree rule, observations, forecasts, access),
and a test checks that a fresh migration builds exactly that schema: a new
migration changes the sources in the same commit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg import sql

from ciu.errors import ConfigError, MigrationError
from ciu.levels import Level, hierarchy, level

_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 3240016401  # advisory lock id for migrations


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    """The migrations shipped with this version, in order."""
    found = []
    for entry in resources.files("ciu.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a number: {versions}")
    return found


def applied(conn: psycopg.Connection) -> list[int]:
    """Versions already applied to this database (empty for a fresh one)."""
    exists = conn.execute("SELECT to_regclass('ciu.migration') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return []
    return [row[0] for row in conn.execute("SELECT version FROM ciu.migration ORDER BY version")]


def migrate(conn: psycopg.Connection, *,
            levels: Sequence[str | Mapping[str, object] | Level] | None = None) -> list[int]:
    """Apply the missing migrations and make sure the level list is set.

    Parameters
    ----------
    conn
        An open connection (autocommit or not; each migration commits).
    levels
        Levels bottom to top: names, or objects with a kind and a key prefix
        (see :mod:`ciu.levels`). Seeded when the twin has none; when the twin
        already has a different list it may change only while no units exist.

    Returns
    -------
    list[int]
        The versions applied by this call (empty when already up to date).
    """
    from ciu.settings import DEFAULT_LEVELS

    done: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute("CREATE SCHEMA IF NOT EXISTS ciu")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS ciu.migration ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
    have = set(applied(conn))
    shipped = available()
    newest = max((m.version for m in shipped), default=0)
    if have and max(have) > newest:
        raise MigrationError(
            f"the database schema is at version {max(have)}, newer than this code ({newest}); upgrade ciu-twin"
        )
    for mig in shipped:
        if mig.version in have:
            continue
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                if conn.execute("SELECT 1 FROM ciu.migration WHERE version = %s", (mig.version,)).fetchone():
                    continue
                conn.execute(sql.SQL(mig.sql))  # type: ignore[arg-type]  # trusted file shipped with the package
                conn.execute("INSERT INTO ciu.migration (version, name) VALUES (%s, %s)", (mig.version, mig.name))
        except psycopg.Error as exc:
            raise MigrationError(f"migration {mig.version:03d}_{mig.name} failed: {exc}") from exc
        done.append(mig.version)
    ensure_levels(conn, levels, default=DEFAULT_LEVELS)
    return done


def ensure_levels(
    conn: psycopg.Connection, levels: Sequence[str | Mapping[str, object] | Level] | None, *,
    default: Sequence[str | Mapping[str, object] | Level],
) -> tuple[str, ...]:
    """Seed or check the levels (bottom to top): names, kinds and key prefixes."""
    with conn.transaction():
        stored = tuple(Level(*r) for r in conn.execute("SELECT name, kind, prefix FROM ciu.level ORDER BY rank"))
        wanted = hierarchy(levels) if levels is not None else (stored or hierarchy(default))
        if stored == wanted:
            return tuple(lv.name for lv in stored)
        if stored and conn.execute("SELECT EXISTS (SELECT 1 FROM ciu.unit)").fetchone()[0]:  # type: ignore[index]
            raise ConfigError(
                f"the twin already has levels {_described(stored)} and holds units; "
                f"cannot change them to {_described(wanted)}"
            )
        conn.execute("DELETE FROM ciu.level")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO ciu.level (name, rank, kind, prefix) VALUES (%s, %s, %s, %s)",
                            [(lv.name, i, lv.kind, lv.prefix) for i, lv in enumerate(wanted)])
    return tuple(lv.name for lv in wanted)


def _described(levels: Sequence[Level]) -> list[str]:
    return [lv.name if level(lv.name) == lv else f"{lv.name} ({lv.kind}, prefix {lv.prefix!r})" for lv in levels]
