"""Errors as ``application/problem+json`` (RFC 9457), from one map of CiuError types to status codes."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from ciu.errors import (
    CiuError,
    ConfigError,
    ConflictError,
    DatabaseUnavailable,
    DuplicateError,
    Forbidden,
    MigrationError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    TimeLimitExceeded,
    Unauthorized,
    ValidationError,
)

PROBLEM_JSON = "application/problem+json"

#: The one table from error class to HTTP status; the most specific class wins.
STATUS: dict[type[CiuError], int] = {
    ValidationError: 422,
    DuplicateError: 409,
    ConflictError: 409,
    NotFound: 404,
    Unauthorized: 401,
    Forbidden: 403,
    RateLimited: 429,
    PayloadTooLarge: 413,
    TimeLimitExceeded: 504,
    DatabaseUnavailable: 503,
    MigrationError: 503,
    ConfigError: 500,
    CiuError: 500,
}

TITLES = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
          413: "Payload Too Large", 422: "Invalid Input", 429: "Too Many Requests", 500: "Internal Error",
          503: "Service Unavailable", 504: "Time Limit Exceeded"}

#: The problem schema, for the OpenAPI document.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "instance": {"type": "string"},
        "field": {"type": ["string", "null"]}, "row": {"type": ["string", "null"]},
    },
    "required": ["type", "title", "status"],
}


def status_of(exc: CiuError) -> int:
    """The HTTP status of an error: its nearest class in :data:`STATUS`."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 500


def problem(status: int, detail: str, *, instance: str, kind: str | None = None,
            extra: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:ciu:problem:{kind or TITLES.get(status, 'error').lower().replace(' ', '-')}",
        "title": TITLES.get(status, "Error"), "status": status, "detail": detail, "instance": instance,
    }
    body.update(extra or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def ciu_problem(exc: CiuError, request: Request) -> JSONResponse:
    status = status_of(exc)
    extra: dict[str, Any] = {}
    if isinstance(exc, ValidationError):
        extra = {"field": exc.field, "row": exc.row if exc.row is None else str(exc.row)}
    headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if isinstance(exc, RateLimited) else None
    if isinstance(exc, Unauthorized):
        headers = {"WWW-Authenticate": 'ApiKey header="X-API-Key"'}
    detail = str(exc) if status < 500 or isinstance(exc, (DatabaseUnavailable, TimeLimitExceeded)) else type(exc).__name__
    if isinstance(exc, DatabaseUnavailable):
        detail = "the database cannot be reached; try again shortly"
    return problem(status, detail, instance=request.url.path, kind=type(exc).__name__, extra=extra, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem document."""

    @app.exception_handler(CiuError)
    async def _ciu(request: Request, exc: CiuError) -> JSONResponse:
        return ciu_problem(exc, request)

    @app.exception_handler(psycopg.OperationalError)
    async def _db(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        return ciu_problem(DatabaseUnavailable(str(exc)), request)

    @app.exception_handler(psycopg.DataError)
    async def _data(request: Request, exc: psycopg.DataError) -> JSONResponse:
        # a value PostgreSQL cannot take (e.g. a NUL character in a text parameter): the caller's input
        return ciu_problem(ValidationError(f"invalid input: {exc}"), request)

    @app.exception_handler(PoolTimeout)
    async def _pool(request: Request, exc: PoolTimeout) -> JSONResponse:
        return ciu_problem(DatabaseUnavailable(str(exc)), request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body", "header")]
        return ciu_problem(ValidationError(str(first.get("msg", "invalid")), field=".".join(loc) or None), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), instance=request.url.path,
                       headers=getattr(exc, "headers", None))
