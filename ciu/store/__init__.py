"""The store layer: the only place in CIU Twin that speaks SQL.

Everything above it (the :class:`~ciu.twin.Twin`, ingest, models, the API)
calls these methods. Bulk loads go through binary ``COPY`` into a temporary
staging table, are checked there with set-based queries that name the bad row,
and are then moved into place in the same transaction: a load either lands
whole or leaves the database exactly as it was.

One module per table family, each the only one that writes its tables' SQL:
:mod:`ciu.store.catalog` (levels, variables), :mod:`ciu.store.provenance`
(sources), :mod:`ciu.store.units` (the unit tree), :mod:`ciu.store.observations`
(observations and roll-ups), :mod:`ciu.store.forecasts` (model runs,
predictions, alerts), :mod:`ciu.store.access` (API roles, keys, audit, usage)
and :mod:`ciu.store.publish` (what the API publishes, read fast: pages, JSON,
tiles); :mod:`ciu.store.base` holds the connection and what they share,
:mod:`ciu.store.encoding` the COPY encoding of units. :class:`Store` is the
twin's store, :class:`ApiStore` the API's. The domain types
(:class:`~ciu.domain.Variable`, ...) live in :mod:`ciu.domain`, without SQL.
"""

from __future__ import annotations

from ciu.store.access import Access
from ciu.store.base import QUANTILE_COLUMNS
from ciu.store.catalog import Catalog
from ciu.store.forecasts import Forecasts
from ciu.store.observations import Observations
from ciu.store.provenance import Provenance
from ciu.store.publish import Publish
from ciu.store.units import Units

__all__ = ["QUANTILE_COLUMNS", "ApiStore", "Store"]


class Store(Catalog, Provenance, Units, Observations, Forecasts):
    """All SQL of the twin, over one psycopg connection: every table family in one object.

    Parameters
    ----------
    conn
        An open psycopg 3 connection to a migrated database.
    """


class ApiStore(Access, Publish):
    """The API's store: access control and fast published reads, over one psycopg connection."""
