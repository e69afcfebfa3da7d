"""Request dependencies: a pooled connection, the twin over it, and the caller."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import psycopg
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool

from ciu.api.security import Authenticator, Principal, presented_token
from ciu.api.settings import ApiSettings
from ciu.errors import DatabaseUnavailable
from ciu.store import ApiStore, Store
from ciu.twin import Twin

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="an API key made with `ciu keys create --role ROLE`")
RECENT_S = 1.0
#: most answers a worker keeps for reuse (the store is emptied when full)
REUSED_MAX = 4096
#: how endpoints that show one variable describe their default
VARIABLE_DEFAULT = "a registered variable; default: the one the twin forecasts (its newest trained model's target, else people)"
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


class Context:
    """What an endpoint works with: the twin, the API store, the caller and the settings.

    The pooled connection is taken when the endpoint first touches the twin
    (in the endpoint's worker thread) and given back when the call ends.
    """

    def __init__(self, request: Request, pool: ConnectionPool, who: Principal, settings: ApiSettings) -> None:
        self.request = request
        self.pool = pool
        self.who = who
        self.settings = settings
        self._conn: psycopg.Connection | None = None
        self._twin: Twin | None = None

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None:
            self._conn = self.pool.getconn(timeout=self.settings.db_timeout_s)
        return self._conn

    @property
    def twin(self) -> Twin:
        if self._twin is None:
            self._twin = Twin(Store(self.conn))
        return self._twin

    @property
    def api(self) -> ApiStore:
        return ApiStore(self.conn)

    def release(self, *, failed: bool) -> None:
        """Give the connection back to the pool (the pool throws away a broken one)."""
        conn, self._conn, self._twin = self._conn, None, None
        if conn is None:
            return
        if not failed:
            mark_used(conn)
        self.pool.putconn(conn)

    def reused(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """``compute()``, reused by this worker for ``reuse_s`` seconds under ``key``.

        For reads of data that changes when a model run or a load writes it,
        not per call: the newest run, a level's current and forecast values,
        the text of a stored-forecast answer. A noisy public count is then the
        same draw for everyone asking within that time, which also keeps
        repeated calls from averaging the noise away.
        """
        cache: dict = self.request.app.state.reused
        now = time.monotonic()
        hit = cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        found = compute()
        if self.settings.reuse_s > 0:
            if len(cache) >= REUSED_MAX:
                cache.clear()
            # expiries spread over the second half of the span, so that answers first read
            # together are not all read again together
            cache[key] = (found, now + self.settings.reuse_s * (0.5 + 0.5 * random.random()))
        return found

    def audit(self, *, units: int, restricted: bool = False) -> None:
        """Note in the audit log how many units the answer described."""
        self.request.state.audit = {"units": units, "restricted": restricted}

    def privacy(self) -> dict[str, Any]:
        """Parameters of the public-count protection for this caller."""
        return {"exact": self.who.role.exact_counts, "k": self.settings.k_threshold, "epsilon": self.settings.epsilon}


async def context(request: Request, key: Annotated[str | None, Depends(api_key_header)] = None,
                  auth: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None
                  ) -> AsyncIterator[Context]:
    """The caller, and a pooled connection for the length of the call.

    Runs on the event loop: a caller whose key and role are cached costs no
    thread hop and no database round trip; otherwise the lookup runs in a
    worker thread.
    """
    token = presented_token(request.headers)  # ``key`` and ``auth`` declare the schemes for OpenAPI
    client = request.client.host if request.client else "unknown"
    state = request.app.state
    pool = state.pool
    if pool is None:
        raise DatabaseUnavailable("the API has no database pool")
    authenticator: Authenticator = state.auth
    who = authenticator.cached_principal(token=token, client=client)
    if who is None:
        who = await run_in_threadpool(_principal, pool, authenticator, state.settings, token, client)
    request.state.principal = who
    ctx = Context(request, pool, who, state.settings)
    failed = True
    try:
        yield ctx
        failed = False
    finally:
        ctx.release(failed=failed)


def _principal(pool: ConnectionPool, authenticator: Authenticator, settings: ApiSettings, token: str | None,
               client: str) -> Principal:
    with pool.connection(timeout=settings.db_timeout_s) as conn:
        who = authenticator.principal(conn, token=token, client=client)
        mark_used(conn)
        return who


Ctx = Annotated[Context, Depends(context)]
