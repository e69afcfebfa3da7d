"""What the dashboard's pages read: one small interface, so that the pages never reach the twin themselves.

The pages (:mod:`ciu.viz.pages`) take a :class:`DataProvider`;
:class:`ciu.viz.data.DashboardData` is the one that reads a twin. A page shows
what the provider gives and sends back what the user does (an acknowledged
alert, a scenario), nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import geopandas as gpd
import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from ciu.store.access import Role
    from ciu.viz.settings import DashboardSettings


@dataclass(frozen=True)
class LevelFrame:
    """The shown variable for one level's units at every step of the time slider."""

    level: str
    units: gpd.GeoDataFrame
    times: pd.DatetimeIndex  # history steps first, then forecast steps
    n_history: int
    values: np.ndarray  # units × times
    reference: np.ndarray  # units: what 100 % means (capacity, or the unit's recent peak)
    tz: str = "UTC"  # the city's time zone: what the pages show times in

    @property
    def density(self) -> np.ndarray:
        ref = np.where(self.reference > 0, self.reference, np.nan)
        return self.values / ref[:, None]


@runtime_checkable
class DataProvider(Protocol):
    """Everything the pages read and do (see :class:`ciu.viz.data.DashboardData` for the meaning of each)."""

    settings: DashboardSettings

    @property
    def levels(self) -> list[str]: ...

    @property
    def bottom_level(self) -> str: ...

    @property
    def has_capacity(self) -> bool: ...

    @property
    def reference_name(self) -> str: ...

    @property
    def horizons(self) -> int: ...

    @property
    def timezone(self) -> str: ...

    def role(self) -> Role: ...

    def kind(self, level: str) -> str: ...

    def child_level(self, level: str) -> str | None: ...

    def all_units(self) -> gpd.GeoDataFrame: ...

    def units(self, level: str, *, within: str | None = None) -> gpd.GeoDataFrame: ...

    def capacity(self) -> pd.Series: ...

    def now(self) -> pd.Timestamp: ...

    def level_frame(self, level: str, *, within: str | None = None) -> LevelFrame: ...

    def unit_series(self, code: str) -> tuple[pd.DataFrame, pd.DataFrame]: ...

    def skill(self, level: str) -> dict[str, Any]: ...

    def alerts(self, *, open_only: bool = True, limit: int = 50) -> pd.DataFrame: ...

    def acknowledge(self, alert_id: int) -> None: ...

    def card(self, code: str, *, time: pd.Timestamp | None = None) -> dict[str, Any]: ...

    def scenario(self, overrides: dict[str, Any], *, horizons: int | None = None) -> dict[str, Any]: ...
