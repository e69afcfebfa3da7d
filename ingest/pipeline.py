"""Loading with provenance: one source record, one transaction per load (:meth:`ciu.twin.Twin.load_source`).

Every load names its source (the file as given, its sha256, the loader and
its version, the time, the number of records read). Loading a source that
is already recorded (same checksum, loader and parameters) changes nothing;
a new source appends only what is new, and a value that disagrees with a
stored one is reported (``on_conflict="keep"``) or refused (``"error"``),
never overwritten.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import geopandas as gpd
import numpy as np
import pandas as pd

from ciu.domain import LoadReport, SourceInfo
from ciu.errors import ValidationError
from ciu.ingest.base import Series

if TYPE_CHECKING:
    from ciu.twin import Twin


def load_unit_frame(twin: Twin, units: gpd.GeoDataFrame, info: SourceInfo) -> LoadReport:
    """Load units from one source (one transaction, idempotent)."""

    def run(sid: int) -> tuple[LoadReport, int]:
        report = twin.load_units(units, source_id=sid, source=info.uri)
        return report, len(units)

    return twin.load_source(info, run)


def resolve_keys(twin: Twin, series: Series, *, level: str | None = None,
                 mapping: dict[str, str] | None = None) -> pd.Series:
    """Unit codes for the series' keys; an unknown key is refused naming file, row and field.

    A key is a unit code, or (with ``level``) the last part of the code of
    exactly one unit at that level, or a key of ``mapping``. A key that is the
    last part of several units' codes (``f00``: the ground floor of every
    building) is refused naming its row and the candidates, never written to
    one of them.
    """
    keys = series.frame["key"].astype(str)
    uniq = pd.unique(keys)
    if mapping is not None:
        lookup = {k: mapping[k] for k in uniq if k in mapping}
    else:
        lookup = {}
    rest = [k for k in uniq if k not in lookup]
    if rest:
        stored = twin.unit_ids(rest)
        lookup.update({k: k for k in rest if k in stored})
        rest = [k for k in rest if k not in stored]
    if rest and level is not None:
        by_tail: dict[str, list[str]] = {}
        for c in twin.units(level=level).index:
            by_tail.setdefault(c.rsplit("/", 1)[-1], []).append(c)
        for k in rest:
            found = by_tail.get(k, [])
            if len(found) > 1:
                r = series.frame.iloc[int(np.flatnonzero((keys == k).to_numpy())[0])]
                shown = ", ".join(repr(c) for c in sorted(found)[:3]) + (f" and {len(found) - 3} more"
                                                                          if len(found) > 3 else "")
                raise ValidationError(f"unit {k!r} is ambiguous at level {level!r}: it ends {len(found)} codes"
                                      f" ({shown}); give full codes or a mapping", source=series.uri,
                                      row=int(r["row"]), field=series.params.get("key_field", "key"))
            if found:
                lookup[k] = found[0]
    codes = keys.map(lookup)
    if codes.isna().any():
        i = int(np.flatnonzero(codes.isna().to_numpy())[0])
        r = series.frame.iloc[i]
        raise ValidationError(f"unit {r['key']!r} is not in the twin", source=series.uri, row=int(r["row"]),
                              field=series.params.get("key_field", "key"))
    return codes


def load_series(twin: Twin, series: Series, info: SourceInfo, *, codes: pd.Series | None = None,
                level: str | None = None, on_conflict: Literal["error", "keep"] = "error") -> LoadReport:
    """Load a series from one source (one transaction, idempotent, incremental).

    Errors from the store name the record's row in the file, not in the frame.
    """
    if codes is None:
        codes = resolve_keys(twin, series, level=level)
    times = pd.to_datetime(series.frame["time"], utc=True)
    frame = pd.DataFrame({"code": codes.to_numpy(), "variable": series.frame["variable"].to_numpy(),
                          "time": times.array, "value": series.frame["value"].to_numpy()})

    def run(sid: int) -> tuple[LoadReport, int]:
        try:
            report = twin.load_observations(frame, source_id=sid, source=info.uri, on_conflict=on_conflict)
        except ValidationError as exc:
            if isinstance(exc.row, int) and 0 <= exc.row < len(series.frame):
                raise type(exc)(exc.reason, source=exc.source, row=int(series.frame["row"].iloc[exc.row]),
                                field=exc.field) from exc
            raise
        report.notes.extend(series.notes)
        if report.conflicts:
            report.notes.append(f"{info.uri}: {report.conflicts} values differ from stored ones; kept the stored"
                                " values")
        return report, len(frame)

    return twin.load_source(info, run)
