"""Audit log, usage counters, Prometheus metrics and the request size limit, as one ASGI middleware.

Audit rows and usage counts are buffered in memory and written to PostGIS in
batches by a background thread, so that recording costs a call microseconds.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from datetime import datetime, timezone
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from psycopg_pool import ConnectionPool

from ciu.api.settings import ApiSettings
from ciu.store import ApiStore
from ciu.store.access import AuditRecord

MAX_BUFFER = 100_000


class Metrics:
    """The API's Prometheus metrics, in their own registry (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("ciu_api_requests", "API calls", ["endpoint", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("ciu_api_request_seconds", "time to answer a call", ["endpoint"],
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
                                 registry=self.registry)
        self.audit_dropped = Counter("ciu_api_audit_dropped", "audit rows dropped (buffer full)",
                                     registry=self.registry)
        self.db_up = Gauge("ciu_api_database_up", "1 when the last database check succeeded",
                           registry=self.registry)
        self.pool_size = Gauge("ciu_api_pool_connections", "database connections held", registry=self.registry)


class Recorder:
    """Buffers audit records and usage counts; :meth:`flush` writes them."""

    def __init__(self, pool: ConnectionPool, metrics: Metrics, settings: ApiSettings) -> None:
        self.pool = pool
        self.metrics = metrics
        self.settings = settings
        self._audit: deque[AuditRecord] = deque()
        self._usage: dict[tuple[int, str, Any], list[int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, rec: AuditRecord, endpoint: str) -> None:
        key = (rec.key_id or 0, endpoint, rec.at.date())
        with self._lock:
            if len(self._audit) >= MAX_BUFFER:
                self._audit.popleft()
                self.metrics.audit_dropped.inc()
            self._audit.append(rec)
            counts = self._usage.setdefault(key, [0, 0])
            counts[0] += 1
            counts[1] += rec.status >= 400

    def flush(self) -> None:
        """Write what is buffered; on a database error keep it for the next try.

        A batch the database refuses for its content (not for being down) is
        written row by row, so one row it cannot take (none should remain, see
        :func:`storable`) costs that row, counted as dropped, and never holds
        back the rows after it.
        """
        with self._lock:
            audit, self._audit = list(self._audit), deque()
            usage, self._usage = self._usage, {}
        if not audit and not usage:
            return
        try:
            with self.pool.connection(timeout=self.settings.db_timeout_s) as conn:
                store = ApiStore(conn)
                try:
                    store.write_audit(audit)
                except psycopg.DataError:
                    for rec in audit:
                        try:
                            store.write_audit([rec])
                        except psycopg.DataError:
                            self.metrics.audit_dropped.inc()
                store.add_usage({k: (v[0], v[1]) for k, v in usage.items()})
        except Exception:
            with self._lock:
                self._audit.extendleft(reversed(audit[-MAX_BUFFER:]))
                for k, v in usage.items():
                    counts = self._usage.setdefault(k, [0, 0])
                    counts[0] += v[0]
                    counts[1] += v[1]

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.settings.audit_flush_s):
                self.flush()

        self._thread = threading.Thread(target=loop, name="ciu-api-recorder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()


class RecordingMiddleware:
    """Pure ASGI middleware: body size limit, metrics, audit and usage of every call."""

    def __init__(self, app: Any, *, recorder_of: Any, settings: ApiSettings, metrics: Metrics) -> None:
        self.app = app
        self.recorder_of = recorder_of
        self.settings = settings
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}
        too_large = await self._too_large(scope, receive)
        if too_large is not None:
            receive = too_large

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            if scope.get("ciu_too_large"):
                await self._reject(send_wrapper, scope)
            else:
                await self.app(scope, receive, send_wrapper)
        finally:
            self._after(scope, status["code"], time.perf_counter() - started)

    async def _too_large(self, scope: dict[str, Any], receive: Any) -> Any:
        """Read a request body up to the limit; returns a replaying ``receive`` (or marks the scope)."""
        limit = self.settings.max_body_bytes
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    if int(value) > limit:
                        scope["ciu_too_large"] = True
                        return None
                except ValueError:
                    scope["ciu_too_large"] = True
                    return None
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            return None
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                scope["ciu_too_large"] = True
                return None
            chunks.append(body)
            more = message.get("more_body", False)
        whole = b"".join(chunks)
        sent = {"done": False}

        async def replay() -> dict[str, Any]:
            if not sent["done"]:
                sent["done"] = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()

        return replay

    async def _reject(self, send: Any, scope: dict[str, Any]) -> None:
        body = json.dumps({"type": "urn:ciu:problem:PayloadTooLarge", "title": "Payload Too Large", "status": 413,
                           "detail": f"request body larger than {self.settings.max_body_bytes} bytes",
                           "instance": scope.get("path", "")}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/problem+json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _after(self, scope: dict[str, Any], status: int, seconds: float) -> None:
        route = scope.get("route")
        endpoint = getattr(route, "path", None) or "unmatched"
        self.metrics.requests.labels(endpoint, scope.get("method", ""), str(status)).inc()
        self.metrics.latency.labels(endpoint).observe(seconds)
        recorder = self.recorder_of()
        if recorder is None or endpoint in ("/metrics", "/health"):
            return
        state = scope.get("state") or {}
        principal = state.get("principal")
        audit = state.get("audit") or {}
        recorder.record(AuditRecord(
            at=datetime.now(timezone.utc), key_id=getattr(principal, "key_id", None),
            role=principal.role.name if principal is not None else "unknown",
            method=storable(scope.get("method", ""), 16), path=storable(scope.get("path", ""), 500),
            query=storable(scope.get("query_string", b"").decode("latin-1"), 1000), status=status,
            units=int(audit.get("units", 0)), restricted_read=bool(audit.get("restricted", False)),
            duration_ms=seconds * 1000.0,
        ), endpoint)


def storable(text: str, most: int) -> str:
    """``text`` as a database text column takes it: NUL characters and what UTF-8 cannot encode (a lone
    surrogate from a percent-decoded path) escaped, at most ``most`` characters."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")[:most]
