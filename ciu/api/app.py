"""The application factory of the prediction API.

>>> from ciu.api import create_app          # doctest: +SKIP
>>> app = create_app()                      # settings from CIU_API_* and CIU_DATABASE_URL
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from anyio import to_thread
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from ciu.api import problems
from ciu.api.deps import check_connection
from ciu.api.recorder import Metrics, Recorder, RecordingMiddleware
from ciu.api.routes import data, models, ogc, ops, scenarios, tiles, units
from ciu.api.scenarios import ScenarioRunner
from ciu.api.security import Authenticator
from ciu.api.settings import ApiSettings

ERROR_CODES = (401, 403, 404, 413, 422, 429, 503)


#: The API sends the same few statements over and over with different values; psycopg prepares
#: them. Generic plans are planned once per connection: the planner would otherwise re-plan
#: each call (about half a millisecond for a forecast read, more than running it).
GENERIC_PLANS = "-c plan_cache_mode=force_generic_plan"


def _pool(url: str, settings: ApiSettings, *, size: tuple[int, int] | None = None, timeout: float | None = None,
          name: str = "ciu-api") -> ConnectionPool:
    options = " ".join(filter(None, [conninfo_to_dict(url).get("options"), GENERIC_PLANS]))
    low, high = size or (settings.pool_min, settings.pool_max)
    return ConnectionPool(
        url, min_size=low, max_size=high, open=False,
        kwargs={"autocommit": True, "connect_timeout": max(1, int(settings.db_timeout_s)), "options": options},
        check=check_connection, timeout=timeout or settings.db_timeout_s, name=name,
        reconnect_timeout=0,
    )


def create_app(settings: ApiSettings | None = None, *, database_url: str | None = None) -> FastAPI:
    """Build the API.

    Parameters
    ----------
    settings
        API settings; read from ``CIU_API_*`` when ``None``.
    database_url
        A libpq URL of the twin's PostGIS; when ``None`` it comes from
        ``CIU_DATABASE_URL`` or the embedded cluster, at start-up.
    """
    settings = settings or ApiSettings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = database_url
        if url is None:
            from ciu.db import database_url as resolve

            url = resolve()
        pool = _pool(url, settings)
        pool.open(wait=False)
        # what is loaded by now (libraries, settings) lives as long as the worker: keep it out of
        # the collector's full passes, which otherwise pause a busy worker for tens of milliseconds
        gc.collect()
        gc.freeze()
        # endpoints run in worker threads and nearly all hold a connection: more threads than
        # connections would only queue on the pool while contending for the interpreter
        to_thread.current_default_thread_limiter().total_tokens = settings.pool_max
        app.state.pool = pool
        app.state.recorder = Recorder(pool, metrics, settings)
        app.state.recorder.start()
        # scenario workers get connections of their own: requests holding every connection of the main pool
        # while they wait for a scenario must not starve the workers that would answer them
        scenario_pool = _pool(url, settings, size=(0, settings.scenario_workers), timeout=settings.scenario_timeout_s,
                              name="ciu-scenarios")
        scenario_pool.open(wait=False)
        app.state.scenarios = ScenarioRunner(scenario_pool, workers=settings.scenario_workers,
                                             timeout_s=settings.scenario_timeout_s)
        try:
            yield
        finally:
            app.state.scenarios.close()
            scenario_pool.close()
            app.state.recorder.stop()
            pool.close()

    app = FastAPI(
        title=settings.title, version="1", lifespan=lifespan,
        description="Units, forecasts, risk, model runs, scenarios and vector tiles of a CIU Twin city. Errors are "
                    "`application/problem+json`. Send an API key in `X-API-Key`; without one you act as the "
                    "role `public` (public attributes, small counts withheld). See docs/api.md.",
        responses={code: {"description": problems.TITLES[code],
                          "content": {problems.PROBLEM_JSON: {"schema": problems.PROBLEM_SCHEMA}}}
                   for code in ERROR_CODES},
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.pool = None
    app.state.recorder = None
    app.state.levels = ()
    app.state.reused = {}
    app.state.auth = Authenticator(settings)
    problems.install(app)
    for router in (ogc.router, units.router, data.router, units.detail_router, models.router, scenarios.router,
                   tiles.router, ops.router):
        app.include_router(router)
    app.add_middleware(RecordingMiddleware, recorder_of=lambda: app.state.recorder, settings=settings,
                       metrics=metrics)
    return app


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of an app (as served at ``/openapi.json``)."""
    return get_openapi(title=app.title, version=app.version, routes=app.routes, description=app.description)
