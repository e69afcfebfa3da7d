"""Which database the twin uses: a URL, or the embedded cluster."""

from __future__ import annotations

from ciu.cluster import Cluster
from ciu.settings import DatabaseSettings


def database_url(settings: DatabaseSettings | None = None, *, start: bool = True) -> str:
    """The libpq URL of the twin's database.

    ``CIU_DATABASE_URL`` when set; otherwise the embedded cluster's database,
    started (and created) on demand when ``start`` is true.
    """
    settings = settings or DatabaseSettings()
    if settings.database_url:
        return settings.database_url
    cluster = Cluster.from_settings(settings)
    if start:
        cluster.start()
        cluster.ensure_database(settings.db_name)
    return cluster.url(settings.db_name)
