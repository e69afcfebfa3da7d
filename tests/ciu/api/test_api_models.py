"""Model runs and probabilistic forecasts in the API: a champion trained on the tiny city, its forecasts stored."""

from __future__ import annotations

import doctest
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

import ciu.skill
from ciu.api.app import create_app
from ciu.api.settings import ApiSettings
from ciu.models.runs import predict_to_store, skill_table, train_on_twin
from ciu.models.settings import ModelSettings
from ciu.models.train import TrainConfig
from ciu.store import ApiStore
from ciu.twin import Twin

MODELS = ("persistence", "seasonal_naive", "historical_average", "ridge_unit", "tower")
K = 5
#: the metrics of a run recorded before models were compared: the tower's scores directly per level
LEGACY_METRICS = {
    "best_epoch": 3, "epochs": 4, "seconds": 12.5,
    **{part: {level: {"rmse": [[r], [r + 1.0]], "mae": [[r / 2], [r / 2 + 0.5]], "mape": [[0.2], [None]],
                      "rmse_all": r + 0.5, "mape_all": 0.2}
              for level, r in (("building", 6.0), ("city", 40.0))}
       for part in ("validation", "test")},
}


@dataclass
class TrainedWorld:
    url: str
    run_id: int
    legacy_id: int
    other_id: int
    metrics: dict[str, Any]
    viewer: dict[str, str]


@pytest.fixture(scope="module")
def trained(pg_server, city_template, tmp_path_factory) -> Iterator[TrainedWorld]:
    """An older tower run, a run of another kind, then a champion trained and its forecasts stored."""
    name = pg_server.create(city_template)
    url = pg_server.url_for(name)
    settings = ModelSettings(dir=tmp_path_factory.mktemp("runs"))
    try:
        with Twin.connect(url, migrate=False) as twin:
            legacy = twin.store.add_model_run(
                name="tower", kind="tower", metrics=LEGACY_METRICS,
                params={"target": "people", "levels": ["building", "city"], "train": {"horizons": 2}})
            other = twin.store.add_model_run(name="historical average", kind="historical_average")
            config = TrainConfig(history=6, horizons=3, hidden=8, epochs=1, max_val_samples=16, threads=1,
                                 progress=False)
            report = train_on_twin(twin, config, models=MODELS, settings=settings)
            predict_to_store(twin)
            _, token = ApiStore(twin.store.conn).create_key(name="viewer", role="viewer")
        yield TrainedWorld(url, report.run_id, legacy, other, report.metrics, {"X-API-Key": token})
    finally:
        pg_server.drop(name)


@pytest.fixture(scope="module")
def client(trained: TrainedWorld) -> Iterator[TestClient]:
    with TestClient(create_app(ApiSettings(rate_limit_per_minute=0, k_threshold=K), database_url=trained.url)) as c:
        yield c


def _stored(world: TrainedWorld, **filters: Any) -> pd.DataFrame:
    with Twin.connect(world.url, migrate=False) as twin:
        return twin.store.predictions(run_id=world.run_id, **filters)


def test_models_lists_forecasting_runs_newest_first_with_headline_skill(client, trained: TrainedWorld) -> None:
    m = trained.metrics
    body = client.get("/models").json()
    assert [r["id"] for r in body] == [trained.run_id, trained.legacy_id]  # other kinds are not listed
    run = body[0]
    champion = m["champion"]
    assert run["kind"] == "champion" and run["status"] == "trained" and run["name"] == champion
    assert run["champion"] == champion and champion in MODELS + ("blend",)
    assert (run["target"], run["step"], run["levels"], run["horizons"]) == ("people", m["step"], m["levels"], 3)
    assert [s["level"] for s in run["skill"]] == m["levels"] == ["floor", "building", "grid", "district", "city"]
    for s in run["skill"]:
        test = m["test"]
        assert s["rmse"] == pytest.approx(test[champion][s["level"]]["rmse_all"])
        assert s["seasonal_naive_rmse"] == pytest.approx(test["seasonal_naive"][s["level"]]["rmse_all"])
        assert s["gain_pct"] == pytest.approx(100.0 * (1.0 - s["rmse"] / s["seasonal_naive_rmse"]))
        assert s["coverage_p10_p90"] == pytest.approx(m["probabilistic"]["test"][s["level"]]["coverage_p10_p90"])
        assert 0.0 <= s["coverage_p10_p90"] <= 1.0
    legacy = body[1]
    assert (legacy["kind"], legacy["champion"], legacy["horizons"], legacy["step"]) == ("tower", "tower", 2, None)
    assert legacy["skill"] == [
        {"level": "building", "rmse": 6.5, "seasonal_naive_rmse": None, "gain_pct": None, "coverage_p10_p90": None},
        {"level": "city", "rmse": 40.5, "seasonal_naive_rmse": None, "gain_pct": None, "coverage_p10_p90": None}]
    assert [r["id"] for r in client.get("/models", params={"target": "people"}).json()] == [r["id"] for r in body]
    assert client.get("/models", params={"target": "temperature"}).json() == []
    assert [r["id"] for r in client.get("/models", params={"limit": 1}).json()] == [trained.run_id]
    unknown = client.get("/models", params={"target": "nope"})
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"


def test_model_run_in_full_has_every_model_level_and_horizon(client, trained: TrainedWorld) -> None:
    m = trained.metrics
    body = client.get(f"/models/{trained.run_id}").json()
    compared = set(m["validation"])
    assert set(MODELS) <= compared  # and the blend, when the run made one
    for part in ("validation", "test"):
        rows = body["skill_table"][part]
        keys = [(r["model"], r["level"], r["horizon"]) for r in rows]
        assert sorted(keys) == sorted(itertools.product(compared, m["levels"], (1, 2, 3)))
        assert {r["model"] for r in rows if r["champion"]} == {m["champion"]}
        assert all(r["gain_over_seasonal_naive_pct"] == pytest.approx(0.0)
                   for r in rows if r["model"] == "seasonal_naive")
        assert [k[0] for k in keys[::15]] == [*MODELS, "blend"][:len(compared)]  # as compared, bottom level first
        assert keys[:4] == [("persistence", "floor", 1), ("persistence", "floor", 2), ("persistence", "floor", 3),
                            ("persistence", "building", 1)]
        table = skill_table(m, split=part).set_index(["model", "level", "horizon"])  # as the models package has it
        assert len(table) == len(rows)
        for r in rows:
            want = table.loc[(r["model"], r["level"], r["horizon"])]
            assert r["champion"] == want["champion"]
            for col in ("rmse", "mae", "mape", "gain_over_seasonal_naive_pct"):
                assert r[col] == pytest.approx(want[col]) if pd.notna(want[col]) else r[col] is None
        levels = [c["level"] for c in body["probabilistic"][part]]
        assert levels == m["levels"] and set(levels) == set(m["probabilistic"][part])
        assert all(c["quantiles_ordered"] and 0.0 <= c["coverage_p10_p90"] <= 1.0 for c in body["probabilistic"][part])
    assert body["champion"] == m["champion"] and body["blend"] == m["blend"]
    assert body["split"] == m["split"] and body["missing"] == m["missing"]
    assert body["scores"] == pytest.approx(m["scores"])
    assert [t["model"] for t in body["training"]][:len(MODELS)] == list(MODELS)
    training = {t["model"]: t for t in body["training"]}
    assert all(training[name]["seconds"] >= 0 and training[name]["cpu_seconds"] >= 0 for name in MODELS)
    assert training["tower"]["epochs"] == 1 and training["tower"]["stopped"]
    with Twin.connect(trained.url, migrate=False) as twin:
        assert body["data_hash"] == twin.store.data_hash()
    assert body["code_version"] and body["params"]["target"] == "people"
    assert body["params"]["models"] == list(MODELS)
    assert "checkpoint" not in body  # a path on the server, not published
    assert {k: body[k] for k in client.get("/models").json()[0]} == client.get("/models").json()[0]


def test_model_runs_of_other_shapes(client, trained: TrainedWorld) -> None:
    legacy = client.get(f"/models/{trained.legacy_id}").json()
    assert legacy["champion"] == "tower" and legacy["blend"] is None and legacy["training"] == []
    rows = legacy["skill_table"]["test"]
    assert [(r["model"], r["level"], r["horizon"], r["rmse"], r["mape"]) for r in rows] == [
        ("tower", "building", 1, 6.0, 0.2), ("tower", "building", 2, 7.0, None),
        ("tower", "city", 1, 40.0, 0.2), ("tower", "city", 2, 41.0, None)]
    assert all(r["champion"] and r["gain_over_seasonal_naive_pct"] is None for r in rows)
    other = client.get(f"/models/{trained.other_id}").json()
    assert (other["kind"], other["champion"], other["levels"], other["skill"]) == ("historical_average", None, [], [])
    assert other["skill_table"] == {"validation": [], "test": []} and other["split"] == {}


def test_unknown_and_bad_run_ids(client, trained: TrainedWorld) -> None:
    missing = client.get(f"/models/{trained.run_id + 1000}")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["detail"] == f"no model run with id {trained.run_id + 1000}"
    for bad in ("abc", "0", "-3", "1.5", str(2**63)):
        r = client.get(f"/models/{bad}")
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", (bad, r.text)
        assert r.json()["field"] == "run_id"


def test_stored_quantiles_are_served_in_order(client, trained: TrainedWorld) -> None:
    stored = _stored(trained)
    page = client.get("/predictions", params={"run_id": trained.run_id, "limit": 1000},
                      headers=trained.viewer).json()["predictions"]
    assert len(page) == len(stored) > 0
    for p, want in zip(page, stored.itertuples(index=False)):
        assert (p["code"], p["horizon"]) == (want.code, want.horizon)
        assert (p["q10"], p["q50"], p["q90"]) == (want.q10, want.q50, want.q90)
        assert p["q10"] <= p["q50"] <= p["q90"]
    assert pd.Timestamp(page[0]["time"]) == pd.Timestamp(page[0]["issued_at"]) + page[0]["horizon"] * pd.Timedelta(
        trained.metrics["step"])
    risk = client.get("/risk", params={"level": "district", "horizon": 2}, headers=trained.viewer).json()
    want = stored[(stored["level"] == "district") & (stored["horizon"] == 2)].set_index("code")
    assert risk and all((r["q10"], r["q50"], r["q90"]) == tuple(want.loc[r["code"], ["q10", "q50", "q90"]])
                        for r in risk)


def _check_public(page: list[dict], stored: pd.DataFrame) -> None:
    """Withheld values withhold their quantiles; a small quantile is withheld by itself; others as stored."""
    assert len(page) == len(stored)
    for p, want in zip(page, stored.itertuples(index=False)):
        if 0 < want.value < K:
            assert (p["value"], p["q10"], p["q50"], p["q90"]) == (None, None, None, None)
            continue
        assert p["value"] == want.value
        for q in ("q10", "q50", "q90"):
            truth = getattr(want, q)
            assert p[q] == (None if 0 < truth < K else truth), (q, p, want)


def test_withheld_counts_withhold_their_quantiles(client, trained: TrainedWorld) -> None:
    stored = _stored(trained, level="floor")
    small = (stored["value"] > 0) & (stored["value"] < K)
    assert small.any() and (~small).any(), "the tiny city has small and large floor forecasts"
    assert ((stored["q10"] > 0) & (stored["q10"] < K) & ~small).any(), "some shown values have a small q10"
    assert ((stored["q90"] >= K) & small).any(), "some withheld values have a q90 that alone would be shown"
    page = client.get("/predictions", params={"run_id": trained.run_id, "level": "floor", "limit": 1000}).json()
    _check_public(page["predictions"], stored)
    risk = client.get("/risk", params={"level": "floor", "horizon": 1, "limit": 10_000}).json()
    by_code = stored[stored["horizon"] == 1].set_index("code")
    _check_public(risk, by_code.loc[[r["code"] for r in risk]].reset_index())


def test_noisy_quantiles_stay_ordered_and_withheld(trained: TrainedWorld) -> None:
    stored = _stored(trained, level="building")
    noisy = ApiSettings(epsilon=0.5, k_threshold=K, rate_limit_per_minute=0, reuse_s=0)
    with TestClient(create_app(noisy, database_url=trained.url)) as c:
        page = c.get("/predictions", params={"run_id": trained.run_id, "level": "building", "limit": 1000}
                     ).json()["predictions"]
        risk = c.get("/risk", params={"level": "building", "horizon": 1, "limit": 10_000}).json()
    assert len(page) == len(stored)
    moved = 0
    for p, want in zip(page, stored.itertuples(index=False)):
        quantiles = [p[q] for q in ("q10", "q50", "q90")]
        if 0 < want.value < K:
            assert p["value"] is None and quantiles == [None, None, None]
            continue
        shown = [q for q in quantiles if q is not None]
        assert shown == sorted(shown) and all(q >= 0 for q in shown)
        moved += sum(abs(a - b) > 1e-9 for a, b in zip(quantiles, (want.q10, want.q50, want.q90)) if a is not None)
    assert moved > 0
    for r in risk:
        shown = [r[q] for q in ("q10", "q50", "q90") if r[q] is not None]
        assert shown == sorted(shown)


def test_model_endpoints_in_the_openapi_document(client) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/models", "/models/{run_id}"} <= set(spec["paths"])
    detail = spec["paths"]["/models/{run_id}"]["get"]["responses"]
    assert detail["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ModelRunDetail")
    assert "application/problem+json" in detail["404"]["content"]
    schemas = spec["components"]["schemas"]
    for name in ("ModelRun", "ModelRunDetail", "Prediction"):
        assert "example" in schemas[name], name
    assert {"q10", "q50", "q90"} <= set(schemas["Prediction"]["properties"]) & set(schemas["Risk"]["properties"])
    assert {"skill_table", "probabilistic", "training", "blend", "data_hash"} <= set(
        schemas["ModelRunDetail"]["properties"])


def test_skill_examples_run() -> None:
    result = doctest.testmod(ciu.skill)
    assert result.attempted > 0 and result.failed == 0


def test_a_scenario_that_names_no_horizons_forecasts_as_many_as_the_model_serves(client, trained: TrainedWorld) -> None:
    answer = client.post("/scenarios", headers=trained.viewer, json={"holiday": True, "levels": ["city"]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["horizons"] == 3 and sorted({t["horizon"] for t in body["totals"]}) == [1, 2, 3]
    assert body["units"], "a holiday changes the city's forecast"
    for row in body["units"]:  # the trained model's bands travel with its answer, each around its own forecast
        for side in ("baseline", "scenario"):
            low, mid, high = row[f"{side}_p10"], row[side], row[f"{side}_p90"]
            assert low is not None and high is not None and low <= high, row
            assert low - 1e-6 <= mid <= high + 1e-6, row
    too_far = client.post("/scenarios", headers=trained.viewer, json={"holiday": True, "horizons": 4})
    assert too_far.status_code == 422 and "1..3" in too_far.json()["detail"]
