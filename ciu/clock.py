"""The twin's clock rule, written once: times are stored and computed in UTC, and a time without a zone is UTC.

People see local time (the city unit's ``timezone`` attribute); every
time that enters the twin goes through :func:`utc` first. Pure: no SQL, no I/O.

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


def utc_or_none(value: Any) -> datetime | None:
    """:func:`utc` as a ``datetime``, passing ``None`` through (optional query parameters)."""
    return None if value is None else utc(value).to_pydatetime()
