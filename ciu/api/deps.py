"""Request dependencies: a pooled connection, the twin over it, and the caller."""

from __future__ import annotations

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
bearer = HTTPBearer(auto_error=False, description="the same API key as a bearer token")


def connection(request: Request) -> Iterator[psycopg.Connection]:
    """A healthy connection from the pool for the length of the call."""
    pool = request.app.state.pool
    if pool is None:
        raise DatabaseUnavailable("the API has no database pool")
    with pool.connection(timeout=request.app.state.settings.db_timeout_s) as conn:
        yield conn


Conn = Annotated[psycopg.Connection, Depends(connection)]


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


def context(request: Request, conn: Conn, key: Annotated[str | None, Depends(api_key_header)] = None,
            auth: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None) -> Context:
    token = key or (auth.credentials if auth is not None else None)
    client = request.client.host if request.client else "unknown"
    who = request.app.state.auth.principal(conn, token=token, client=client)
    request.state.principal = who
    return Context(Twin(Store(conn)), ApiStore(conn), who, request.app.state.settings, request)


Ctx = Annotated[Context, Depends(context)]
