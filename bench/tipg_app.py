"""tipg, the peer of the API benchmark, pointed at the benchmark's PostGIS over its unix socket.

Runs in its own virtual environment (``.venv-tipg``). tipg takes a URL that
must name a host, while asyncpg lets that host win over a socket directory;
so the pool is opened on the socket given in ``CIU_BENCH_PGSOCKET``.
"""

from __future__ import annotations

import os

import asyncpg

_create_pool = asyncpg.create_pool


def _socket_pool(dsn: str | None = None, **kwargs: object):  # noqa: ANN202 - asyncpg's own type
    return _create_pool(host=os.environ["CIU_BENCH_PGSOCKET"], port=int(os.environ["CIU_BENCH_PGPORT"]),
                        user="postgres", database=os.environ["CIU_BENCH_PGDATABASE"], **kwargs)


asyncpg.create_pool = _socket_pool

from tipg.main import app  # noqa: E402  (after the pool is pointed at the socket)

__all__ = ["app"]
