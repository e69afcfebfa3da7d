"""The sample city generator: a deterministic, seeded, made-up city.

It makes districts (Voronoi cells of the city boundary), an H3 grid,
buildings with footprints, floor counts, heights, land use, ownership and
restricted tax/security status, floors with z-ranges, and hourly people
counts per floor with daily and weekly rhythms by land use, weather
(temperature per district, rain), public holidays and occasional events,
announced ahead (``event_expected``). With ``end_hour`` the observations stop
at that hour of the last day, and ``tonight_events`` events are announced for
the hours right after it, so the twin's first forecast has events to foresee.
People are generated per floor only; every level above gets its ground truth
by the roll-up rules, so the truth is consistent at every level.

>>> from ciu.ingest.generator import SampleConfig, generate
>>> city = generate(SampleConfig(buildings=12, weeks=1, districts=2))
>>> sorted(city.units["level"].unique())
['building', 'city', 'district', 'floor', 'grid']
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import geopandas as gpd
import holidays as holidays_lib
import numpy as np
import pandas as pd
import shapely
from pydantic import BaseModel, Field, field_validator
from pyproj import CRS

from typing import TYPE_CHECKING

from ciu.domain import Variable
from ciu.errors import ConfigError, ValidationError
from ciu.ingest.hierarchy import assign_by_overlap, assign_by_point, code_key, floors_from_buildings, h3_cells

if TYPE_CHECKING:
    from ciu.domain import LoadReport
    from ciu.twin import Twin

GENERATOR_VERSION = "2"
LOADER = "ingest.generator"

#: The variables the sample city carries.
VARIABLES: tuple[Variable, ...] = (
    Variable("people", "persons", "social", "sum", "mean", description="people present (hourly mean)"),
    Variable("temperature", "degC", "external", "area_weighted_mean", "mean", description="air temperature"),
    Variable("rain", "mm", "external", "area_weighted_mean", "sum", description="precipitation"),
    Variable("holiday", "flag", "external", "max", "max", description="public holiday (1) or not (0)"),
    Variable("event_expected", "persons", "information", "sum", "mean",
             description="announced attendance of planned events"),
)

LAND_USES = ("residential", "office", "retail", "school", "hospital", "leisure")
#: floor area per person at full occupancy (m²)
M2_PER_PERSON = {"residential": 30.0, "office": 12.0, "retail": 6.0, "school": 5.0, "hospital": 15.0, "leisure": 3.0}
#: the most of its capacity an ordinary hour fills on average: capacity is the limit a floor is licensed for, which
#: ordinary crowds stay under (noise aside); only events push past it
ORDINARY_MOST = 0.85


class SampleConfig(BaseModel):
    """Parameters of the sample city (``data/sample/city.toml``)."""

    name: str = "aurora"
    title: str = "Aurora (sample city)"
    seed: int = 20261122
    center_lon: float = Field(5.12, ge=-180, le=180)
    center_lat: float = Field(52.09, ge=-80, le=80)
    radius_m: float = Field(1800.0, gt=100)
    timezone: str = "Europe/Amsterdam"
    holidays_country: str = "NL"
    districts: int = Field(6, ge=1, le=99)
    h3_resolution: int = Field(9, ge=5, le=12)
    buildings: int = Field(240, ge=1)
    storey_height_m: float = Field(3.2, gt=1)
    start: date = date(2026, 3, 30)
    weeks: int = Field(8, ge=1)
    events_per_week: int = Field(2, ge=0)
    #: the local hour of the last day at which observations stop (the twin's "now"; none: the day's end); events
    #: after it stay announced (``event_expected``) but are not observed
    end_hour: int | None = Field(None, ge=0, le=23)
    #: events announced for the hours right after the last observation (what the twin's first forecast foretells)
    tonight_events: int = Field(0, ge=0)

    @field_validator("name")
    @classmethod
    def _code_safe(cls, v: str) -> str:
        if code_key(v) != v:
            raise ValueError("must be lower-case letters, digits and _")
        return v

    @classmethod
    def from_toml(cls, path: Path | str, **overrides: object) -> SampleConfig:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**data)
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from exc

    def sha256(self) -> str:
        blob = json.dumps({"config": self.model_dump(mode="json"), "generator": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class SampleCity:
    """A generated city: units of every level and long-format observations."""

    config: SampleConfig
    units: gpd.GeoDataFrame  # code, parent_code, level, name, geometry, z_min, z_max, attrs, restricted
    observations: pd.DataFrame  # code, variable, time (UTC), value
    variables: tuple[Variable, ...] = VARIABLES


def _metric_crs(cfg: SampleConfig) -> CRS:
    return CRS.from_proj4(f"+proj=aeqd +lat_0={cfg.center_lat} +lon_0={cfg.center_lon} +datum=WGS84 +units=m")


def _boundary(cfg: SampleConfig, rng: np.random.Generator) -> shapely.Polygon:
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    wobble = 1 + 0.12 * np.sin(3 * angles + rng.uniform(0, 6)) + 0.05 * rng.standard_normal(48)
    r = cfg.radius_m * wobble
    return shapely.Polygon(np.c_[r * np.cos(angles), r * np.sin(angles)])


def _districts(cfg: SampleConfig, city: shapely.Polygon, rng: np.random.Generator) -> list[shapely.Polygon]:
    if cfg.districts == 1:
        return [city]
    # one central district and a ring of others, so the centre is its own place
    ang = np.sort(rng.uniform(0, 2 * np.pi, cfg.districts - 1))
    rad = cfg.radius_m * rng.uniform(0.55, 0.75, cfg.districts - 1)
    seeds = np.r_[[[0.0, 0.0]], np.c_[rad * np.cos(ang), rad * np.sin(ang)]]
    cells = shapely.voronoi_polygons(shapely.MultiPoint(seeds), extend_to=city.buffer(cfg.radius_m))
    out = []
    for seed in seeds:
        cell = next(c for c in cells.geoms if c.contains(shapely.Point(seed)))
        part = cell.intersection(city)
        if part.geom_type != "Polygon":
            part = max(part.geoms, key=lambda g: g.area)
        out.append(shapely.make_valid(part))
    return out


def _buildings(cfg: SampleConfig, city: shapely.Polygon, rng: np.random.Generator) -> gpd.GeoDataFrame:
    placed: list[shapely.Polygon] = []
    centres: list[tuple[float, float]] = []
    inner = city.buffer(-40)
    attempts = 0
    while len(placed) < cfg.buildings and attempts < cfg.buildings * 200:
        attempts += 1
        r = abs(rng.normal(0, cfg.radius_m * 0.45))
        a = rng.uniform(0, 2 * np.pi)
        x, y = r * np.cos(a), r * np.sin(a)
        if not inner.contains(shapely.Point(x, y)):
            continue
        central = r < cfg.radius_m * 0.35
        w = rng.uniform(14, 45 if central else 30)
        h = rng.uniform(10, 35 if central else 22)
        box = shapely.box(x - w / 2, y - h / 2, x + w / 2, y + h / 2)
        box = shapely.affinity.rotate(box, rng.uniform(0, 90), origin=(x, y))
        if any(box.distance(p) < 6 for p in placed[-400:]) and _touches_any(box, placed):
            continue
        placed.append(box)
        centres.append((x, y))
    if len(placed) < cfg.buildings:
        raise ConfigError(f"only {len(placed)} of {cfg.buildings} buildings fit in a city of radius {cfg.radius_m} m")
    dist = np.hypot(*np.array(centres).T) / cfg.radius_m
    n = len(placed)
    use = np.empty(n, dtype=object)
    for i, d in enumerate(dist):
        if d < 0.3:
            p = [0.2, 0.4, 0.25, 0.03, 0.04, 0.08]
        elif d < 0.6:
            p = [0.55, 0.15, 0.15, 0.06, 0.03, 0.06]
        else:
            p = [0.75, 0.05, 0.08, 0.07, 0.02, 0.03]
        use[i] = LAND_USES[rng.choice(len(LAND_USES), p=p)]
    base = {"residential": (3, 9), "office": (4, 22), "retail": (1, 3), "school": (2, 4), "hospital": (4, 9),
            "leisure": (1, 3)}
    floors = np.array([
        int(np.clip(round(rng.uniform(*base[u]) * (1.6 - d)), 1, 40)) for u, d in zip(use, dist)
    ])
    height = floors * cfg.storey_height_m + rng.uniform(0.0, 1.5, n)
    owner = rng.choice(["private", "municipal", "housing_association", "state"], size=n, p=[0.6, 0.15, 0.2, 0.05])
    return gpd.GeoDataFrame({
        "land_use": use, "floors": floors, "height_m": np.round(height, 2),
        "year_built": rng.integers(1890, 2025, n), "ownership": owner,
        "tax_status": rng.choice(["paid", "paid", "paid", "arrears", "exempt"], size=n),
        "assessed_value_eur": np.round(rng.lognormal(14.5, 0.6, n), -3),
        "security_level": rng.choice(["low", "medium", "high"], size=n, p=[0.7, 0.22, 0.08]),
        "dist": dist,
    }, geometry=placed)


def _touches_any(box: shapely.Polygon, placed: list[shapely.Polygon]) -> bool:
    return any(box.distance(p) < 6 for p in placed)


def _profiles(hours_local: pd.DatetimeIndex, holiday: np.ndarray) -> dict[str, np.ndarray]:
    """Occupancy as a share of capacity per land use and hour (no weather yet)."""
    h = hours_local.hour.to_numpy()
    dow = hours_local.day_of_week.to_numpy()
    off = (dow >= 5) | holiday.astype(bool)
    sat = dow == 5

    def bump(center: float, width: float) -> np.ndarray:
        return np.exp(-0.5 * ((h - center) / width) ** 2)

    work = (h >= 8) & (h < 18)
    residential = np.where(off, 0.75 - 0.25 * bump(14, 3), 0.9 - 0.55 * ((h >= 8) & (h < 17)))
    office = np.where(off, 0.04, 0.05 + 0.8 * work * (1 - 0.3 * bump(12.5, 0.8)))
    open_ = (h >= 9) & (h < 21)
    retail = open_ * (0.25 + 0.35 * bump(13, 1.5) + 0.45 * bump(18, 1.5)) * np.where(sat, 1.35, np.where(off, 0.55, 1.0))
    school = np.where(off, 0.0, 0.9 * ((h >= 8) & (h < 15)))
    hospital = 0.55 + 0.25 * bump(11, 3)
    leisure = (0.05 + 0.8 * bump(20.5, 1.8)) * np.where(off, 1.4, 0.8)
    return {"residential": residential, "office": office, "retail": retail, "school": school,
            "hospital": hospital, "leisure": leisure}


def generate(cfg: SampleConfig) -> SampleCity:
    """Generate the city described by ``cfg`` (same config → same city)."""
    rng = np.random.default_rng(cfg.seed)
    crs = _metric_crs(cfg)
    to_wgs = lambda geoms: gpd.GeoSeries(geoms, crs=crs).to_crs(4326)  # noqa: E731

    city_m = _boundary(cfg, rng)
    districts_m = _districts(cfg, city_m, rng)
    bld = _buildings(cfg, city_m, rng)
    bld = bld.set_crs(crs).to_crs(4326)
    city = to_wgs([city_m]).iloc[0]
    districts = gpd.GeoDataFrame({"key": [f"d{i + 1:02d}" for i in range(len(districts_m))]},
                                 geometry=list(to_wgs(districts_m)), crs=4326).set_index("key", drop=False)
    grid = h3_cells(city, cfg.h3_resolution)

    # hierarchy by the rules
    grid_parent = assign_by_overlap(grid, districts, crs=crs)
    grid = grid[grid_parent.parent.notna()].copy()
    grid["district"] = grid_parent.parent[grid.index]
    bld_parent = assign_by_point(bld, grid)
    if bld_parent.n_orphans:
        raise ValidationError(f"{bld_parent.n_orphans} buildings fall outside every grid cell", field="geometry")
    bld["grid"] = bld_parent.parent.to_numpy()
    used = set(bld["grid"])
    bld["key"] = [f"b{i + 1:05d}" for i in range(len(bld))]

    codes: dict[str, str] = {}
    rows: list[dict] = []
    root = cfg.name
    rows.append(dict(code=root, parent_code=None, level="city", name=cfg.title, geometry=city,
                     attrs={"timezone": cfg.timezone}))
    for key, d in districts.iterrows():
        codes[key] = f"{root}/{key}"
        rows.append(dict(code=codes[key], parent_code=root, level="district", name=f"District {key[1:]}",
                         geometry=d.geometry, attrs={}))
    for cell, g in grid.iterrows():
        codes[cell] = f"{codes[g['district']]}/{cell}"
        rows.append(dict(code=codes[cell], parent_code=codes[g["district"]], level="grid", name=f"H3 {cell}",
                         geometry=g.geometry, attrs={"h3": cell, "resolution": cfg.h3_resolution,
                                                     "has_buildings": cell in used}))
    metric_area = bld.to_crs(crs).geometry.area.to_numpy()
    bld["footprint_m2"] = metric_area
    for i, b in bld.iterrows():
        code = f"{codes[b['grid']]}/{b['key']}"
        codes[b["key"]] = code
        rows.append(dict(
            code=code, parent_code=codes[b["grid"]], level="building", name=f"Building {b['key'][1:]}",
            geometry=b.geometry, z_min=0.0, z_max=float(b["height_m"]),
            attrs={"land_use": b["land_use"], "floors": int(b["floors"]), "height_m": float(b["height_m"]),
                   "year_built": int(b["year_built"]), "ownership": b["ownership"],
                   "footprint_m2": round(float(b["footprint_m2"]), 1), "floors_estimated": False},
            restricted={"tax_status": b["tax_status"], "assessed_value_eur": float(b["assessed_value_eur"]),
                        "security_level": b["security_level"]},
        ))
    floors = floors_from_buildings(bld.set_index("key"), storey_height=cfg.storey_height_m)
    fb = bld.set_index("key")
    capacity = np.empty(len(floors))
    floor_use = np.empty(len(floors), dtype=object)
    for j, f in enumerate(floors.itertuples(index=False)):
        b = fb.loc[f.building]
        use = b["land_use"]
        # ground floors of offices and flats in the centre are shops
        if f.floor == 0 and use in ("office", "residential") and b["dist"] < 0.35:
            use = "retail"
        floor_use[j] = use
        capacity[j] = max(1.0, round(b["footprint_m2"] * 0.85 / M2_PER_PERSON[use]))
        rows.append(dict(
            code=f"{codes[f.building]}/f{f.floor:02d}", parent_code=codes[f.building], level="floor",
            name=f"Floor {f.floor}", geometry=b.geometry, z_min=round(float(f.z_min), 3),
            z_max=round(float(f.z_max), 3),
            attrs={"floor": int(f.floor), "use": use, "capacity": int(capacity[j]), "estimated": bool(f.estimated)},
        ))
    units = gpd.GeoDataFrame(rows, geometry="geometry", crs=4326)
    for col in ("z_min", "z_max"):
        units[col] = pd.to_numeric(units[col])
    units["restricted"] = units["restricted"].apply(lambda v: v if isinstance(v, dict) else {})

    observations = _series(cfg, rng, floors, floor_use, capacity, codes, districts, bld)
    return SampleCity(cfg, units, observations)


def _series(
    cfg: SampleConfig, rng: np.random.Generator, floors: pd.DataFrame, floor_use: np.ndarray, capacity: np.ndarray,
    codes: dict[str, str], districts: gpd.GeoDataFrame, bld: gpd.GeoDataFrame,
) -> pd.DataFrame:
    hours_local = pd.date_range(pd.Timestamp(cfg.start).tz_localize(cfg.timezone), periods=cfg.weeks * 7 * 24,
                                freq="h")
    hours_utc = hours_local.tz_convert("UTC")
    n_h = len(hours_local)
    hol_cal = holidays_lib.country_holidays(cfg.holidays_country, years=sorted({d.year for d in hours_local}))
    holiday = np.array([d.date() in hol_cal for d in hours_local], dtype=float)

    # weather: seasonal + diurnal temperature with AR(1) noise; rain as a two-state Markov chain
    doy = hours_local.day_of_year.to_numpy()
    seasonal = 10.5 - 8.5 * np.cos(2 * np.pi * (doy - 20) / 365.25)
    diurnal = 4.0 * np.sin(2 * np.pi * (hours_local.hour.to_numpy() - 9) / 24)
    noise = np.zeros(n_h)
    for t in range(1, n_h):
        noise[t] = 0.97 * noise[t - 1] + rng.normal(0, 0.45)
    wet = np.zeros(n_h, dtype=bool)
    for t in range(1, n_h):
        wet[t] = rng.random() < (0.82 if wet[t - 1] else 0.04)
    rain = np.where(wet, np.round(rng.gamma(1.2, 1.1, n_h), 1), 0.0)
    city_temp = seasonal + diurnal + noise - 1.5 * wet

    # people per floor: capacity × profile × weather × noise; events on leisure/retail buildings
    prof = _profiles(hours_local, holiday)
    share = np.stack([prof[u] for u in floor_use])  # floors × hours
    outdoor = np.isin(floor_use, ["retail", "leisure"])[:, None]
    warm = np.clip((city_temp - 18) / 10, -1, 1)[None, :]
    weather = np.where(outdoor, 1 - 0.3 * wet[None, :] + 0.15 * warm, 1 + 0.05 * wet[None, :])
    mean_people = capacity[:, None] * np.clip(share * weather, 0, ORDINARY_MOST)

    ev_rows = []
    venue = np.flatnonzero(bld["land_use"].isin(["leisure", "retail"]).to_numpy())
    n_events = cfg.events_per_week * cfg.weeks if len(venue) else 0
    floor_building = floors["building"].to_numpy()
    keys = bld["key"].to_numpy()
    for _ in range(n_events):
        b = keys[rng.choice(venue)]
        day = rng.integers(0, cfg.weeks * 7)
        start = day * 24 + int(rng.integers(17, 20))
        length = int(rng.integers(3, 5))
        on = floor_building == b
        extra = capacity[on].sum() * rng.uniform(0.6, 1.2)
        # attendance spreads over the venue's floors by capacity
        mean_people[on, start:start + length] += (extra * capacity[on] / capacity[on].sum())[:, None]
        for t in range(start, min(start + length, n_h)):
            ev_rows.append((codes[b], "event_expected", hours_utc[t], float(round(extra))))
    if cfg.end_hour is not None and cfg.tonight_events and len(venue):
        # the evening after the last observation: announced events, drawn apart so the rest stays the same
        late = np.random.default_rng(cfg.seed + 1)
        now = (cfg.weeks * 7 - 1) * 24 + cfg.end_hour
        for b in keys[late.choice(venue, size=min(cfg.tonight_events, len(venue)), replace=False)]:
            start, length = now + int(late.integers(1, 3)), int(late.integers(3, 5))
            on = floor_building == b
            extra = capacity[on].sum() * late.uniform(0.9, 1.3)
            mean_people[on, start:start + length] += (extra * capacity[on] / capacity[on].sum())[:, None]
            for t in range(start, min(start + length, n_h)):
                ev_rows.append((codes[b], "event_expected", hours_utc[t], float(round(extra))))
    people = rng.poisson(mean_people).astype(float)

    floor_codes = np.array([f"{codes[b]}/f{k:02d}" for b, k in zip(floors["building"], floors["floor"])])
    frames = [pd.DataFrame({
        "code": np.repeat(floor_codes, n_h), "variable": "people",
        "time": np.tile(hours_utc.to_numpy(), len(floor_codes)), "value": people.ravel(),
    })]
    # temperature per district: the centre is warmer (urban heat island)
    centre = districts.geometry.iloc[0]
    for key, d in districts.iterrows():
        offset = 0.9 if d.geometry.equals(centre) else rng.normal(0, 0.3)
        temp = np.round(city_temp + offset + rng.normal(0, 0.15, n_h), 2)
        frames.append(pd.DataFrame({"code": codes[key], "variable": "temperature", "time": hours_utc, "value": temp}))
    frames.append(pd.DataFrame({"code": cfg.name, "variable": "rain", "time": hours_utc, "value": rain}))
    frames.append(pd.DataFrame({"code": cfg.name, "variable": "holiday", "time": hours_utc, "value": holiday}))
    if ev_rows:
        ev = pd.DataFrame(ev_rows, columns=["code", "variable", "time", "value"])
        frames.append(ev.groupby(["code", "variable", "time"], as_index=False)["value"].sum())
    obs = pd.concat(frames, ignore_index=True)
    obs["time"] = pd.to_datetime(obs["time"], utc=True)
    if cfg.end_hour is not None:  # nothing is observed after "now"; announcements and the calendar are known ahead
        now = hours_utc[(cfg.weeks * 7 - 1) * 24 + cfg.end_hour]
        obs = obs[(obs["time"] <= now) | obs["variable"].isin(["event_expected", "holiday"])].reset_index(drop=True)
    return obs


def build_sample(
    twin: "Twin", cfg: SampleConfig, *, uri: str = "generator:sample", progress: object = None
) -> "LoadReport":
    """Generate the sample city and load it into ``twin`` in one transaction.

    Loading the same configuration twice is a no-op: the source (config hash
    plus generator version) is recognised and nothing is written again.
    """
    from ciu.domain import LoadReport, SourceInfo

    info = SourceInfo(uri=uri, sha256=cfg.sha256(), loader=LOADER, loader_version=GENERATOR_VERSION,
                      params={"name": cfg.name})
    if twin.find_source(info.sha256, info.loader, info.params):
        return LoadReport(skipped_source=True, notes=[f"sample city {cfg.name!r} with this configuration is already loaded"])
    step = progress if callable(progress) else (lambda name, n: None)
    city = generate(cfg)
    step("generated", len(city.units) + len(city.observations))

    def load(sid: int) -> tuple[LoadReport, int]:
        twin.register_variables(city.variables)
        units = twin.load_units(city.units, source_id=sid, source=uri)
        step("units", units.inserted)
        obs = twin.load_observations(city.observations, source_id=sid, source=uri)
        step("observations", obs.inserted)
        return LoadReport(inserted=units.inserted + obs.inserted, unchanged=units.unchanged + obs.unchanged,
                          notes=[f"{units.inserted} units, {obs.inserted} observations"]), units.inserted + obs.inserted

    return twin.load_source(info, load)


def generate_bulk_units(
    *, buildings: int, floors_mean: float = 10.0, seed: int = 1, name: str = "bulk", h3_resolution: int = 8,
    center_lon: float = 5.12, center_lat: float = 52.09,
) -> gpd.GeoDataFrame:
    """A large synthetic city (units only) for scale benchmarks, made fast.

    Buildings sit on a jittered lattice (no overlap test), floors are drawn
    around ``floors_mean``; districts are lattice blocks; the grid is H3. The
    hierarchy follows the same rules as the sample city.
    """
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(buildings)))
    pitch = 40.0
    crs = CRS.from_proj4(f"+proj=aeqd +lat_0={center_lat} +lon_0={center_lon} +datum=WGS84 +units=m")
    ij = np.stack(np.divmod(np.arange(buildings), side), axis=1).astype(float)
    xy = (ij - side / 2) * pitch + rng.uniform(-5, 5, (buildings, 2))
    w, h = rng.uniform(12, 28, buildings), rng.uniform(10, 24, buildings)
    boxes = shapely.box(xy[:, 0] - w / 2, xy[:, 1] - h / 2, xy[:, 0] + w / 2, xy[:, 1] + h / 2)
    half = side * pitch / 2 + 60
    city_m = shapely.box(-half, -half, half, half)
    k = 4
    edges = np.linspace(-half, half, k + 1)
    district_m = [shapely.box(edges[i], edges[j], edges[i + 1], edges[j + 1]) for i in range(k) for j in range(k)]
    to_wgs = lambda geoms: list(gpd.GeoSeries(geoms, crs=crs).to_crs(4326))  # noqa: E731
    city = to_wgs([city_m])[0]
    districts = gpd.GeoDataFrame({"key": [f"d{i + 1:02d}" for i in range(len(district_m))]},
                                 geometry=to_wgs(district_m), crs=4326).set_index("key", drop=False)
    grid = h3_cells(city, h3_resolution)
    gp = assign_by_overlap(grid, districts, crs=crs)
    grid = grid[gp.parent.notna()].copy()
    grid["district"] = gp.parent[grid.index]
    bld = gpd.GeoDataFrame({"floors": np.maximum(1, rng.poisson(floors_mean - 1, buildings) + 1)},
                           geometry=to_wgs(boxes), crs=4326)
    bp = assign_by_point(bld, grid)
    bld = bld[bp.parent.notna()].copy()
    bld["grid"] = bp.parent[bld.index]
    bld["height_m"] = bld["floors"] * 3.2
    dcode = {d: f"{name}/{d}" for d in districts.index}
    gcode = {g: f"{dcode[r]}/{g}" for g, r in grid["district"].items()}
    bcode = np.array([f"{gcode[g]}/b{i:07d}" for i, g in zip(bld.index, bld["grid"])], dtype=object)
    floors = floors_from_buildings(bld.assign(key=bcode).set_index("key"), storey_height=3.2)
    parts = [
        pd.DataFrame({"code": [name], "parent_code": [None], "level": ["city"], "geometry": [city]}),
        pd.DataFrame({"code": list(dcode.values()), "parent_code": name, "level": "district",
                      "geometry": list(districts.geometry)}),
        pd.DataFrame({"code": [gcode[g] for g in grid.index], "parent_code": [dcode[d] for d in grid["district"]],
                      "level": "grid", "geometry": list(grid.geometry)}),
        pd.DataFrame({"code": bcode, "parent_code": [gcode[g] for g in bld["grid"]], "level": "building",
                      "geometry": list(bld.geometry), "z_min": 0.0, "z_max": bld["height_m"].to_numpy(),
                      "attrs": [{"floors": int(f)} for f in bld["floors"]]}),
    ]
    geoms = np.asarray(bld.geometry.values, dtype=object)
    pos = pd.Index(bcode).get_indexer(floors["building"])
    parts.append(pd.DataFrame({
        "code": [f"{b}/f{n:02d}" for b, n in zip(floors["building"], floors["floor"])],
        "parent_code": floors["building"].to_numpy(), "level": "floor", "geometry": geoms[pos],
        "z_min": floors["z_min"].to_numpy(), "z_max": floors["z_max"].to_numpy(),
        "attrs": [{"floor": int(n)} for n in floors["floor"]],
    }))
    units = pd.concat(parts, ignore_index=True)
    return gpd.GeoDataFrame(units, geometry="geometry", crs=4326)
