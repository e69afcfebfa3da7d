"""Who is calling: API keys (stored hashed), roles, rate limits and restricted attributes."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from ciu.api.settings import ApiSettings
from ciu.errors import Forbidden, RateLimited, Unauthorized
from ciu.store import ApiStore
from ciu.store.access import ApiKey, Role, hash_token

PUBLIC_ROLE = "public"


@dataclass(frozen=True)
class Principal:
    """The caller of one request."""

    key_id: int | None
    key_name: str | None
    role: Role
    client: str

    @property
    def label(self) -> str:
        return self.key_name or f"anonymous@{self.client}"

    def require(self, what: str) -> None:
        """Raise :class:`Forbidden` unless the role may do ``what`` (``acknowledge`` or ``audit``)."""
        allowed = {"acknowledge": self.role.can_acknowledge, "audit": self.role.can_audit,
                   "key": self.key_id is not None}[what]
        if not allowed:
            raise Forbidden(f"role {self.role.name!r} may not {what}" if what != "key"
                            else "this call needs an API key (header X-API-Key)")

    def visible(self, restricted: dict[str, Any] | None) -> dict[str, Any]:
        """The restricted attributes this caller may see."""
        if not restricted:
            return {}
        return {k: v for k, v in restricted.items() if self.role.allows(k)}

    @property
    def sees_restricted(self) -> bool:
        return bool(self.role.restricted_attrs)


class TokenBucket:
    """Per-caller token buckets: ``rate`` calls a minute, ``burst`` at once (thread-safe)."""

    def __init__(self, *, per_minute: int, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, who: str) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        with self._lock:
            tokens, last = self._state.get(who, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._state[who] = (tokens, now)
                raise RateLimited(f"more than {self.rate * 60:.0f} calls a minute; slow down",
                                  retry_after=(1.0 - tokens) / self.rate)
            self._state[who] = (tokens - 1.0, now)


def presented_token(headers: Mapping[str, str]) -> str | None:
    """The API key a request presents (``X-API-Key``, else ``Authorization: Bearer``); ``None`` when it presents none.

    Whatever is presented as a credential must be a key: an empty ``X-API-Key``,
    another ``Authorization`` scheme (``Basic …``) or a bare ``Bearer`` is
    refused (401), never served as anonymous.
    """
    key = headers.get("x-api-key")
    if key is not None:
        if not key.strip():
            raise Unauthorized("the X-API-Key header is empty; send an API key or leave the header out")
        return key.strip()
    auth = headers.get("authorization")
    if auth is None:
        return None
    scheme, _, token = auth.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthorized(f"the Authorization scheme {scheme or '(none)'!r} is not accepted; send the API key as "
                           "'Authorization: Bearer KEY' or in X-API-Key")
    if not token.strip():
        raise Unauthorized("'Authorization: Bearer' carries no key")
    return token.strip()


class Authenticator:
    """Turns the ``X-API-Key`` header (or ``Authorization: Bearer``) into a :class:`Principal`."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self.bucket = TokenBucket(per_minute=settings.rate_limit_per_minute, burst=settings.rate_burst)
        self._keys: dict[str, tuple[ApiKey | None, float]] = {}
        self._roles: tuple[dict[str, Role], float] | None = None
        self._lock = threading.Lock()

    def roles(self, conn: psycopg.Connection) -> dict[str, Role]:
        now = time.monotonic()
        cached = self._roles
        if cached is None or cached[1] < now:
            roles = ApiStore(conn).roles()
            self._roles = (roles, now + self.settings.key_cache_s)
            return roles
        return cached[0]

    def key(self, conn: psycopg.Connection, token: str) -> ApiKey | None:
        digest = hash_token(token)
        now = time.monotonic()
        hit = self._keys.get(digest)
        if hit is not None and hit[1] >= now:
            return hit[0]
        found = ApiStore(conn).key_by_token(token)
        with self._lock:
            if len(self._keys) > 10_000:
                self._keys.clear()
            self._keys[digest] = (found, now + self.settings.key_cache_s)
        return found

    def principal(self, conn: psycopg.Connection, *, token: str | None, client: str) -> Principal:
        """The caller, reading keys and roles from the database when they are not cached."""
        roles = self.roles(conn)
        return self._admit(roles, self.key(conn, token) if token else None, token=token, client=client)

    def cached_principal(self, *, token: str | None, client: str) -> Principal | None:
        """The caller from the caches alone; ``None`` when the database must be asked."""
        now = time.monotonic()
        roles = self._roles
        if roles is None or roles[1] < now:
            return None
        key = None
        if token:
            hit = self._keys.get(hash_token(token))
            if hit is None or hit[1] < now:
                return None
            key = hit[0]
        return self._admit(roles[0], key, token=token, client=client)

    def _admit(self, roles: dict[str, Role], key: ApiKey | None, *, token: str | None, client: str) -> Principal:
        """Check the key and the caller's rate limit."""
        if token:
            if key is None:
                raise Unauthorized("unknown or revoked API key")
            who = Principal(key.id, key.name, roles[key.role], client)
            self.bucket.take(f"key:{key.id}")
            return who
        if not self.settings.allow_anonymous:
            raise Unauthorized("this API needs a key (header X-API-Key)")
        self.bucket.take(f"ip:{client}")
        return Principal(None, None, roles[PUBLIC_ROLE], client)
