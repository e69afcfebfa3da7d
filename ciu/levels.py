"""What a level is: its name, its kind and the prefix of the keys generated for it.

Levels are configuration (``CIU_LEVELS``) stored in ``ciu.level``; no generic
code names a level. What generic code needs to know about a level is its
*kind*:

``storey``
    stacked volumes inside a structure (floors): made from a structure's height
    or storeys, drawn floor by floor.
``structure``
    extruded footprints (buildings): placed in their parent by a point on their
    surface, carry heights and storeys, drawn as prisms.
``area``
    everything else (grid cells, districts, the city): placed in their parent
    by the largest overlap.

The default names (``floor``, ``building``, ``grid``, ``district``, ``city``)
have the kinds and prefixes their names suggest; any other level is an area
with no prefix unless ``CIU_LEVELS`` says otherwise::

    CIU_LEVELS='["room", {"name": "house", "kind": "structure", "prefix": "h"}, "parish", "city"]'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ciu.errors import ConfigError

Kind = Literal["storey", "structure", "area"]
KINDS: tuple[str, ...] = ("storey", "structure", "area")
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_PREFIX = re.compile(r"[a-z0-9_]*")


@dataclass(frozen=True)
class Level:
    """One level of the hierarchy."""

    name: str
    kind: Kind = "area"
    prefix: str = ""

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ConfigError(f"level name {self.name!r} must be lower-case letters, digits and _")
        if self.kind not in KINDS:
            raise ConfigError(f"level {self.name!r}: kind {self.kind!r} is not one of {list(KINDS)}")
        if not _PREFIX.fullmatch(self.prefix):
            raise ConfigError(f"level {self.name!r}: prefix {self.prefix!r} must be lower-case letters, digits and _")

    @property
    def placement(self) -> Literal["point", "overlap"]:
        """How a unit of this level finds its parent: a point on its surface, or the largest overlap."""
        return "point" if self.kind == "structure" else "overlap"


#: the kinds and prefixes of the default level names
KNOWN: dict[str, Level] = {
    "floor": Level("floor", "storey", "f"),
    "building": Level("building", "structure", "b"),
    "grid": Level("grid", "area", "g"),
    "district": Level("district", "area", "d"),
}


def level(spec: str | Mapping[str, object] | Level) -> Level:
    """A level from a name (known kinds and prefixes), a mapping (``name``, ``kind``, ``prefix``) or a level."""
    if isinstance(spec, Level):
        return spec
    if isinstance(spec, str):
        return KNOWN.get(spec) or Level(spec)
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise ConfigError(f"a level is a name or an object with a name; got {spec!r}")
    unknown = set(spec) - {"name", "kind", "prefix"}
    if unknown:
        raise ConfigError(f"level {spec['name']!r}: unknown keys {sorted(unknown)} (name, kind, prefix)")
    known = KNOWN.get(str(spec["name"]))
    return Level(str(spec["name"]), str(spec.get("kind", known.kind if known else "area")),  # type: ignore[arg-type]
                 str(spec.get("prefix", known.prefix if known else "")))


def hierarchy(specs: Iterable[str | Mapping[str, object] | Level]) -> tuple[Level, ...]:
    """Levels bottom to top, checked: distinct names, at least one, storeys only right below a structure."""
    out = tuple(level(s) for s in specs)
    names = [lv.name for lv in out]
    if not out or len(set(names)) != len(names):
        raise ConfigError(f"levels must be distinct names, bottom to top; got {names}")
    for i, lv in enumerate(out):
        if lv.kind == "storey" and (i + 1 >= len(out) or out[i + 1].kind != "structure"):
            raise ConfigError(f"level {lv.name!r} holds storeys: the level above it must be a structure")
    return out


def of_kind(levels: Sequence[Level], kind: Kind) -> Level | None:
    """The lowest level of ``kind``, or ``None``."""
    return next((lv for lv in levels if lv.kind == kind), None)
