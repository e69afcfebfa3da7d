"""Model settings, read from ``CIU_MODEL_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ciu.settings import default_home


class ModelSettings(BaseSettings):
    """Where checkpoints go and when a forecast raises an alert."""

    model_config = SettingsConfigDict(env_prefix="CIU_MODEL_", extra="ignore")

    dir: Path = Field(default_factory=lambda: default_home() / "models", description="checkpoint directory")
    alert_threshold: float = Field(0.8, ge=0, le=1, description="risk at or above which an alert is raised")
    critical_threshold: float = Field(0.95, ge=0, le=1, description="risk at or above which an alert is critical")
