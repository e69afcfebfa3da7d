"""Provenance: which file each load came from, and the data hash of the twin.

The only module that writes the SQL of these tables.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from psycopg.rows import dict_row

from ciu.domain import SourceRecord
from ciu.store.base import StoreBase


class Provenance(StoreBase):
    """Provenance: which file each load came from, and the data hash of the twin."""

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
