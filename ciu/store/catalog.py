"""Levels and variables: what the twin measures and how it rolls up.

The only module that writes the SQL of these tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict

from psycopg.rows import dict_row

from ciu.domain import Variable
from ciu.errors import ConflictError, UnknownLevel, UnknownVariable
from ciu.levels import Level
from ciu.store.base import StoreBase


class Catalog(StoreBase):
    """Levels and variables: what the twin measures and how it rolls up."""

    def level_specs(self) -> tuple[Level, ...]:
        """The levels (name, kind, key prefix), bottom to top."""
        if self._levels is None:
            self._levels = tuple(Level(*r) for r in self.conn.execute(
                "SELECT name, kind, prefix FROM ciu.level ORDER BY rank"))
        return self._levels

    def levels(self) -> tuple[str, ...]:
        """Level names, bottom to top."""
        return tuple(lv.name for lv in self.level_specs())

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
