"""Time series from CSV or Parquet, long or wide.

- long: one row per observation, columns ``key, time, value`` and either a
  ``variable`` column or a variable named by the caller;
- wide: a time column and one column per unit (the column name is the unit
  key), for one variable named by the caller.

Rows are counted from 0 after the header, as in every error of the twin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ciu.errors import DuplicateError, ValidationError
from ciu.ingest.base import FileOptions, Loader, Series, check_exists

VERSION = "1"


def read_table(path: Path, *, source: str) -> pd.DataFrame:
    """A CSV or Parquet file as a frame (every cell as read; no type guessing for keys)."""
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise ValidationError(f"cannot be read as a table ({str(exc).strip()})", source=source) from exc


#: the first and last years a stored observation may fall in (announcements look ahead, nothing that far)
YEARS = (1900, 2200)
#: the largest magnitude of a value: sums of millions of them stay finite and exact to a unit
MAX_VALUE = 1e15
#: a timestamp that states its own offset (``Z``, ``+02:00``, ``-0500``)
_OFFSET = r"(?:[zZ]|[+-]\d{2}(?::?\d{2})?)\s*$"


def check_tz(tz: str, *, source: str) -> str:
    """``tz`` when the time-zone database knows it, else an error naming the option."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"unknown time zone {tz!r} (a name of the tz database, e.g. 'Europe/Amsterdam')",
                              source=source, field="tz") from exc
    return str(tz)


def parse_times(values: pd.Series, *, tz: str, source: str, field: str, rows: np.ndarray,
                shifted: list[int] | None = None) -> pd.Series:
    """Timestamps in UTC.

    Timestamps with an offset are the instants they state (offsets may differ
    from row to row: ``Z`` beside ``+02:00``); naive ones are wall-clock times in
    ``tz``: the first of an ambiguous hour (when the clocks go back), and a time
    in a skipped hour (when they go forward) moved forward by the gap, its row
    appended to ``shifted``. A file mixing the two kinds is refused at the
    first row of the rarer kind. Years outside :data:`YEARS` are refused.
    """
    tz = check_tz(tz, source=source)
    if pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values):
        text = values.astype(str).str.strip()
        parsed = pd.to_datetime(text, errors="coerce", format="mixed", utc=True)  # naive ones read as UTC here
        unread = parsed.isna().to_numpy()
        if unread.any():
            i = int(np.flatnonzero(unread)[0])
            raise ValidationError(f"{values.iloc[i]!r} is not a timestamp", source=source, row=int(rows[i]),
                                  field=field)
        stated = text.str.contains(_OFFSET, regex=True).to_numpy()
        if stated.any() and not stated.all():
            odd = stated if stated.sum() < (~stated).sum() else ~stated
            i = int(np.flatnonzero(odd)[0])
            raise ValidationError(f"{values.iloc[i]!r} {'states' if stated[i] else 'lacks'} a UTC offset while most"
                                  f" rows {'lack' if stated[i] else 'state'} one: give every time an offset, or"
                                  f" none (then --tz)", source=source, row=int(rows[i]), field=field)
        times = parsed if stated.any() else parsed.dt.tz_localize(None)  # parsed once: naive back to wall clock
    else:
        times = pd.to_datetime(values, errors="coerce")
    bad = times.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValidationError(f"{values.iloc[i]!r} is not a timestamp", source=source, row=int(rows[i]), field=field)
    if times.dt.tz is None:
        wall = times
        times = times.dt.tz_localize(tz, ambiguous=np.ones(len(times), dtype=bool), nonexistent="shift_forward")
        gap = (times.dt.tz_localize(None) != wall).to_numpy()  # moved out of a skipped hour
        if shifted is not None:
            shifted.extend(int(r) for r in rows[gap])
    times = times.dt.tz_convert("UTC")
    years = times.dt.year.to_numpy()
    far = (years < YEARS[0]) | (years > YEARS[1])
    if far.any():
        i = int(np.flatnonzero(far)[0])
        raise ValidationError(f"{values.iloc[i]!r} is outside the years {YEARS[0]}..{YEARS[1]}", source=source,
                              row=int(rows[i]), field=field)
    return times


def check_values(values: pd.Series, *, nonnegative: bool, source: str, rows: np.ndarray,
                 fields: np.ndarray | str) -> np.ndarray:
    """Values as floats; NaN, infinite (and with ``nonnegative`` negative) values are refused."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(numbers)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        field = fields if isinstance(fields, str) else str(fields[i])
        raise ValidationError(f"value {values.iloc[i]!r} is missing or not a finite number", source=source,
                              row=int(rows[i]), field=field)
    huge = np.abs(numbers) > MAX_VALUE
    if huge.any():
        i = int(np.flatnonzero(huge)[0])
        field = fields if isinstance(fields, str) else str(fields[i])
        raise ValidationError(f"value {numbers[i]:g} is beyond ±{MAX_VALUE:g}, no measurement's size",
                              source=source, row=int(rows[i]), field=field)
    if nonnegative:
        neg = numbers < 0
        if neg.any():
            i = int(np.flatnonzero(neg)[0])
            field = fields if isinstance(fields, str) else str(fields[i])
            raise ValidationError(f"count {numbers[i]:g} is negative", source=source, row=int(rows[i]), field=field)
    return numbers


class TimeSeriesLoader(Loader):
    """CSV or Parquet time series, long or wide."""

    name = "timeseries"
    version = VERSION
    suffixes = (".csv", ".parquet", ".csv.gz")
    kind = "series"

    def can_open(self, path: Path | str) -> bool:
        if str(path).lower().endswith(".parquet"):
            from ciu.ingest.vector import _is_geoparquet

            return not _is_geoparquet(Path(path))
        return super().can_open(path)

    def read_options(self, path: Path, options: FileOptions, *, counts: bool = False) -> dict[str, Any]:
        return {"variable": options.variable, "tz": options.tz, "layout": options.layout, "key": options.key or "code",
                "time": options.time_column, "value": options.value_column, "nonnegative": counts}

    def read(
        self, path: Path | str, *, layout: Literal["long", "wide"] | None = None, key: str = "code",
        time: str = "time", value: str = "value", variable: str | None = None, tz: str = "UTC",
        nonnegative: bool = False, **_: Any,
    ) -> Series:
        """Read observations.

        Parameters
        ----------
        layout
            ``"long"`` or ``"wide"``; guessed from the columns when ``None``
            (a value or key column means long).
        key, time, value
            Column names (long layout; ``time`` also in wide).
        variable
            The variable of every value (wide layout, or long without a
            ``variable`` column).
        tz
            Time zone of naive timestamps.
        nonnegative
            Refuse negative values (counts).
        """
        path = check_exists(path)
        source = str(path)
        table = read_table(path, source=source)
        if layout is None:
            layout = "long" if (value in table.columns or key in table.columns) else "wide"
        if time not in table.columns:
            raise ValidationError(f"missing time column {time!r} (the file has {list(table.columns)})",
                                  source=source, field=time)
        if table.empty:
            raise ValidationError("holds no observations (a header and no rows)", source=source, field=time)
        shifted: list[int] = []
        if layout == "long":
            frame = self._long(table, source=source, key=key, time=time, value=value, variable=variable, tz=tz,
                               nonnegative=nonnegative, shifted=shifted)
        elif layout == "wide":
            frame = self._wide(table, source=source, time=time, variable=variable, tz=tz, nonnegative=nonnegative,
                               shifted=shifted)
        else:
            raise ValidationError(f"layout {layout!r} must be 'long' or 'wide'", source=source, field="layout")
        dup = frame.duplicated(["key", "variable", "time"]).to_numpy()
        if dup.any():
            r = frame.iloc[int(np.flatnonzero(dup)[0])]
            raise DuplicateError(f"unit {r['key']!r}, variable {r['variable']!r} at {r['time']} is given twice",
                                 source=source, row=int(r["row"]), field="time")
        notes = []
        if shifted:
            notes.append(f"{source}: {len(shifted)} local time(s) in the hour skipped when the clocks go forward in"
                         f" {tz} moved forward by the gap (first at row {shifted[0]})")
        return Series(frame=frame, uri=source, loader=f"ingest.{self.name}", loader_version=self.version,
                      params={"layout": layout, "tz": tz}, notes=notes)

    @staticmethod
    def _long(table: pd.DataFrame, *, source: str, key: str, time: str, value: str, variable: str | None, tz: str,
              nonnegative: bool, shifted: list[int]) -> pd.DataFrame:
        need = [key, value] + ([] if variable else ["variable"])
        for name in need:
            if name not in table.columns:
                raise ValidationError(f"missing column {name!r} (the file has {list(table.columns)})",
                                      source=source, field=name)
        rows = np.arange(len(table))
        keys = table[key]
        if keys.isna().any():
            i = int(np.flatnonzero(keys.isna().to_numpy())[0])
            raise ValidationError("unit key is missing", source=source, row=i, field=key)
        variables = table["variable"] if variable is None else pd.Series(variable, index=table.index)
        if variables.isna().any():
            i = int(np.flatnonzero(variables.isna().to_numpy())[0])
            raise ValidationError("variable is missing", source=source, row=i, field="variable")
        times = parse_times(table[time], tz=tz, source=source, field=time, rows=rows, shifted=shifted)
        values = check_values(table[value], nonnegative=nonnegative, source=source, rows=rows, fields=value)
        return pd.DataFrame({"key": keys.astype(str).to_numpy(), "variable": variables.astype(str).to_numpy(),
                             "time": times.array, "value": values, "row": rows})

    @staticmethod
    def _wide(table: pd.DataFrame, *, source: str, time: str, variable: str | None, tz: str,
              nonnegative: bool, shifted: list[int]) -> pd.DataFrame:
        if variable is None:
            raise ValidationError("a wide table needs the variable it holds (--variable)", source=source,
                                  field="variable")
        units = [c for c in table.columns if c != time]
        if not units:
            raise ValidationError("a wide table needs one column per unit besides the time column", source=source)
        rows = np.arange(len(table))
        times = parse_times(table[time], tz=tz, source=source, field=time, rows=rows, shifted=shifted)
        long = table[units].melt(ignore_index=False, var_name="key", value_name="value")
        long_rows = long.index.to_numpy()
        values = check_values(long["value"], nonnegative=nonnegative, source=source, rows=long_rows,
                              fields=long["key"].to_numpy())
        return pd.DataFrame({"key": long["key"].astype(str).to_numpy(), "variable": variable,
                             "time": times.array[long_rows], "value": values, "row": long_rows})


LOADERS = (TimeSeriesLoader(),)
