"""Manhattan from public data: the real sample city.

Levels and where they come from (``DATA`` is ``../shared/data/nyc`` or any
directory with the same files):

- city: the Manhattan borough boundary (``boundaries/nybb_24c``);
- district: the 12 Manhattan community districts 101–112
  (``boundaries/nycd_24c``), each with the 2020 NTAs it overlaps most as the
  ``ntas`` attribute;
- grid: the 69 Manhattan taxi zones (``zones/``), joined by position with
  ``manhattan_zones.csv`` so that the three island polygons of LocationID 103
  stay three units (``z103``, ``z104``, ``z105``, graph ids 18–20) and the
  flow arrays map one to one;
- building: the Local Law 24 footprints with roof heights (floors estimated
  from the height and flagged), and the Local Law 84 benchmarking records
  (point location and floor area, flagged as having no footprint);
- floor: made from the estimated floor counts of the footprints.

Observations (hours are NYC local wall-clock hours, stored as UTC instants;
see :func:`ciu.ingest.arrays.localize_wall_clock`): Citi Bike departures
(channel 0) and arrivals (channel 1), taxi drop-offs (channel 0) and
pick-ups (channel 1) per zone and hour 2019–2020; Central Park daily maximum
temperature (°F converted to °C), daily crashes and injured persons for the
city; New York public holidays; injury collisions per zone (static).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ciu.domain import LoadReport, SourceInfo, Variable
from ciu.errors import ValidationError
from ciu.ingest.arrays import ArrayLoader, ArrayMapping
from ciu.ingest.base import file_sha256
from ciu.ingest.builder import LevelLayer, build_hierarchy, floor_units
from ciu.ingest.hierarchy import assign_by_overlap, assign_by_point
from ciu.ingest.pipeline import load_series, load_unit_frame
from ciu.ingest.vector import VectorLoader

if TYPE_CHECKING:
    from ciu.twin import Twin

VERSION = "1"
LOADER = "ingest.nyc"
TZ = "America/New_York"
CITY = "manhattan"
FEET = 0.3048
SQFT = 0.09290304
#: hourly flows: 2019-01-01 00:00 → 2020-12-31 23:00, NYC wall clock
FLOW_HOURS = 17544
STOREY_HEIGHT_M = 3.0

VARIABLES: tuple[Variable, ...] = (
    Variable("bike_departures", "trips", "social", "sum", "sum",
             description="Citi Bike trips starting in the unit (by start hour)"),
    Variable("bike_arrivals", "trips", "social", "sum", "sum",
             description="Citi Bike trips ending in the unit (by stop hour)"),
    Variable("taxi_dropoffs", "trips", "social", "sum", "sum",
             description="yellow taxi trips ending in the unit (by pick-up hour)"),
    Variable("taxi_pickups", "trips", "social", "sum", "sum",
             description="yellow taxi trips starting in the unit (by pick-up hour)"),
    Variable("temperature_max", "degC", "external", "area_weighted_mean", "max",
             description="daily maximum air temperature, Central Park"),
    Variable("crashes", "crashes", "social", "sum", "sum", description="motor vehicle collisions per day"),
    Variable("crash_injured", "persons", "social", "sum", "sum", description="persons injured in collisions per day"),
    Variable("holiday", "flag", "external", "max", "max", description="public holiday (1) or not (0)"),
    Variable("injury_collisions", "collisions", "social", "sum", "sum",
             description="collisions with injuries in the unit (static; the file has no dates: stamped at the "
                         "start of the study period)"),
)


@dataclass(frozen=True)
class NycFiles:
    """The files of the Manhattan data set under one directory."""

    root: Path

    def __post_init__(self) -> None:
        for path in self.all():
            if not path.is_file():
                raise ValidationError("file of the Manhattan data set is missing", source=str(path))

    @property
    def borough(self) -> Path:
        return self.root / "boundaries/nybb_24c/nybb.shp"

    @property
    def districts(self) -> Path:
        return self.root / "boundaries/nycd_24c/nycd.shp"

    @property
    def ntas(self) -> Path:
        return self.root / "boundaries/nynta2020_24c/nynta2020.shp"

    @property
    def zones(self) -> Path:
        return self.root / "zones/taxi_zones.shp"

    @property
    def zone_table(self) -> Path:
        return self.root / "zones/manhattan_zones.csv"

    @property
    def footprints(self) -> tuple[Path, ...]:
        return tuple(self.root / f"buildings/nyc_ll24_2018_{s}.geojson" for s in ("solarready", "completed",
                                                                                   "inprogress"))

    @property
    def benchmarking(self) -> Path:
        return self.root / "buildings/ll84_2017_cy2016_formatted.csv"

    @property
    def bike(self) -> Path:
        return self.root / "flows/201901-202012-NYCbike-inoutflow.npz"

    @property
    def taxi(self) -> Path:
        return self.root / "flows/201901-202012-NYCtaxi-inoutflow.npz"

    @property
    def crash_weather(self) -> Path:
        return self.root / "risk/NYC_Crash_and_Weather.xlsx"

    @property
    def injury_collisions(self) -> Path:
        return self.root / "risk/nyc-injurious-collisions.geojson"

    def all(self) -> list[Path]:
        return [self.borough, self.districts, self.ntas, self.zones, self.zone_table, *self.footprints,
                self.benchmarking, self.bike, self.taxi, self.crash_weather, self.injury_collisions]


def default_data_dir() -> Path | None:
    """``../shared/data/nyc`` next to the project checkout, when present."""
    from ciu.settings import project_root

    root = project_root()
    if root is None:
        return None
    path = root.parent / "shared" / "data" / "nyc"
    return path if path.is_dir() else None


@dataclass
class BuildReport:
    """What a Manhattan build did, load by load."""

    loads: list[tuple[str, LoadReport]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, what: str, report: LoadReport) -> None:
        self.loads.append((what, report))
        if not report.skipped_source:
            self.notes.extend(report.notes)

    def lines(self) -> list[str]:
        out = []
        for what, r in self.loads:
            state = "already loaded" if r.skipped_source else f"{r.inserted:,} new, {r.unchanged:,} unchanged"
            extra = f", {r.conflicts:,} conflicting values kept as stored" if r.conflicts else ""
            out.append(f"{what}: {state}{extra} (source #{r.source_id})")
        return out + self.notes


def _info(path: Path, loader: str, params: dict[str, Any] | None = None, *, sha: str | None = None) -> SourceInfo:
    return SourceInfo(uri=str(path), sha256=sha or file_sha256(path), loader=loader, loader_version=VERSION,
                      params=params or {})


# -- layers ---------------------------------------------------------------------
def city_layer(files: NycFiles) -> LevelLayer:
    boroughs = VectorLoader().read(files.borough, key="BoroCode", columns=("BoroName",)).frame
    mn = boroughs[boroughs["BoroCode"].astype(int) == 1].copy()
    if len(mn) != 1:
        raise ValidationError("no single Manhattan (BoroCode 1) feature", source=str(files.borough), field="BoroCode")
    mn["key"] = CITY
    mn["timezone"] = TZ
    return LevelLayer("city", mn, key="key", name="BoroName", attrs=("BoroCode", "timezone"))


def district_layer(files: NycFiles) -> LevelLayer:
    cds = VectorLoader().read(files.districts, key="BoroCD").frame
    cds["BoroCD"] = cds["BoroCD"].astype(int)
    mn = cds[cds["BoroCD"].between(101, 112)].copy().set_index("BoroCD", drop=False)
    if len(mn) != 12:
        raise ValidationError(f"{len(mn)} Manhattan community districts 101–112, not 12", source=str(files.districts),
                              field="BoroCD")
    ntas = VectorLoader().read(files.ntas, key="NTA2020", columns=("BoroName", "NTAName")).frame
    ntas = ntas[ntas["BoroName"] == "Manhattan"].set_index("NTA2020", drop=False)
    home = assign_by_overlap(ntas, mn).parent
    mn["ntas"] = [sorted(home.index[home == cd].tolist()) for cd in mn.index]
    mn["nta_names"] = [sorted(ntas.loc[home.index[home == cd], "NTAName"].tolist()) for cd in mn.index]
    mn["key"] = [f"mn{cd - 100:02d}" for cd in mn["BoroCD"]]
    mn["name"] = [f"Manhattan Community District {cd - 100}" for cd in mn["BoroCD"]]
    return LevelLayer("district", mn.reset_index(drop=True), key="key", name="name",
                      attrs=("BoroCD", "ntas", "nta_names"))


def zone_layer(files: NycFiles) -> LevelLayer:
    """The 69 Manhattan taxi zones in graph order (the order of the flow arrays)."""
    zones = VectorLoader().read(files.zones, key="OBJECTID", columns=("LocationID", "zone", "borough")).frame
    mn = zones[zones["borough"] == "Manhattan"].sort_values("OBJECTID").reset_index(drop=True)
    table = pd.read_csv(files.zone_table)
    for name in ("zone_id", "graph_id", "zone_name"):
        if name not in table.columns:
            raise ValidationError(f"missing column {name!r}", source=str(files.zone_table), field=name)
    table = table.sort_values("graph_id").reset_index(drop=True)
    if len(table) != len(mn) or not (table["graph_id"].to_numpy() == np.arange(len(mn))).all():
        raise ValidationError(f"{len(table)} zones with graph ids, the shapefile has {len(mn)} Manhattan zones",
                              source=str(files.zone_table), field="graph_id")
    # join by position; the island triplet (zone_id 103, 104, 105) is LocationID 103 three times
    expected = table["zone_id"].where(~table["zone_id"].isin([104, 105]), 103).to_numpy()
    wrong = np.flatnonzero(mn["LocationID"].astype(int).to_numpy() != expected)
    if len(wrong):
        i = int(wrong[0])
        raise ValidationError(f"zone at position {i} is LocationID {mn['LocationID'].iloc[i]}, the table says "
                              f"{table['zone_id'].iloc[i]}", source=str(files.zone_table), row=i, field="zone_id")
    mn["zone_id"] = table["zone_id"].to_numpy()
    mn["graph_id"] = table["graph_id"].to_numpy()
    mn["key"] = [f"{z:03d}" for z in mn["zone_id"]]
    mn["LocationID"] = mn["LocationID"].astype(int)
    return LevelLayer("grid", mn, key="key", prefix="z", name="zone",
                      attrs=("LocationID", "zone_id", "graph_id", "OBJECTID"), outside="nearest")


def footprint_layer(files: NycFiles) -> tuple[LevelLayer, dict[str, int]]:
    """LL24 footprints (unique by BIN, the first list wins); returns also BIN → index of its file."""
    frames = []
    for i, path in enumerate(files.footprints):
        f = VectorLoader().read(path, key="bin", columns=("heightroof", "cnstrct_yr", "base_bbl")).frame
        f["list"] = path.stem.rsplit("_", 1)[-1]
        f["file"] = i
        frames.append(f)
    allf = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs="EPSG:4326")
    lists = allf.groupby("bin")["list"].agg(lambda s: sorted(set(s)))
    bld = allf.drop_duplicates("bin").reset_index(drop=True)
    bld["ll24_lists"] = bld["bin"].map(lists)
    height_ft = pd.to_numeric(bld["heightroof"], errors="coerce")
    bld["height_m"] = (height_ft * FEET).round(2).where(height_ft > 0)
    bld["floors"] = np.where(bld["height_m"].notna(),
                             np.maximum(1, np.round(bld["height_m"] / STOREY_HEIGHT_M)), np.nan)
    bld["floors_estimated"] = bld["height_m"].notna()
    bld["heightroof_ft"] = height_ft
    bld["footprint"] = True
    bld["z_min"] = np.where(bld["height_m"].notna(), 0.0, np.nan)
    bld["z_max"] = bld["height_m"]
    bld["cnstrct_yr"] = pd.to_numeric(bld["cnstrct_yr"], errors="coerce")
    bld["label"] = bld["name"].fillna("").where(bld["name"].fillna("") != "", "BIN " + bld["bin"].astype(str)) \
        if "name" in bld.columns else "BIN " + bld["bin"].astype(str)
    origin = {str(b): int(f) for b, f in zip(bld["bin"], bld["file"])}
    layer = LevelLayer("building", bld, key="bin", prefix="b", name="label", z=("z_min", "z_max"),
                       attrs=("bin", "base_bbl", "cnstrct_yr", "heightroof_ft", "height_m", "floors",
                              "floors_estimated", "footprint", "ll24_lists"))
    return layer, origin


def benchmarking_layer(files: NycFiles) -> tuple[LevelLayer, int]:
    """LL84 records with a location, as points; returns also how many records had none."""
    table = pd.read_csv(files.benchmarking, low_memory=False)
    for name in ("order", "latitude", "longitude", "sq_footage"):
        if name not in table.columns:
            raise ValidationError(f"missing column {name!r}", source=str(files.benchmarking), field=name)
    has = table["latitude"].notna() & table["longitude"].notna()
    rec = table[has].copy()
    bad = ~(rec["latitude"].between(-90, 90) & rec["longitude"].between(-180, 180))
    if bad.any():
        i = int(rec.index[bad.to_numpy()][0])
        raise ValidationError("latitude/longitude out of range", source=str(files.benchmarking), row=i,
                              field="latitude")
    geoms = shapely.points(rec["longitude"].to_numpy(dtype=float), rec["latitude"].to_numpy(dtype=float))
    rec = gpd.GeoDataFrame(rec, geometry=list(geoms), crs="EPSG:4326")
    rec["floor_area_m2"] = (pd.to_numeric(rec["sq_footage"], errors="coerce") * SQFT).round(1)
    rec["footprint"] = False
    rec["label"] = rec["prop_name"].fillna("").astype(str).str.strip()
    rec["label"] = rec["label"].where(rec["label"] != "", "LL84 record " + rec["order"].astype(str))
    layer = LevelLayer("building", rec.reset_index(drop=True), key="order", prefix="bm", name="label",
                       attrs=("order", "bbl", "prop_type", "year_built", "sq_footage", "floor_area_m2", "site_eui",
                              "total_ghg", "footprint"), rule="point")
    return layer, int((~has).sum())


# -- the build ---------------------------------------------------------------------
def build_nyc(twin: Twin, data: Path | str, *, flows: bool = True, hours: int | None = None,
              progress: Callable[[str], None] | None = None) -> BuildReport:
    """Build Manhattan into ``twin`` from the files under ``data``.

    Every file is one source and one transaction; re-running changes nothing.

    Parameters
    ----------
    flows
        Load the hourly bike and taxi flows (the bulk of the data).
    hours
        Load only the first ``hours`` hours of the flows (tests); the source
        parameters record the slice, so a later full load appends the rest.
    """
    files = NycFiles(Path(data))
    say = progress or (lambda _msg: None)
    report = BuildReport()
    if tuple(twin.levels) != ("floor", "building", "grid", "district", "city"):
        raise ValidationError(f"Manhattan needs the levels floor, building, grid, district, city; the twin has "
                              f"{list(twin.levels)}", field="levels")
    twin.register_variables(VARIABLES)

    say("areas")
    city, districts, zones = city_layer(files), district_layer(files), zone_layer(files)
    tree = build_hierarchy([city, districts, zones], levels=twin.levels)
    report.notes.extend(tree.orphan_report())
    for level, path, loader in (("city", files.borough, "boundary"), ("district", files.districts, "districts"),
                                ("grid", files.zones, "zones")):
        part = tree.units[tree.units["level"] == level]
        params = {"level": level} if level != "district" else {"level": level, "ntas": file_sha256(files.ntas)}
        if level == "grid":
            params["table"] = file_sha256(files.zone_table)
        report.add(f"{level} ({path.name})", load_unit_frame(twin, part, _info(path, f"{LOADER}.{loader}", params)))
    zone_units = tree.units[tree.units["level"] == "grid"].set_index("code", drop=False)

    say("buildings")
    _load_footprints(twin, files, zone_units, report)
    _load_benchmarking(twin, files, zone_units, report)

    say("city series")
    _load_crash_weather(twin, files, report)
    _load_holidays(twin, report)
    _load_collisions(twin, files, zone_units, report)
    if flows:
        graph_codes = pd.Series(zone_units["code"].to_numpy(),
                                index=[a["graph_id"] for a in zone_units["attrs"]]).sort_index()
        if not (graph_codes.index.to_numpy() == np.arange(len(graph_codes))).all():
            raise ValidationError("graph ids of the zones are not 0..n-1", source=str(files.zone_table),
                                  field="graph_id")
        for mode, path, channels in (("bike", files.bike, {0: "bike_departures", 1: "bike_arrivals"}),
                                     ("taxi", files.taxi, {0: "taxi_dropoffs", 1: "taxi_pickups"})):
            say(f"{mode} flows")
            report.add(f"{mode} flows ({path.name})", load_flows(twin, path, graph_codes.tolist(), channels,
                                                                 hours=hours))
    return report


def load_flows(twin: Twin, path: Path, codes: list[str], channels: dict[int, str], *,
               hours: int | None = None) -> LoadReport:
    """One flow array ``(hour, zone, channel)`` of the 2019–2020 period; ``hours`` loads a prefix."""
    times = pd.date_range("2019-01-01", periods=FLOW_HOURS, freq="h")
    params: dict[str, Any] = {"channels": {str(k): v for k, v in channels.items()}, "tz": TZ}
    if hours is not None:
        params["hours"] = hours
    info = _info(path, f"{LOADER}.flows", params)
    known = twin.find_source(info.sha256, info.loader, info.params)
    if known is not None:  # recognised before the arrays are unpacked
        return LoadReport(source_id=known.id, skipped_source=True,
                          notes=[f"{path}: already loaded as source #{known.id}, nothing to do"])
    data = ArrayLoader._array(path, "arr_0", source=str(path))
    if hours is not None:
        if data.shape[:1] != (FLOW_HOURS,):
            raise ValidationError(f"array has shape {data.shape}, expected {FLOW_HOURS} hours first",
                                  source=str(path), field="arr_0")
        data, times = data[:hours], times[:hours]
    mapping = ArrayMapping(key="arr_0", units=codes, times=times, channels=channels, tz=TZ)
    from ciu.ingest.arrays import series_from_array

    series = series_from_array(data, mapping, source=str(path), loader=f"{LOADER}.flows")
    return load_series(twin, series, info, codes=series.frame["key"])


def _load_footprints(twin: Twin, files: NycFiles, zones: gpd.GeoDataFrame, report: BuildReport) -> None:
    layer, origin = footprint_layer(files)
    tree = build_hierarchy([layer], levels=twin.levels, existing={"grid": zones})
    report.notes.extend(f"LL24 footprints: {line}" for line in tree.orphan_report())
    bld = tree.units.set_index("code", drop=False)
    bld["floors"] = bld["attrs"].map(lambda a: a.get("floors"))
    bld["height_m"] = bld["attrs"].map(lambda a: a.get("height_m"))
    with_height = bld[bld["height_m"].notna()]
    floors = floor_units(with_height, floors_column="floors_given", height_column="height_m",
                         storey_height=STOREY_HEIGHT_M)
    bins = bld["attrs"].map(lambda a: str(a["bin"]))
    floor_bins = floors["parent_code"].map(dict(zip(bld["code"], bins)))
    for i, path in enumerate(files.footprints):
        mine = bins.map(origin) == i
        units = pd.concat([bld[mine.to_numpy()].drop(columns=["floors", "height_m"]),
                           floors[(floor_bins.map(origin) == i).to_numpy()]], ignore_index=True)
        units = gpd.GeoDataFrame(units, geometry="geometry", crs="EPSG:4326")
        info = _info(path, f"{LOADER}.footprints", {"storey_height_m": STOREY_HEIGHT_M})
        report.add(f"buildings and floors ({path.name})", load_unit_frame(twin, units, info))


def _load_benchmarking(twin: Twin, files: NycFiles, zones: gpd.GeoDataFrame, report: BuildReport) -> None:
    layer, no_location = benchmarking_layer(files)
    tree = build_hierarchy([layer], levels=twin.levels, existing={"grid": zones})
    report.notes.extend(f"LL84 records: {line}" for line in tree.orphan_report())
    if no_location:
        report.notes.append(f"LL84 records: {no_location} without latitude/longitude left out")
    info = _info(files.benchmarking, f"{LOADER}.benchmarking")
    report.add(f"benchmarking records ({files.benchmarking.name})", load_unit_frame(twin, tree.units, info))


def _daily(values: pd.Series, dates: pd.Series, variable: str, rows: np.ndarray) -> pd.DataFrame:
    local = pd.DatetimeIndex(pd.to_datetime(dates)).normalize().tz_localize(TZ)
    return pd.DataFrame({"key": CITY, "variable": variable, "time": local.tz_convert("UTC"),
                         "value": values.to_numpy(dtype=float), "row": rows})


def _load_crash_weather(twin: Twin, files: NycFiles, report: BuildReport) -> None:
    from ciu.ingest.base import Series

    path = files.crash_weather
    try:
        table = pd.read_excel(path, engine="openpyxl")
    except (OSError, ValueError, KeyError) as exc:
        raise ValidationError(f"cannot be read as a workbook ({exc})", source=str(path)) from exc
    for name in ("Date", "Max Temp (F)", "Total accidents", "Total injured"):
        if name not in table.columns:
            raise ValidationError(f"missing column {name!r}", source=str(path), field=name)
    rows = np.arange(len(table))
    dates = pd.to_datetime(table["Date"], errors="coerce")
    if dates.isna().any():
        i = int(np.flatnonzero(dates.isna().to_numpy())[0])
        raise ValidationError("date is missing or not a date", source=str(path), row=i, field="Date")
    parts = []
    temp_f = pd.to_numeric(table["Max Temp (F)"], errors="coerce")
    has = temp_f.notna().to_numpy()
    parts.append(_daily(((temp_f - 32) * 5 / 9).round(2)[has], dates[has], "temperature_max", rows[has]))
    for column, variable in (("Total accidents", "crashes"), ("Total injured", "crash_injured")):
        values = pd.to_numeric(table[column], errors="coerce")
        bad = (values.isna() | (values < 0)).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValidationError(f"count {table[column].iloc[i]!r} is missing or negative", source=str(path), row=i,
                                  field=column)
        parts.append(_daily(values, dates, variable, rows))
    frame = pd.concat(parts, ignore_index=True)
    series = Series(frame=frame, uri=str(path), loader=f"{LOADER}.crash_weather", loader_version=VERSION)
    report.add(f"city daily series ({path.name})", load_series(twin, series, _info(path, series.loader, {"tz": TZ}),
                                                               codes=frame["key"]))
    if (~has).any():
        report.notes.append(f"{path.name}: {int((~has).sum())} days without a temperature left out")


def _load_holidays(twin: Twin, report: BuildReport, *, years: tuple[int, ...] = (2019, 2020)) -> None:
    import hashlib

    import holidays as holidays_lib

    from ciu.ingest.base import Series

    calendar = holidays_lib.country_holidays("US", subdiv="NY", years=list(years))
    days = pd.date_range(f"{years[0]}-01-01", f"{years[-1]}-12-31", freq="D")
    flag = pd.Series([1.0 if d.date() in calendar else 0.0 for d in days])
    frame = _daily(flag, pd.Series(days), "holiday", np.arange(len(days)))
    listing = ",".join(f"{d}:{n}" for d, n in sorted(calendar.items()))
    sha = hashlib.sha256(listing.encode()).hexdigest()
    uri = f"holidays {holidays_lib.__version__}: US/NY {years[0]}–{years[-1]}"
    series = Series(frame=frame, uri=uri, loader=f"{LOADER}.holidays", loader_version=VERSION)
    info = SourceInfo(uri=uri, sha256=sha, loader=series.loader, loader_version=VERSION,
                      params={"country": "US", "subdiv": "NY", "years": list(years)})
    report.add("holidays (US/NY)", load_series(twin, series, info, codes=frame["key"]))


def _load_collisions(twin: Twin, files: NycFiles, zones: gpd.GeoDataFrame, report: BuildReport) -> None:
    from ciu.ingest.base import Series

    path = files.injury_collisions
    points = VectorLoader().read(path, columns=("NUMBER OF PERSONS INJURED",)).frame
    found = assign_by_point(points, zones)
    counts = found.parent.dropna().value_counts()
    zone_codes = zones.index.to_numpy()
    values = pd.Series(counts, index=zone_codes).fillna(0.0)
    start = pd.Timestamp("2019-01-01").tz_localize(TZ).tz_convert("UTC")
    frame = pd.DataFrame({"key": zone_codes, "variable": "injury_collisions", "time": start,
                          "value": values.to_numpy(dtype=float), "row": np.arange(len(zone_codes))})
    series = Series(frame=frame, uri=str(path), loader=f"{LOADER}.collisions", loader_version=VERSION)
    report.add(f"injury collisions per zone ({path.name})",
               load_series(twin, series, _info(path, series.loader), codes=frame["key"]))
    report.notes.append(f"{path.name}: {int(found.parent.notna().sum())} of {len(points)} collisions fall in the "
                        f"69 Manhattan zones")


def check_against_files(twin: Twin, data: Path | str, *, modes: tuple[str, ...] = ("bike", "taxi")
                        ) -> dict[str, tuple[float, float]]:
    """Flow totals in the twin next to the same totals computed from the raw arrays."""
    files = NycFiles(Path(data))
    out: dict[str, tuple[float, float]] = {}
    for mode, path, channels in (("bike", files.bike, ("bike_departures", "bike_arrivals")),
                                 ("taxi", files.taxi, ("taxi_dropoffs", "taxi_pickups"))):
        if mode not in modes:
            continue
        arr = ArrayLoader._array(path, "arr_0", source=str(path))
        for c, name in enumerate(channels):
            stored = twin.observations(name, level="grid")["value"].sum()
            out[name] = (float(stored), float(arr[:, :, c].sum()))
    return out

