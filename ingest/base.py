"""The one contract every loader follows, and the registry of loaders.

A loader reads one format family. It says whether it can open a path
(:meth:`Loader.can_open`), and reads it into either a :class:`Layer`
(geometries with attributes, in EPSG:4326) or a :class:`Series`
(long-format observations keyed by a unit key, a time and a variable).
Loaders are registered only when the library they need imports, so a
missing optional dependency removes a format instead of breaking the rest.

>>> from ciu.ingest.base import registered
>>> "timeseries" in {loader.name for loader in registered()}
True
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from ciu.errors import ValidationError

#: loader modules and the library each one needs
LOADER_MODULES: tuple[tuple[str, str], ...] = (
    ("ciu.ingest.vector", "pyogrio"),
    ("ciu.ingest.cityjson", "json"),
    ("ciu.ingest.timeseries", "pandas"),
    ("ciu.ingest.arrays", "xarray"),
)


def file_sha256(path: Path | str, *, chunk: int = 1 << 20) -> str:
    """The sha256 of a file's bytes (of every file of a Shapefile's set, in name order)."""
    path = Path(path)
    digest = hashlib.sha256()
    parts = [path]
    if path.suffix.lower() == ".shp":
        parts = sorted(p for p in path.parent.glob(path.stem + ".*") if p.suffix.lower() in SHAPEFILE_PARTS)
    for part in parts:
        with open(part, "rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
    return digest.hexdigest()


SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")


@dataclass
class Layer:
    """Features read from a file: a GeoDataFrame in EPSG:4326 plus where it came from.

    ``frame`` keeps the source's attribute columns and a ``feature`` column
    with the feature's position in the file (for error messages).
    """

    frame: gpd.GeoDataFrame
    uri: str
    loader: str
    loader_version: str
    source_crs: str
    params: dict[str, Any] = field(default_factory=dict)
    #: parts below the features (e.g. a CityJSON building's storeys), by name
    parts: dict[str, pd.DataFrame] = field(default_factory=dict)


@dataclass
class Series:
    """Observations read from a file: columns ``key, variable, time, value, row``.

    ``key`` names the unit (a code or an identifier to be mapped to a code),
    ``row`` is the record's position in the file (for error messages).
    """

    frame: pd.DataFrame
    uri: str
    loader: str
    loader_version: str
    params: dict[str, Any] = field(default_factory=dict)
    #: what the reading changed or decided, for the load's report (e.g. times moved out of a skipped hour)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FileOptions:
    """What a user says about one file (the options of ``ciu ingest``).

    Every loader reads the ones of its format (:meth:`Loader.read_options`);
    ``level``, ``key``, ``name`` and the floor options place units, ``level``
    and ``on_conflict`` load observations.
    """

    level: str | None = None
    #: ``"units"`` or ``"observations"``; default: what the loader reads
    as_: str | None = None
    key: str | None = None
    name: str | None = None
    crs: str | None = None
    floors: bool = False
    storey_height: float = 3.0
    floors_column: str = "floors"
    height_column: str = "height_m"
    variable: str | None = None
    layout: str | None = None
    time_column: str = "time"
    value_column: str = "value"
    tz: str = "UTC"
    unit_dim: str | None = None
    on_conflict: str = "error"


class Loader(ABC):
    """One format family.

    Subclasses set ``name``, ``version`` and ``suffixes``, implement
    :meth:`read`, and say with :meth:`read_options` which of a user's
    :class:`FileOptions` their format takes.
    """

    name: str = ""
    version: str = "1"
    suffixes: tuple[str, ...] = ()
    #: what :meth:`read` returns: ``"layer"`` or ``"series"``
    kind: str = "layer"

    def can_open(self, path: Path | str) -> bool:
        """Whether this loader reads the file at ``path`` (by its name ending)."""
        name = str(path).lower()
        return any(name.endswith(s) for s in self.suffixes)

    @abstractmethod
    def read(self, path: Path | str, **options: Any) -> Layer | Series:
        """Read the file; raise :class:`~ciu.errors.ValidationError` naming file, row and field."""

    def read_options(self, path: Path, options: FileOptions, *, counts: bool = False) -> dict[str, Any]:
        """The keyword arguments of :meth:`read` for what the user asked (``counts``: the values are counts)."""
        return {"crs": options.crs, "key": options.key}


def check_exists(path: Path | str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ValidationError("file does not exist", source=str(path))
    return path


_REGISTRY: list[Loader] | None = None


def registered() -> list[Loader]:
    """The loaders whose dependency imports, in a fixed order."""
    global _REGISTRY
    if _REGISTRY is None:
        found: list[Loader] = []
        for module_name, needs in LOADER_MODULES:
            if importlib.util.find_spec(needs) is None:
                continue
            module = importlib.import_module(module_name)
            found.extend(module.LOADERS)
        _REGISTRY = found
    return list(_REGISTRY)


def loader_named(name: str) -> Loader:
    for loader in registered():
        if loader.name == name:
            return loader
    raise ValidationError(f"no loader named {name!r}; available: {[lo.name for lo in registered()]}", field="loader")


def loader_for(path: Path | str) -> Loader:
    """The first registered loader that can open ``path``."""
    for loader in registered():
        if loader.can_open(path):
            return loader
    suffixes = sorted({s for lo in registered() for s in lo.suffixes})
    raise ValidationError(f"no loader opens this file; known endings: {suffixes}", source=str(path))
