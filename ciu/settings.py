"""Settings, split by concern, read from ``CIU_*`` environment variables.

Nothing is built at import time: call the classes (or :func:`database_settings`)
when a setting is needed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_LEVELS: tuple[str, ...] = ("floor", "building", "grid", "district", "city")


def project_root() -> Path | None:
    """The source checkout this package runs from, when it runs from one."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").is_file() else None


def default_home() -> Path:
    """Where the embedded database and caches live by default.

    Inside the project checkout (``.ciu/``, ignored by git) when running from
    one, otherwise in the user's data directory.
    """
    root = project_root()
    if root is not None:
        return root / ".ciu"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ciu-twin"


class DatabaseSettings(BaseSettings):
    """Where the twin's PostGIS lives.

    With ``CIU_DATABASE_URL`` unset, CIU Twin runs its own private PostgreSQL +
    PostGIS cluster in ``CIU_HOME/pgdata`` on a unix socket.
    """

    model_config = SettingsConfigDict(env_prefix="CIU_", extra="ignore")

    database_url: str | None = Field(
        default=None, description="libpq URL of any PostGIS; unset = embedded cluster"
    )
    home: Path = Field(default_factory=default_home, description="data directory of the twin")
    pg_bindir: Path | None = Field(
        default=None, description="directory of initdb/pg_ctl; found automatically when unset"
    )
    db_name: str = Field(default="ciu", description="database name in the embedded cluster")
    db_port: int = Field(default=5432, description="port number naming the embedded socket")
    statement_timeout_ms: int = Field(default=0, ge=0)

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def socket_dir(self) -> Path:
        """A short directory for the unix socket (socket paths are limited to 107 bytes)."""
        digest = hashlib.sha256(str(self.home.resolve()).encode()).hexdigest()[:10]
        return Path("/tmp") / f"ciu-{digest}"


class TwinSettings(BaseSettings):
    """How the hierarchy is shaped.

    ``CIU_LEVELS`` is a JSON list of levels, bottom to top: names, or objects
    with a ``kind`` (storey, structure, area) and a key ``prefix`` for names
    whose kind is not known (see :mod:`ciu.levels`), e.g.
    ``'["floor", "building", "grid", "area", "street", "admin_district", "city"]'`` or
    ``'["room", {"name": "house", "kind": "structure", "prefix": "h"}, "parish", "city"]'``.
    """

    model_config = SettingsConfigDict(env_prefix="CIU_", extra="ignore")

    levels: tuple[str | dict[str, str], ...] | None = Field(
        default=None, description="levels bottom to top (names or {name, kind, prefix}); unset = keep")


def configured_levels() -> tuple[str | dict[str, str], ...] | None:
    """The level list asked for by ``CIU_LEVELS``, or ``None`` to keep the stored one (or the default)."""
    return TwinSettings().levels


def database_settings(**overrides: object) -> DatabaseSettings:
    """Read the database settings from the environment, with overrides."""
    return DatabaseSettings(**overrides)  # type: ignore[arg-type]
