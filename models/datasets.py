"""Real benchmark data sets as the models' graphs (:class:`~ciu.models.data.HierSeries`), read from
``../shared/data`` or a directory given.

- :func:`manhattan_flows`: 69 Manhattan taxi zones → 12 community districts → city,
  hourly Citi Bike (or yellow taxi) flows 2019–2020;
- :func:`taxinyc_grid`: the TaxiNYC 16×8 grid, cells → 4×2 blocks → city, 2010–2014.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from ciu.errors import ValidationError
from ciu.forecast import shares_by_group
from ciu.models.data import HierSeries, calendar_features
from ciu.models.graph import graph_from_arrays


def shared_data() -> Path:
    """``<project root>/../shared/data``."""
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def _need(path: Path) -> Path:
    if not path.exists():
        raise ValidationError("data file not found", source=str(path))
    return path


def manhattan_districts(root: Path | None = None) -> pd.DataFrame:
    """Zone (graph id order) → Manhattan community district (101–112), by largest overlap.

    Zones that overlap no district (harbour islands) go to the nearest one.
    """
    from ciu.ingest.hierarchy import assign_by_overlap

    root = root or shared_data()
    zones = gpd.read_file(_need(root / "nyc" / "zones" / "taxi_zones.shp"))
    table = pd.read_csv(_need(root / "nyc" / "zones" / "manhattan_zones.csv")).sort_values("graph_id")
    # LocationID 103 appears three times; OBJECTID 103, 104, 105 are those polygons, in order,
    # and match the csv's zone ids 103, 104, 105 (graph ids 18, 19, 20): join by position.
    zones = zones.set_index("OBJECTID").loc[table["zone_id"].to_numpy()].reset_index()
    zones.index = table["graph_id"].to_numpy()
    cds = gpd.read_file(_need(root / "nyc" / "boundaries" / "nycd_24c" / "nycd.shp"))
    cds = cds[(cds["BoroCD"] >= 101) & (cds["BoroCD"] <= 112)].set_index("BoroCD")
    got = assign_by_overlap(zones, cds, crs=zones.crs).parent
    missing = got.isna()
    if missing.any():
        near = gpd.sjoin_nearest(zones[missing], cds.reset_index()[["BoroCD", "geometry"]], how="left")
        got[missing] = near.groupby(level=0)["BoroCD"].first().reindex(got.index[missing]).to_numpy()
    return pd.DataFrame({"graph_id": table["graph_id"].to_numpy(), "zone_id": table["zone_id"].to_numpy(),
                         "zone_name": table["zone_name"].to_numpy(), "district": got.astype(int).to_numpy()})


def _zone_adjacency(root: Path) -> np.ndarray:
    adj = pd.read_csv(_need(root / "nyc" / "zones" / "W_adj_matrix.csv")).to_numpy()
    src, dst = np.nonzero(adj)
    keep = src != dst
    return np.stack([src[keep], dst[keep]]).astype(np.int64)


def manhattan_flows(root: Path | None = None, *, mode: str = "bike") -> HierSeries:
    """Hourly flows of the 69 Manhattan zones as a zone → district → city graph.

    Channels: ``departures`` (0) and ``arrivals`` (1) for bike; ``dropoffs`` (0) and
    ``pickups`` (1) for taxi. External features: calendar and US federal holidays.
    """
    import holidays as holidays_lib

    root = root or shared_data()
    if mode not in ("bike", "taxi"):
        raise ValidationError(f"mode must be 'bike' or 'taxi', not {mode!r}", field="mode")
    path = _need(root / "nyc" / "flows" / f"201901-202012-NYC{mode}-inoutflow.npz")
    values = np.load(path)["arr_0"].astype(np.float64)  # (T, 69, 2)
    times = pd.date_range("2019-01-01", periods=values.shape[0], freq="h")
    cd = manhattan_districts(root)
    districts = sorted(cd["district"].unique())
    parent0 = pd.Index(districts).get_indexer(cd["district"])
    hol = holidays_lib.country_holidays("US", years=[2019, 2020])
    cal, names = calendar_features(times, np.array([d.date() in hol for d in times], dtype=float))
    # static: one-hot district membership is implied by the graph; zone activity level is learned
    zone_static = np.eye(1, dtype=np.float32).repeat(len(cd), axis=0)
    channels = ["departures", "arrivals"] if mode == "bike" else ["dropoffs", "pickups"]
    return graph_from_arrays(
        levels=["zone", "district", "city"],
        codes=[[f"nyc/mn{d - 100:02d}/z{z:03d}" for z, d in zip(cd["zone_id"], cd["district"])],
               [f"nyc/mn{d - 100:02d}" for d in districts], ["nyc"]],
        parents=[parent0, np.zeros(len(districts), dtype=np.int64)],
        values=values, times=times, channels=channels, external=cal, external_names=names,
        static=[zone_static, np.ones((len(districts), 1), np.float32), np.ones((1, 1), np.float32)],
        neighbours=[_zone_adjacency(root), np.zeros((2, 0)), np.zeros((2, 0))])


#: the TaxiNYC test period (published protocol): the last 28 days
TAXINYC_TEST = (pd.Timestamp("2014-12-04 00:00"), pd.Timestamp("2014-12-31 23:00"))


def taxinyc_grid(root: Path | None = None, *, start: str = "2010-01-01") -> HierSeries:
    """TaxiNYC 16×8 as cells → blocks (4×2 cells) → city, on a complete hourly index.

    Duplicate time stamps are merged (the copy with the larger total wins, so
    zero-filled duplicates lose); missing hours (September) and hours whose
    whole grid is zero are masked for training. The test period is kept as is.
    """
    import h5py

    root = root or shared_data()
    frames, stamps = [], []
    for year in range(10, 15):
        with h5py.File(_need(root / "taxinyc-16x8" / f"NYC{year}_Taxi_M16x8_T60_InOut.h5"), "r") as f:
            frames.append(f["data"][:].astype(np.float64))
            stamps.append(pd.to_datetime([s.decode() for s in f["date"][:]], format="%Y%m%d%H"))
    data = np.concatenate(frames)  # (n, 2, 16, 8)
    times = pd.DatetimeIndex(np.concatenate([s.to_numpy() for s in stamps]))
    total = data.sum(axis=(1, 2, 3))
    order = np.lexsort((-total, times.to_numpy()))
    keep = order[~pd.Index(times[order]).duplicated()]
    data, times = data[keep], times[keep]
    full = pd.date_range(pd.Timestamp(start), TAXINYC_TEST[1], freq="h")
    idx = full.get_indexer(times)
    inside = idx >= 0
    values = np.full((len(full), 128, 2), np.nan)
    values[idx[inside]] = data[inside].transpose(0, 2, 3, 1).reshape(inside.sum(), 128, 2)
    zero = np.nansum(values, axis=(1, 2)) == 0
    mask = ~np.isnan(values).any(axis=(1, 2)) & ~zero
    test = full >= TAXINYC_TEST[0]
    mask[test] = True
    hol_days = {pd.Timestamp(x.strip()).date() for x in
                _need(root / "taxinyc-16x8" / "NY_Holiday.txt").read_text().split() if x.strip()}
    cal, names = calendar_features(full, np.array([d.date() in hol_days for d in full], dtype=float))
    rows, cols = np.divmod(np.arange(128), 8)
    block = (rows // 4) * 2 + cols // 4  # 4 × 2 blocks of 4 × 4 cells
    edges = [(i, j) for i in range(128) for j in range(128)
             if abs(rows[i] - rows[j]) + abs(cols[i] - cols[j]) == 1]
    return graph_from_arrays(
        levels=["cell", "block", "city"],
        codes=[[f"nyc/b{b:02d}/c{r:02d}{c:02d}" for b, r, c in zip(block, rows, cols)],
               [f"nyc/b{b:02d}" for b in range(8)], ["nyc"]],
        parents=[block, np.zeros(8, dtype=np.int64)], values=values, times=full, channels=["inflow", "outflow"],
        external=cal, external_names=names,
        static=[np.stack([rows / 15, cols / 7], axis=1).astype(np.float32), np.ones((8, 1), np.float32),
                np.ones((1, 1), np.float32)],
        neighbours=[np.array(edges, dtype=np.int64).T, np.zeros((2, 0)), np.zeros((2, 0))], mask=mask)


def sample_city_graph(config: object | None = None) -> HierSeries:
    """The generated sample city as a graph, straight from the generator (no database).

    Used by the benchmarks; :func:`ciu.models.graph.build_graph` gives the same graph
    from a twin that holds the city.
    """
    from ciu.ingest.generator import SampleConfig, generate
    from ciu.ingest.hierarchy import local_crs
    from ciu.models.graph import adjacency, static_features

    cfg = config if isinstance(config, SampleConfig) else SampleConfig()
    city = generate(cfg)
    units = city.units.set_index("code")
    units["area_m2"] = units.geometry.to_crs(local_crs(units)).area
    levels = ["floor", "building", "grid", "district", "city"]
    frames = {lv: units[units["level"] == lv] for lv in levels}
    obs = city.observations
    times = pd.DatetimeIndex(sorted(obs["time"].unique())).tz_convert("UTC").tz_localize(None)
    people = obs[obs["variable"] == "people"]
    bottom = frames["floor"]
    grid = np.full((len(times), len(bottom), 1), np.nan)
    grid[times.get_indexer(pd.DatetimeIndex(people["time"]).tz_convert("UTC").tz_localize(None)),
         pd.Index(bottom.index).get_indexer(people["code"]), 0] = people["value"].to_numpy()

    def hourly(var: str) -> np.ndarray:
        o = obs[obs["variable"] == var]
        s = o.groupby(pd.DatetimeIndex(o["time"]).tz_convert("UTC").tz_localize(None))["value"].mean()
        return s.reindex(times).fillna(0.0).to_numpy()

    cal, names = calendar_features(times, hourly("holiday"))
    external = np.concatenate([cal, np.stack([hourly("temperature"), hourly("rain")], axis=1)], axis=1)
    capacity = frames["floor"]["attrs"].apply(lambda a: float(a.get("capacity", np.nan))).to_numpy()
    parents = [pd.Index(frames[hi].index).get_indexer(frames[lo]["parent_code"]) for lo, hi in zip(levels, levels[1:])]
    graph = graph_from_arrays(
        levels=levels, codes=[list(frames[lv].index) for lv in levels], parents=parents, values=grid, times=times,
        channels=["people"], external=external, external_names=names + ["temperature", "rain"],
        static=[static_features(frames[lv]) for lv in levels],
        neighbours=[adjacency(frames[lv], lv) for lv in levels], timezone=cfg.timezone, capacity=capacity)
    ev = obs[obs["variable"] == "event_expected"]
    cov = np.zeros((len(times), len(bottom), 1))
    if len(ev):
        b_index = pd.Index(frames["building"].index)
        member = parents[0]
        ti = times.get_indexer(pd.DatetimeIndex(ev["time"]).tz_convert("UTC").tz_localize(None))
        bi = b_index.get_indexer(ev["code"])
        per_b = np.zeros((len(times), len(b_index)))
        np.add.at(per_b, (ti, bi), ev["value"].to_numpy())
        cov[:, :, 0] = per_b[:, member] * shares_by_group(capacity, member)
    graph.covariates = cov.astype(np.float32)
    return graph
