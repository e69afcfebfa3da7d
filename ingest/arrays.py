"""Gridded and array data: NetCDF through xarray, npz and HDF5 with a mapping to units.

Arrays carry no unit codes, so the caller gives an :class:`ArrayMapping`:
which array, which axis is time and which is the unit, the unit key of every
position along the unit axis, the timestamps, and which variable each
channel of a trailing channel axis holds. A shape that disagrees with the
mapping is refused before anything is read further.

Wall-clock timestamps (naive, in a local time zone) are made absolute with
:func:`localize_wall_clock`: a local hour that does not exist (the spring
daylight-saving gap) must hold only zeros and is dropped; an hour that
occurs twice (the autumn fall-back) is stamped at its first occurrence.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ciu.errors import ValidationError
from ciu.ingest.base import FileOptions, Loader, Series, check_exists

VERSION = "1"


@dataclass
class ArrayMapping:
    """How the axes of an array map to time, units and variables.

    Parameters
    ----------
    key
        Name of the array in the file (npz key, HDF5 dataset, NetCDF variable).
    units
        Unit key of each position along the unit axis.
    times
        Timestamp of each position along the time axis (naive = wall clock in ``tz``).
    channels
        Variable of each channel of the last axis (a 3-d array), or one name
        for a 2-d array.
    tz
        Time zone of naive timestamps.
    """

    key: str
    units: Sequence[str]
    times: pd.DatetimeIndex
    channels: dict[int, str] | str
    tz: str = "UTC"
    nonnegative: bool = True
    params: dict[str, Any] = field(default_factory=dict)

    def shape(self) -> tuple[int, ...]:
        base = (len(self.times), len(self.units))
        return base if isinstance(self.channels, str) else base + (max(self.channels) + 1,)


def localize_wall_clock(times: pd.DatetimeIndex, tz: str, values: np.ndarray, *, source: str,
                        field: str) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """Make naive wall-clock times absolute (UTC).

    Returns the positions to keep along the time axis and their UTC times.
    A nonexistent local time holding anything but zeros is refused.
    """
    if times.tz is not None:
        return np.arange(len(times)), times.tz_convert("UTC")
    local = times.tz_localize(tz, ambiguous=np.ones(len(times), dtype=bool), nonexistent="NaT")
    gap = np.asarray(local.isna())
    if gap.any():
        busy = np.flatnonzero(gap & (np.abs(values.reshape(len(times), -1)).sum(axis=1) > 0))
        if len(busy):
            i = int(busy[0])
            raise ValidationError(f"local time {times[i]} does not exist in {tz} but holds non-zero values",
                                  source=source, row=i, field=field)
    keep = np.flatnonzero(~gap)
    return keep, local[keep].tz_convert("UTC")


def series_from_array(data: np.ndarray, mapping: ArrayMapping, *, source: str, loader: str) -> Series:
    """Long-format observations from an array ``(time, unit[, channel])`` and its mapping."""
    want = mapping.shape()
    if data.ndim != len(want) or data.shape[:2] != want[:2] or (len(want) == 3 and data.shape[2] < want[2]):
        raise ValidationError(f"array has shape {data.shape}, the mapping needs {want} "
                              f"(time × unit{' × channel' if len(want) == 3 else ''})", source=source,
                              field=mapping.key)
    if len(want) == 2:
        data = data[:, :, None]
        channels = {0: mapping.channels}
    else:
        channels = dict(mapping.channels)  # type: ignore[arg-type]
    data = np.asarray(data, dtype=float)
    finite = np.isfinite(data)
    if not finite.all():
        t, u, c = (int(v[0]) for v in np.nonzero(~finite))
        raise ValidationError(f"value is NaN or infinite (unit {mapping.units[u]!r}, channel {c})", source=source,
                              row=t, field=mapping.key)
    if mapping.nonnegative and (data < 0).any():
        t, u, c = (int(v[0]) for v in np.nonzero(data < 0))
        raise ValidationError(f"count {data[t, u, c]:g} is negative (unit {mapping.units[u]!r}, channel {c})",
                              source=source, row=t, field=mapping.key)
    keep, utc = localize_wall_clock(pd.DatetimeIndex(mapping.times), mapping.tz, data, source=source,
                                    field=mapping.key)
    n_t, n_u = len(keep), len(mapping.units)
    keys = np.asarray(list(mapping.units), dtype=object)
    frames = []
    for channel, variable in sorted(channels.items()):
        block = data[keep, :, channel]
        frames.append(pd.DataFrame({
            "key": np.repeat(keys, n_t),
            "variable": variable,
            "time": pd.DatetimeIndex(np.tile(utc.tz_localize(None).to_numpy(), n_u)).tz_localize("UTC"),
            "value": block.T.ravel(),
            "row": np.tile(keep, n_u),
        }))
    frame = pd.concat(frames, ignore_index=True)
    params = {"key": mapping.key, "tz": mapping.tz, "channels": {str(k): v for k, v in channels.items()},
              "n_units": n_u, "n_times": int(len(mapping.times)), **mapping.params}
    return Series(frame=frame, uri=source, loader=loader, loader_version=VERSION, params=params)


class ArrayLoader(Loader):
    """npz, HDF5 and NetCDF arrays with an :class:`ArrayMapping`."""

    name = "arrays"
    version = VERSION
    suffixes = (".npz", ".h5", ".hdf5", ".nc", ".nc4")
    kind = "series"

    def read_options(self, path: Path, options: FileOptions, *, counts: bool = False) -> dict[str, Any]:
        if options.unit_dim is None or options.variable is None:
            raise ValidationError("an array file on the command line must be NetCDF with --variable and --unit-dim"
                                  " (npz and HDF5 need a mapping: use ciu.ingest.arrays.ArrayMapping)",
                                  source=str(path), field="unit_dim")
        return {"mapping": netcdf_mapping(path, options.variable, unit_dim=options.unit_dim, tz=options.tz)}

    def read(self, path: Path | str, *, mapping: ArrayMapping | None = None, **_: Any) -> Series:
        path = check_exists(path)
        source = str(path)
        if mapping is None:
            raise ValidationError("an array file needs a mapping of its axes to times, units and variables",
                                  source=source, field="mapping")
        data = self._array(path, mapping.key, source=source)
        return series_from_array(data, mapping, source=source, loader=f"ingest.{self.name}")

    @staticmethod
    def _array(path: Path, key: str, *, source: str) -> np.ndarray:
        suffix = path.suffix.lower()
        try:
            if suffix == ".npz":
                with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
                    if key not in npz.files:
                        raise ValidationError(f"no array {key!r}; the file holds {npz.files}", source=source,
                                              field=key)
                    return np.asarray(npz[key])
            if suffix in (".h5", ".hdf5"):
                import h5py

                with h5py.File(path, "r") as h5:
                    if key not in h5:
                        raise ValidationError(f"no dataset {key!r}; the file holds {list(h5.keys())}",
                                              source=source, field=key)
                    return np.asarray(h5[key][()])
            import xarray as xr

            with xr.open_dataset(path) as ds:
                if key not in ds.data_vars:
                    raise ValidationError(f"no variable {key!r}; the file holds {list(ds.data_vars)}",
                                          source=source, field=key)
                var = ds[key]
                if "time" in var.dims:  # time first, whatever the file's order
                    var = var.transpose("time", ...)
                return np.asarray(var.values)
        except ValidationError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise ValidationError(f"cannot be read as an array file ({exc})", source=source) from exc


def netcdf_mapping(path: Path | str, key: str, *, unit_dim: str, time_dim: str = "time",
                   tz: str = "UTC") -> ArrayMapping:
    """A mapping read from a NetCDF file's own coordinates (unit keys and times)."""
    import xarray as xr

    source = str(path)
    try:
        with xr.open_dataset(path) as ds:
            if key not in ds.data_vars:
                raise ValidationError(f"no variable {key!r}; the file holds {list(ds.data_vars)}", source=source,
                                      field=key)
            var = ds[key]
            for dim in (time_dim, unit_dim):
                if dim not in var.dims:
                    raise ValidationError(f"variable has dims {var.dims}, not {dim!r}", source=source, field=key)
            units = [str(u) for u in ds[unit_dim].values]
            times = pd.DatetimeIndex(ds[time_dim].values)
    except ValidationError:
        raise
    except (OSError, ValueError) as exc:
        raise ValidationError(f"cannot be read as NetCDF ({exc})", source=source) from exc
    return ArrayMapping(key=key, units=units, times=times, channels=key, tz=tz)


LOADERS = (ArrayLoader(),)
