"""The twin's domain types and their rules: variables, load reports, provenance records, codes.

No SQL and no I/O: the store, ingest, models and the API all speak these types.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import pandas as pd

from ciu.errors import ValidationError


CODE_SEGMENT = re.compile(r"^[a-z0-9_]+$")

CODE = re.compile(r"^[a-z0-9_]+(/[a-z0-9_]+)*$")

SPACES = ("physical", "social", "information", "external")

SCOPES = ("public", "restricted")

ROLLUPS = ("sum", "mean", "area_weighted_mean", "max", "min")

RESAMPLES = ("sum", "mean", "max", "min")


@dataclass(frozen=True)
class Variable:
    """A registered variable: what it measures and how it rolls up the hierarchy.

    ``rollup`` says how a parent's value comes from its children's values
    (``sum`` for counts, ``area_weighted_mean`` for temperature, ``max`` for
    risk, ...); ``resample`` says how values combine over time.
    """

    name: str
    unit_of_measure: str
    space: Literal["physical", "social", "information", "external"]
    rollup: Literal["sum", "mean", "area_weighted_mean", "max", "min"]
    resample: Literal["sum", "mean", "max", "min"] = "mean"
    scope: Literal["public", "restricted"] = "public"
    description: str = ""

    @property
    def is_count(self) -> bool:
        """Protected as a count when published (suppression, noise): a social variable that rolls up by sum.

        The SQL twin is the function ``ciu.is_count``; a test holds the two together.
        """
        return self.rollup == "sum" and self.space == "social"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValidationError("must be lower-case letters, digits and _", row=self.name, field="name")
        for fname, allowed in (("space", SPACES), ("scope", SCOPES), ("rollup", ROLLUPS), ("resample", RESAMPLES)):
            if getattr(self, fname) not in allowed:
                raise ValidationError(
                    f"{getattr(self, fname)!r} is not one of {allowed}", row=self.name, field=fname
                )


@dataclass
class LoadReport:
    """What a load did."""

    inserted: int = 0
    unchanged: int = 0
    conflicts: int = 0
    source_id: int | None = None
    skipped_source: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SourceInfo:
    """Where a load comes from: the provenance written to ``ciu.source``."""

    uri: str
    sha256: str
    loader: str
    loader_version: str
    params: dict[str, Any]


@dataclass(frozen=True)
class SourceRecord:
    """Provenance of a load: which file, its checksum, which loader, when."""

    id: int
    uri: str
    sha256: str
    loader: str
    loader_version: str
    loaded_at: datetime
    rows: int
    params: dict[str, Any]


def interval_of(freq: str) -> pd.Timedelta:
    """A pandas-style frequency (``h``, ``D``, ``W``, ``15min``) as a fixed interval."""
    text = freq.strip()
    try:
        delta = pd.to_timedelta(text if text[:1].isdigit() else f"1{text}")
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"{freq!r} is not a fixed frequency such as 'h', 'D', 'W' or '15min'", field="freq") from exc
    if delta <= pd.Timedelta(0):
        raise ValidationError(f"{freq!r} must be a positive interval", field="freq")
    return delta
