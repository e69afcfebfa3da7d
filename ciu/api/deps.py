"""Request dependencies: a pooled connection, the twin over it, and the caller."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ciu.api.security import Principal
from ciu.api.settings import ApiSettings
from ciu.api_store import ApiStore
from ciu.errors import DatabaseUnavailable
from ciu.store import Store
from ciu.twin import Twin

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="an API key made with `ciu keys create --role ROLE`")
RECENT_S = 1.0
bearer = HTTPBearer(auto_error=False, description="the same API key as a bearer token")


def mark_used(conn: psycopg.Connection) -> None:
    """Note that ``conn`` just worked (see :func:`check_connection`)."""
    conn._ciu_used = time.monotonic()  # type: ignore[attr-defined]


def check_connection(conn: psycopg.Connection) -> None:
    """The pool's health check: a round trip, unless the connection worked in the last second.

    A connection that broke within that second fails its query, answers 503
    and is thrown away by the pool, so the API still recovers by itself.
    """
    if time.monotonic() - getattr(conn, "_ciu_used", 0.0) < RECENT_S:
        return
    conn.execute("")


@dataclass
class Context:
    """What an endpoint works with: the twin, the API store, the caller and the settings."""

    twin: Twin
    api: ApiStore
    who: Principal
    settings: ApiSettings
    request: Request

    @property
    def store(self) -> Store:
        return self.twin.store

    def audit(self, *, units: int, restricted: bool = False) -> None:
        """Note in the audit log how many units the answer described."""
        self.request.state.audit = {"units": units, "restricted": restricted}

    def privacy(self) -> dict[str, Any]:
        """Parameters of the public-count protection for this caller."""
        return {"exact": self.who.role.exact_counts, "k": self.settings.k_threshold, "epsilon": self.settings.epsilon}


def context(request: Request, key: Annotated[str | None, Depends(api_key_header)] = None,
            auth: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None) -> Iterator[Context]:
    """The caller and a pooled connection, for the length of the call."""
    token = key or (auth.credentials if auth is not None else None)
    client = request.client.host if request.client else "unknown"
    pool = request.app.state.pool
    if pool is None:
        raise DatabaseUnavailable("the API has no database pool")
    with pool.connection(timeout=request.app.state.settings.db_timeout_s) as conn:
        who = request.app.state.auth.principal(conn, token=token, client=client)
        request.state.principal = who
        yield Context(Twin(Store(conn)), ApiStore(conn), who, request.app.state.settings, request)
        mark_used(conn)


Ctx = Annotated[Context, Depends(context)]
