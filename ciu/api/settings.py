"""Settings of the API (``CIU_API_*``): nothing is read until :class:`ApiSettings` is built."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    """How the prediction API serves, guards and protects.

    Every field is read from ``CIU_API_<NAME>`` (e.g. ``CIU_API_PORT``).
    """

    model_config = SettingsConfigDict(env_prefix="CIU_API_", extra="ignore")

    title: str = "CIU Twin prediction API"
    host: str = Field("127.0.0.1", description="interface to listen on")
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes")
    pool_min: int = Field(1, ge=0, description="database connections kept open per worker")
    pool_max: int = Field(8, ge=1, description="most database connections per worker")
    db_timeout_s: float = Field(2.0, gt=0, description="wait for a healthy connection before answering 503")
    allow_anonymous: bool = Field(True, description="calls without a key act as the role 'public'")
    rate_limit_per_minute: int = Field(1200, ge=0, description="calls per key (or client address) and worker; 0 = off")
    rate_burst: int = Field(200, ge=1, description="calls a key may make at once before the rate applies")
    max_body_bytes: int = Field(64 * 1024, ge=256, description="largest request body accepted")
    k_threshold: float = Field(5.0, ge=0, description="public counts above 0 and below k are withheld")
    epsilon: float | None = Field(None, gt=0, description="Laplace noise for public counts (scale 1/ε); unset = none")
    page_default: int = Field(100, ge=1)
    page_max: int = Field(1000, ge=1)
    scenario_timeout_s: float = Field(30.0, gt=0, description="a scenario run that takes longer answers 504")
    scenario_workers: int = Field(2, ge=1, le=64, description="scenarios run side by side; others wait for a worker")
    scenario_max_horizons: int = Field(48, ge=1)
    scenario_max_units: int = Field(500, ge=1, description="most units listed in a scenario answer")
    key_cache_s: float = Field(30.0, ge=0, description="how long a key lookup is cached (revocation delay)")
    audit_flush_s: float = Field(1.0, gt=0, description="how often the audit log and usage are written")
    reuse_s: float = Field(5.0, ge=0, description="how long a worker reuses what it read for an answer (stored "
                           "forecasts, a tile's current and forecast values): answers are at most this many "
                           "seconds old; 0 = never")
