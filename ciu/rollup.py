"""Roll-up arithmetic: time buckets and level-by-level aggregation on arrays.

Pure functions of numpy arrays, so the rules are easy to test and fast:
the store fetches the base series once (binary COPY) and these functions
carry it up (or down) the hierarchy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SPATIAL = ("sum", "mean", "area_weighted_mean", "max", "min")
TEMPORAL = ("sum", "mean", "max", "min")


@dataclass(frozen=True)
class Hierarchy:
    """The unit tree as arrays: id, parent id (-1 for roots), level rank, area, code."""

    id: np.ndarray
    parent: np.ndarray
    rank: np.ndarray
    area: np.ndarray
    code: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pos", pd.Index(self.id))

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        pos = self._pos.get_indexer(ids)  # type: ignore[attr-defined]
        if (pos < 0).any():
            raise KeyError(f"unknown unit id {ids[pos < 0][0]}")
        return pos

    def parent_of(self, ids: np.ndarray) -> np.ndarray:
        return self.parent[self.lookup(ids)]

    def area_of(self, ids: np.ndarray) -> np.ndarray:
        return self.area[self.lookup(ids)]

    def code_of(self, ids: np.ndarray) -> np.ndarray:
        return self.code[self.lookup(ids)]

    def at_rank(self, rank: int) -> np.ndarray:
        return self.id[self.rank == rank]


def bucket(t_us: np.ndarray, step_us: int, origin_us: int) -> np.ndarray:
    """Start of the ``step`` bucket holding each time (all in microseconds)."""
    return origin_us + np.floor_divide(t_us - origin_us, step_us) * step_us


def combine(keys: tuple[np.ndarray, np.ndarray], values: np.ndarray, how: str,
            weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One value per (group, time) from the values of its members by the rule ``how``: the one roll-up rule.

    ``keys`` are the members' groups (a parent: an id or a code) and times;
    ``area_weighted_mean`` weighs each member by ``weights`` (its area).
    Returns the groups, the times and the combined values, sorted.
    """
    if how not in SPATIAL:
        raise ValueError(f"unknown roll-up rule {how!r}")
    frame = pd.DataFrame({"u": keys[0], "t": keys[1], "v": values})
    if how == "area_weighted_mean":
        w = np.asarray(weights, dtype=float)
        frame["vw"] = values * w
        frame["w"] = np.where(np.isnan(values), 0.0, w)
        g = frame.groupby(["u", "t"], sort=True)[["vw", "w"]].sum()
        out = (g["vw"] / g["w"].where(g["w"] > 0)).to_numpy()
        idx = g.index
    else:
        g = frame.groupby(["u", "t"], sort=True)["v"].agg(how)
        out = g.to_numpy(dtype=float)
        idx = g.index
    return idx.get_level_values(0).to_numpy(), idx.get_level_values(1).to_numpy(), out


def resample(unit: np.ndarray, t_us: np.ndarray, value: np.ndarray, *, step_us: int, origin_us: int,
             how: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Aggregate each unit's series into time buckets with the rule ``how``."""
    if how not in TEMPORAL:
        raise ValueError(f"unknown resample rule {how!r}")
    return combine((unit, bucket(t_us, step_us, origin_us)), value, how)


def step_up(tree: Hierarchy, unit: np.ndarray, t: np.ndarray, value: np.ndarray, *,
            rule: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values of the parents, one level up, from their children's values by ``rule``."""
    if rule not in SPATIAL:
        raise ValueError(f"unknown roll-up rule {rule!r}")
    parent = tree.parent_of(unit)
    keep = parent >= 0
    weights = tree.area_of(unit[keep]) if rule == "area_weighted_mean" else None
    return combine((parent[keep], t[keep]), value[keep], rule, weights)


def inherit_down(tree: Hierarchy, unit: np.ndarray, t: np.ndarray, value: np.ndarray, *,
                 source_rank: int, target_rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every unit of ``target_rank`` takes the values of its ancestor at ``source_rank``."""
    targets = tree.at_rank(target_rank)
    anc = targets.copy()
    for _ in range(source_rank - target_rank):
        anc = tree.parent_of(anc)
    link = pd.DataFrame({"target": targets, "u": anc})
    vals = pd.DataFrame({"u": unit, "t": t, "v": value})
    merged = link.merge(vals, on="u", how="inner").sort_values(["target", "t"], kind="stable")
    return merged["target"].to_numpy(), merged["t"].to_numpy(), merged["v"].to_numpy(dtype=float)
