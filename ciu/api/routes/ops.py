"""Health, Prometheus metrics, usage per key and endpoint, the audit log."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ciu.api.deps import Ctx
from ciu.api.schemas import Health, Usage
from ciu.store import ApiStore

router = APIRouter(tags=["operations"])


def _version() -> str:
    try:
        return version("ciu-twin")
    except PackageNotFoundError:
        return "unknown"


@router.get("/health", response_model=Health, summary="Is the API up and the database reachable?",
            responses={503: {"model": Health, "description": "the database cannot be reached"}})
def health(request: Request) -> JSONResponse:
    state = request.app.state
    ok = False
    try:
        with state.pool.connection(timeout=state.settings.db_timeout_s) as conn:
            ApiStore(conn).ping()
        ok = True
    except Exception:  # any failure to reach the database means "unavailable"
        ok = False
    state.metrics.db_up.set(1 if ok else 0)
    body = {"status": "ok" if ok else "unavailable", "database": ok, "version": _version()}
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response, summary="Prometheus metrics of this worker",
            responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}})
def metrics(request: Request) -> Response:
    state = request.app.state
    stats = state.pool.get_stats() if state.pool is not None else {}
    state.metrics.pool_size.set(stats.get("pool_size", 0))
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/usage", response_model=list[Usage], summary="Calls per key and endpoint",
            description="Your own key's calls; roles that may audit see every key (or one with `key_id`). "
                        "Key 0 stands for calls without a key.")
def usage(ctx: Ctx, key_id: Annotated[int | None, Query(ge=0, le=2**62)] = None) -> list[dict[str, Any]]:
    ctx.who.require("key")
    ctx.request.app.state.recorder.flush()
    if not ctx.who.role.can_audit:
        key_id = ctx.who.key_id
    rows = ctx.api.usage(key_id=key_id)
    for r in rows:
        r["first_day"], r["last_day"] = r["first_day"].isoformat(), r["last_day"].isoformat()
    ctx.audit(units=0)
    return rows


@router.get("/audit", response_model=list[dict[str, Any]], summary="The audit log: who read what (audit roles)")
def audit(ctx: Ctx, key_id: Annotated[int | None, Query(ge=0, le=2**62)] = None,
          limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> list[dict[str, Any]]:
    ctx.who.require("audit")
    ctx.request.app.state.recorder.flush()
    rows = ctx.api.audit(key_id=key_id, limit=limit)
    for r in rows:
        r["at"] = r["at"].isoformat()
    ctx.audit(units=0)
    return rows
