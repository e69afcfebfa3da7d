"""What-if scenarios as a service of the twin: when a scenario is issued and what it changed.

A scenario is two forecasts from the same model and issue time, the baseline
and one with overrides (see :mod:`ciu.forecast`); :func:`compare` lines them up
and keeps the units that changed, the upper levels first. No HTTP here: the
API's route validates the request and shapes the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from ciu.clock import utc
from ciu.errors import ValidationError
from ciu.twin import Twin

#: the columns that identify one forecast value
KEY = ["code", "level", "variable", "horizon", "time"]


def issue_time(twin: Twin, variable: str, issued_at: Any | None) -> pd.Timestamp:
    """The hour a scenario is issued at: ``issued_at`` (floored to the hour), else the last observed hour."""
    if issued_at is not None:
        return utc(issued_at).floor("h")
    hour = twin.last_observed_hour(variable)
    if hour is None:
        raise ValidationError(f"the twin holds no observations of {variable!r} to forecast from", field="issued_at")
    return hour


@dataclass(frozen=True)
class Comparison:
    """A scenario beside its baseline.

    ``rows``: the forecasts of the chosen units (``value_b``/``value_s``,
    ``risk_b``/``risk_s`` and ``delta``), in the order chosen; ``totals``:
    baseline and scenario summed per level and horizon, top level first;
    ``affected``: how many units changed (``truncated`` when more than were kept).
    """

    rows: pd.DataFrame
    totals: pd.DataFrame
    affected: int
    truncated: bool


def compare(base: pd.DataFrame, scenario: pd.DataFrame, *, levels: list[str], keep_levels: list[str] | None = None,
            max_units: int) -> Comparison:
    """Line up a scenario with its baseline and keep at most ``max_units`` changed units.

    ``levels`` are the twin's levels bottom to top: upper levels come first,
    then the largest change; ``keep_levels`` limits the levels shown.
    """
    merged = base.merge(scenario, on=KEY, suffixes=("_b", "_s"))
    if keep_levels:
        merged = merged[merged["level"].isin(keep_levels)]
    merged["delta"] = merged["value_s"] - merged["value_b"]
    changed = (merged["delta"].abs() > 1e-9) | ((merged["risk_s"] - merged["risk_b"]).abs() > 1e-12)
    rank = {lv: i for i, lv in enumerate(levels)}
    per_unit = merged[changed].groupby(["code", "level"])["delta"].apply(lambda d: float(d.abs().max())).reset_index()
    per_unit["rank"] = per_unit["level"].map(rank)
    per_unit = per_unit.sort_values(["rank", "delta", "code"], ascending=[False, False, True])
    chosen = per_unit["code"].head(max_units)
    rows = merged[merged["code"].isin(set(chosen))].copy()
    rows["order"] = rows["code"].map({c: i for i, c in enumerate(chosen)})
    rows = rows.sort_values(["order", "horizon"])
    totals = merged.groupby(["level", "horizon"])[["value_b", "value_s"]].sum().reset_index()
    totals["rank"] = totals["level"].map(rank)
    totals = totals.sort_values(["rank", "horizon"], ascending=[False, True])
    return Comparison(rows, totals, int(len(per_unit)), bool(len(per_unit) > len(chosen)))
