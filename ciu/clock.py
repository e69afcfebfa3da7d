"""The twin's clock rules, written once: times are UTC, and a forecast's horizons count steps from its issue time.

Times are stored and computed in UTC, and a time without a zone is UTC;
people see local time (the city unit's ``timezone`` attribute); every time
that enters the twin goes through :func:`utc` first. The forecast contract:
a forecast issued at ``issued_at`` may use the observations up to and
including ``issued_at``, and its horizon ``h`` is the step
``issued_at + h · step`` (:func:`forecast_times`); every forecaster, stored
forecast, scenario and page follows it. Pure: no SQL, no I/O.

>>> from ciu.clock import utc
>>> str(utc("2026-03-29 02:30"))
'2026-03-29 02:30:00+00:00'
>>> str(utc("2026-03-29T04:30+02:00"))
'2026-03-29 02:30:00+00:00'
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd


def utc(value: Any) -> pd.Timestamp:
    """``value`` (a datetime, a timestamp or ISO text) as a UTC timestamp; a value without a zone is taken as UTC."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def naive_utc(value: Any) -> pd.Timestamp:
    """:func:`utc` without its zone: the clock of the model's arrays (UTC, zone-free)."""
    return utc(value).tz_localize(None)


def utc_or_none(value: Any) -> datetime | None:
    """:func:`utc` as a ``datetime``, passing ``None`` through (optional query parameters)."""
    return None if value is None else utc(value).to_pydatetime()


def local_label(value: Any, tz: str, fmt: str = "%a %Y-%m-%d %H:%M") -> str:
    """A time as the people of a city in zone ``tz`` read it, with the zone's abbreviation.

    >>> local_label("2026-05-24 15:00", "Europe/Amsterdam")
    'Sun 2026-05-24 17:00 CEST'
    """
    ts = utc(value).tz_convert(tz)
    return f"{ts.strftime(fmt)} {ts.tzname()}"


def forecast_times(issued_at: Any, horizons: int, step: pd.Timedelta) -> pd.DatetimeIndex:
    """The times of horizons ``1 .. horizons`` of a forecast issued at ``issued_at`` (the forecast contract)."""
    issued = utc(issued_at)
    return pd.DatetimeIndex([issued + h * step for h in range(1, horizons + 1)])
