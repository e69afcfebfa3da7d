"""Settings of the dashboard (``CIU_DASHBOARD_*``): nothing is read until :class:`DashboardSettings` is built."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_js_dir() -> Path:
    """Where ``npm ci`` put the JavaScript packages the dashboard serves (``viz/js/node_modules``)."""
    return Path(__file__).resolve().parent / "js" / "node_modules"


class DashboardSettings(BaseSettings):
    """How the dashboard serves, what it shows and who it shows it to.

    Every field is read from ``CIU_DASHBOARD_<NAME>`` (e.g. ``CIU_DASHBOARD_PORT``).
    """

    model_config = SettingsConfigDict(env_prefix="CIU_DASHBOARD_", extra="ignore")

    host: str = Field("127.0.0.1", description="interface to listen on")
    port: int = Field(8050, ge=0, le=65535)
    api_key: str | None = Field(None, description="API key whose role decides which restricted attributes are shown")
    variable: str = Field("people", description="the count variable shown and forecast (people, trips, …)")
    history_hours: int = Field(24, ge=1, le=24 * 14, description="hours of history on the time slider")
    peak_days: int = Field(28, ge=1, le=366, description="for a variable without capacities: days of history whose "
                                                         "peak hour of a unit is its 100 %")
    horizons: int = Field(12, ge=1, le=168, description="forecast hours for scenarios")
    refresh_s: float = Field(30.0, gt=0, description="how often the pages reload data without a page reload")
    play_ms: int = Field(900, ge=100, description="time between steps of the playback")
    operator: str = Field("dashboard", description="name recorded when an alert is acknowledged")
    js_dir: Path = Field(default_factory=default_js_dir, description="node_modules with deck.gl, maplibre, cesium")
