"""Model settings, read from ``CIU_MODEL_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ciu.settings import default_home


class ModelSettings(BaseSettings):
    """Where checkpoints go (when a forecast raises an alert is :class:`ciu.alerts.AlertSettings`)."""

    model_config = SettingsConfigDict(env_prefix="CIU_MODEL_", extra="ignore")

    dir: Path = Field(default_factory=lambda: default_home() / "models", description="checkpoint directory")
