"""Manhattan from the real files in ../shared/data/nyc, checked against the raw files."""

from __future__ import annotations

from collections.abc import Iterator

import holidays
import numpy as np
import pandas as pd
import pytest

from ciu.ingest.nyc import FLOW_HOURS, TZ, NycFiles, build_nyc, check_against_files, load_flows
from ciu.twin import Twin
from tests.conftest import SHARED_DATA, fingerprint

NYC = SHARED_DATA / "nyc"
HOURS = 48


@pytest.fixture(scope="module")
def manhattan(pg_server, empty_template) -> Iterator[Twin]:
    """Manhattan with the first 48 hours of the flows (one build for the module)."""
    name = pg_server.create(empty_template)
    twin = Twin.connect(pg_server.url_for(name), migrate=False)
    try:
        twin.build_report = build_nyc(twin, NYC, hours=HOURS)  # type: ignore[attr-defined]
        yield twin
    finally:
        twin.close()
        pg_server.drop(name)


def _flows(path) -> np.ndarray:
    with np.load(path) as npz:
        return npz["arr_0"]


def test_levels_and_counts(manhattan):
    counts = manhattan.store.count_units()
    assert counts["city"] == 1 and counts["district"] == 12 and counts["grid"] == 69
    city = manhattan.unit("manhattan")
    assert sorted(c.rsplit("/", 1)[1] for c in manhattan.store.child_codes("manhattan")) == \
        [f"mn{i:02d}" for i in range(1, 13)]
    assert city.attrs["timezone"] == TZ
    ntas = [n for d in city.children for n in d.attrs["ntas"]]
    assert len(ntas) == len(set(ntas)) and len(ntas) >= 30


def test_zones_follow_graph_order_and_island_triplet(manhattan):
    zones = manhattan.units(level="grid")
    graph = {a["graph_id"]: code for code, a in zip(zones.index, zones["attrs"])}
    assert sorted(graph) == list(range(69))
    table = pd.read_csv(NYC / "zones" / "manhattan_zones.csv").set_index("graph_id")
    for gid, code in graph.items():
        assert code.endswith(f"/z{table.loc[gid, 'zone_id']:03d}")
    islands = [zones.loc[graph[g]] for g in (18, 19, 20)]
    assert [z["attrs"]["LocationID"] for z in islands] == [103, 103, 103]
    assert len({z.geometry.wkb for z in islands}) == 3
    # Marble Hill lies outside the community-district polygons: it takes the nearest (Manhattan CD 12)
    marble = zones[zones["name"] == "Marble Hill"]
    assert marble["parent_code"].iloc[0] == "manhattan/mn12"
    assert any("Marble Hill" in n for n in manhattan.build_report.notes)


def test_buildings_footprints_and_benchmarking(manhattan):
    blds = manhattan.units(level="building")
    with_fp = blds[blds["attrs"].map(lambda a: a["footprint"])]
    points = blds[~blds["attrs"].map(lambda a: a["footprint"])]
    assert 150 <= len(with_fp) <= 260 and 4500 <= len(points) <= 5600
    assert set(points.geometry.geom_type) == {"Point"}
    assert (points["attrs"].map(lambda a: "floor_area_m2" in a)).all()
    tall = with_fp[with_fp["z_max"].notna()].iloc[0]
    a = tall["attrs"]
    assert a["floors_estimated"] and abs(a["height_m"] - a["heightroof_ft"] * 0.3048) < 0.01
    floors = manhattan.units(within=tall.name, level="floor")
    assert len(floors) == a["floors"] and floors["z_max"].max() == pytest.approx(a["height_m"])
    assert floors["attrs"].map(lambda x: x["estimated"]).all()
    assert any("outside every parent left out" in n for n in manhattan.build_report.notes)


def test_flows_match_the_raw_arrays(manhattan):
    bike, taxi = _flows(NycFiles(NYC).bike), _flows(NycFiles(NYC).taxi)
    for name, arr, c in (("bike_departures", bike, 0), ("bike_arrivals", bike, 1), ("taxi_dropoffs", taxi, 0),
                         ("taxi_pickups", taxi, 1)):
        got = manhattan.observations(name, level="grid")
        assert len(got) == HOURS * 69
        assert got["value"].sum() == arr[:HOURS, :, c].sum()
    # the first hour is NYC local midnight (EST: 05:00 UTC), channel order per zone
    zones = manhattan.units(level="grid")
    code = next(c for c, a in zip(zones.index, zones["attrs"]) if a["graph_id"] == 42)
    dep = manhattan.observations("bike_departures", codes=[code])
    assert dep["time"].iloc[0] == pd.Timestamp("2019-01-01 05:00", tz="UTC")
    assert dep["value"].tolist() == bike[:HOURS, 42, 0].tolist()
    arr = manhattan.observations("bike_arrivals", codes=[code])
    assert arr["value"].tolist() == bike[:HOURS, 42, 1].tolist()


def test_flows_roll_up_to_districts_and_city(manhattan):
    city = manhattan.rollup("taxi_pickups", level="city")
    taxi = _flows(NycFiles(NYC).taxi)
    assert city["value"].tolist() == taxi[:HOURS, :, 1].sum(axis=1).tolist()
    districts = manhattan.rollup("taxi_pickups", level="district")
    assert districts["code"].nunique() == 12
    assert districts.groupby("time")["value"].sum().tolist() == city["value"].tolist()


def test_city_series_match_the_workbook(manhattan):
    book = pd.read_excel(NYC / "risk" / "NYC_Crash_and_Weather.xlsx", engine="openpyxl")
    crashes = manhattan.observations("crashes", level="city")
    assert crashes["value"].sum() == book["Total accidents"].sum()
    temp = manhattan.observations("temperature_max", level="city").set_index("time")["value"]
    day = pd.Timestamp("2019-07-20").tz_localize(TZ).tz_convert("UTC")
    raw_f = book.set_index("Date").loc["2019-07-20", "Max Temp (F)"]
    assert temp[day] == pytest.approx((raw_f - 32) * 5 / 9, abs=0.01)
    hol = manhattan.observations("holiday", level="city")
    want = len(holidays.country_holidays("US", subdiv="NY", years=[2019, 2020]))
    assert len(hol) == 731 and hol["value"].sum() == want
    inj = manhattan.observations("injury_collisions", level="grid")
    assert len(inj) == 69 and 3000 < inj["value"].sum() < 20644


def test_every_unit_and_observation_has_a_source(manhattan):
    conn = manhattan.store.conn
    assert conn.execute("SELECT count(*) FROM ciu.unit WHERE source_id IS NULL").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM ciu.observation WHERE source_id IS NULL").fetchone()[0] == 0
    uris = {s.uri for s in manhattan.sources()}
    assert str(NycFiles(NYC).bike) in uris and str(NycFiles(NYC).zones) in uris


def test_rebuild_changes_nothing_and_a_longer_period_appends(manhattan):
    snap = fingerprint(manhattan)
    again = build_nyc(manhattan, NYC, hours=HOURS)
    assert all(r.skipped_source for _, r in again.loads)
    assert fingerprint(manhattan) == snap
    zones = manhattan.units(level="grid")
    codes = [c for _, c in sorted((a["graph_id"], c) for c, a in zip(zones.index, zones["attrs"]))]
    report = load_flows(manhattan, NycFiles(NYC).bike, codes, {0: "bike_departures", 1: "bike_arrivals"},
                        hours=HOURS + 24)
    assert (report.inserted, report.unchanged, report.conflicts) == (24 * 69 * 2, HOURS * 69 * 2, 0)


@pytest.mark.slow
def test_full_bike_series_totals(twin):
    """All 2019–2020 Citi Bike flows: the totals in the twin equal the file's channel sums."""
    build_nyc(twin, NYC, flows=False)
    zones = twin.units(level="grid")
    codes = [c for _, c in sorted((a["graph_id"], c) for c, a in zip(zones.index, zones["attrs"]))]
    report = load_flows(twin, NycFiles(NYC).bike, codes, {0: "bike_departures", 1: "bike_arrivals"})
    # the two spring-forward hours do not exist in New York and hold no trips
    assert report.inserted == (FLOW_HOURS - 2) * 69 * 2
    totals = check_against_files(twin, NYC, modes=("bike",))
    assert totals["bike_departures"][0] == totals["bike_departures"][1] > 0
    assert totals["bike_arrivals"][0] == totals["bike_arrivals"][1]
