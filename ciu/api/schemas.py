"""Shapes of requests and answers, with examples, for the OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CODE_EXAMPLE = "tiny/d01/89196914a8bffff/b00003"


class Link(BaseModel):
    href: str
    rel: str
    type: str | None = None
    title: str | None = None


class Level(BaseModel):
    name: str = Field(examples=["building"])
    rank: int = Field(examples=[1], description="0 is the bottom level")
    units: int = Field(examples=[240])


class Feature(BaseModel):
    """A GeoJSON Feature of one unit."""

    model_config = ConfigDict(json_schema_extra={"example": {
        "type": "Feature", "id": CODE_EXAMPLE,
        "geometry": {"type": "Polygon", "coordinates": [[[5.12, 52.09], [5.1203, 52.09], [5.1203, 52.0902],
                                                         [5.12, 52.09]]]},
        "properties": {"code": CODE_EXAMPLE, "level": "building", "name": "Building 00003",
                       "parent": "tiny/d01/89196914a8bffff", "z_min": 0.0, "z_max": 16.4, "area_m2": 512.3,
                       "attrs": {"land_use": "office", "floors": 5}, "restricted": {}}}})
    type: Literal["Feature"] = "Feature"
    id: str
    geometry: dict[str, Any]
    properties: dict[str, Any]
    links: list[Link] | None = None


class FeatureCollection(BaseModel):
    """A GeoJSON FeatureCollection with OGC API paging fields."""

    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[Feature]
    numberMatched: int = Field(examples=[240])
    numberReturned: int = Field(examples=[100])
    timeStamp: datetime | None = None
    links: list[Link]


class UnitDetail(Feature):
    """A unit with its place in the hierarchy."""

    parent: str | None = Field(None, examples=["tiny/d01/89196914a8bffff"])
    children: list[str] = Field(default_factory=list, examples=[[f"{CODE_EXAMPLE}/f00", f"{CODE_EXAMPLE}/f01"]])
    ancestors: list[str] = Field(default_factory=list, examples=[["tiny/d01/89196914a8bffff", "tiny/d01", "tiny"]])


class Point(BaseModel):
    time: datetime
    value: float | None = Field(description="null when withheld (small count)")


class Series(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {
        "code": "tiny/d01", "level": "district", "variable": "people", "freq": "h", "source": "rollup",
        "unit_of_measure": "persons", "points": [{"time": "2026-03-30T08:00:00Z", "value": 412.0}]}})
    code: str
    level: str
    variable: str
    freq: str
    source: Literal["rollup", "observed"]
    unit_of_measure: str
    points: list[Point]


#: how a stored forecast's quantiles are described
QUANTILE = ("percentile of the forecast; null when the run stored none or when withheld (small count, or the value "
            "withheld)")
ISSUED_AT = "the last step whose observations the forecast may use"
HORIZON = "steps ahead: time = issued_at + horizon × the run's step"


class Prediction(BaseModel):
    """A stored forecast of one unit at one horizon."""

    model_config = ConfigDict(json_schema_extra={"example": {
        "run_id": 2, "code": CODE_EXAMPLE, "level": "building", "variable": "people",
        "issued_at": "2026-04-12T21:00:00Z", "horizon": 1, "time": "2026-04-12T22:00:00Z", "value": 37.5,
        "risk": 0.42, "q10": 21.0, "q50": 36.2, "q90": 58.9}})
    run_id: int = Field(examples=[1])
    code: str = Field(examples=[CODE_EXAMPLE])
    level: str = Field(examples=["building"])
    variable: str = Field(examples=["people"])
    issued_at: datetime = Field(description=ISSUED_AT)
    horizon: int = Field(examples=[1], description=HORIZON)
    time: datetime
    value: float | None = Field(examples=[37.5], description="null when withheld (small count)")
    risk: float | None = Field(examples=[0.42], description="0..1")
    q10: float | None = Field(None, examples=[21.0], description=f"10th {QUANTILE}")
    q50: float | None = Field(None, examples=[36.2], description=f"50th {QUANTILE}")
    q90: float | None = Field(None, examples=[58.9], description=f"90th {QUANTILE}; q10..q90 is the 80 % band")


class PredictionPage(BaseModel):
    predictions: list[Prediction]
    numberReturned: int
    links: list[Link]


class Risk(BaseModel):
    code: str
    level: str
    time: datetime
    horizon: int = Field(description=HORIZON)
    risk: float | None
    value: float | None = Field(description="null when withheld (small count)")
    q10: float | None = Field(None, description=f"10th {QUANTILE}")
    q50: float | None = Field(None, description=f"50th {QUANTILE}")
    q90: float | None = Field(None, description=f"90th {QUANTILE}")


class LevelSkill(BaseModel):
    """A run's headline skill at one level, on the test steps, over every horizon."""

    level: str = Field(examples=["building"])
    rmse: float | None = Field(examples=[8.91], description="the champion's RMSE")
    seasonal_naive_rmse: float | None = Field(examples=[10.6], description="seasonal naive's RMSE (same week hour "
                                                                          "a week before)")
    gain_pct: float | None = Field(examples=[15.9], description="per cent by which the champion's RMSE is below "
                                                                "seasonal naive's (negative: worse)")
    coverage_p10_p90: float | None = Field(examples=[0.79], description="share of the truth inside the champion's "
                                                                        "p10..p90 band (0.8 when calibrated)")


RUN_EXAMPLE: dict[str, Any] = {
    "id": 2, "name": "tower", "kind": "champion", "status": "trained", "created_at": "2026-04-13T06:00:00Z",
    "target": "people", "step": "0 days 01:00:00", "levels": ["floor", "building"], "horizons": 3,
    "champion": "tower", "skill": [
        {"level": "floor", "rmse": 3.1, "seasonal_naive_rmse": 3.6, "gain_pct": 13.9, "coverage_p10_p90": 0.81},
        {"level": "building", "rmse": 8.91, "seasonal_naive_rmse": 10.6, "gain_pct": 15.9, "coverage_p10_p90": 0.79}]}


class ModelRun(BaseModel):
    """A recorded model run and its headline skill."""

    model_config = ConfigDict(json_schema_extra={"example": RUN_EXAMPLE})
    id: int = Field(examples=[2])
    name: str = Field(examples=["tower"], description="the published model (for a champion run, the champion)")
    kind: str = Field(examples=["champion"], description="champion (`ciu train`), tower (runs before the comparison "
                                                         "of models), or another kind of run that stored forecasts")
    status: Literal["training", "trained", "failed"]
    created_at: datetime
    target: str = Field(examples=["people"], description="the variable forecast")
    step: str | None = Field(examples=["0 days 01:00:00"],
                             description="the time step: horizon h is issued_at + h steps")
    levels: list[str] = Field(examples=[["floor", "building", "grid", "district", "city"]], description="bottom first")
    horizons: int | None = Field(examples=[3], description="steps forecast ahead")
    champion: str | None = Field(examples=["tower"], description="the model chosen on the validation steps")
    skill: list[LevelSkill] = Field(description="per level, bottom first (empty until the run is trained)")


class SkillRow(BaseModel):
    """One model's scores at one level and horizon (means over the channels)."""

    model: str = Field(examples=["tower"])
    level: str = Field(examples=["building"])
    horizon: int = Field(examples=[1], description=HORIZON)
    rmse: float | None = Field(examples=[8.2])
    mae: float | None = Field(examples=[4.9])
    mape: float | None = Field(examples=[0.31], description="a fraction; null where the truth is zero throughout")
    gain_over_seasonal_naive_pct: float | None = Field(examples=[14.2])
    champion: bool


class SkillTables(BaseModel):
    validation: list[SkillRow] = Field(description="the steps the champion was chosen on")
    test: list[SkillRow] = Field(description="later steps no choice looked at")


class LevelCalibration(BaseModel):
    """The champion's probabilistic scores at one level."""

    level: str = Field(examples=["building"])
    coverage_p10_p90: float | None = Field(None, examples=[0.79], description="share of the truth inside p10..p90")
    quantiles_ordered: bool | None = Field(None, description="whether p10 <= p50 <= p90 held everywhere")
    brier: float | None = Field(None, examples=[0.018], description="Brier score of the risk of crowding")
    brier_climatology: float | None = Field(None, examples=[0.013], description="the same of the base rate")
    event_rate: float | None = Field(None, examples=[0.012], description="how often crowding happened")


class Calibration(BaseModel):
    validation: list[LevelCalibration]
    test: list[LevelCalibration]


class ModelTraining(BaseModel):
    """How one model trained."""

    model: str = Field(examples=["tower"])
    seconds: float | None = Field(examples=[41.3], description="wall-clock seconds")
    cpu_seconds: float | None = Field(examples=[160.2], description="CPU seconds of the process")
    epochs: int | None = Field(examples=[12])
    best_epoch: int | None = Field(examples=[9])
    stopped: str | None = Field(examples=["patience"], description="why training stopped")


class ModelRunDetail(ModelRun):
    """One model run in full: the comparison of every model at every level and horizon, and how it was made."""

    model_config = ConfigDict(json_schema_extra={"example": {
        **RUN_EXAMPLE, "blend": {"tower": 0.7, "ridge_unit": 0.3}, "selection": "lowest mean over levels of "
        "validation RMSE / seasonal naive's", "scores": {"tower": 0.84, "seasonal_naive": 1.0},
        "split": {"train": 1176, "val": 252, "test": 252},
        "skill_table": {"validation": [], "test": [
            {"model": "tower", "level": "building", "horizon": 1, "rmse": 8.2, "mae": 4.9, "mape": 0.31,
             "gain_over_seasonal_naive_pct": 14.2, "champion": True}]},
        "probabilistic": {"validation": [], "test": [
            {"level": "building", "coverage_p10_p90": 0.79, "quantiles_ordered": True, "brier": 0.018,
             "brier_climatology": 0.013, "event_rate": 0.012}]},
        "training": [{"model": "tower", "seconds": 41.3, "cpu_seconds": 160.2, "epochs": 12, "best_epoch": 9,
                      "stopped": "patience"}],
        "missing": {"unit_steps": 47040, "missing_unit_steps": 0}, "data_hash": "6ba4afc00f994e7c",
        "code_version": "6836652", "params": {"target": "people", "models": ["seasonal_naive", "tower"]}}})
    blend: dict[str, float] | None = Field(description="weights of the blend of models, when the run made one")
    selection: str | None = Field(description="how the champion was chosen")
    scores: dict[str, float | None] = Field(description="each model's selection score (lowest wins)")
    split: dict[str, int] = Field(description="issue steps for training, validation and test")
    skill_table: SkillTables
    probabilistic: Calibration
    training: list[ModelTraining]
    missing: dict[str, Any] = Field(description="missing and masked unit-steps, issue steps kept per split")
    data_hash: str | None = Field(description="fingerprint of the units and observations trained on")
    code_version: str | None = Field(description="the code the run was made with")
    params: dict[str, Any] = Field(description="everything the run was asked to do")


class Alert(BaseModel):
    """An alert episode: one unit's run of alerted steps of one kind, from ``time`` to ``until``."""

    id: int
    run_id: int | None = Field(description="the forecast that raised or last extended it")
    code: str
    level: str
    kind: str = Field(examples=["crowding"])
    severity: Literal["info", "warning", "critical"]
    time: datetime = Field(description="first alerted step")
    until: datetime = Field(description="last alerted step")
    issued_at: datetime = Field(description="when it was raised or last extended")
    risk: float | None = Field(description="the highest calibrated probability of exceeding the unit's threshold")
    threshold: float | None = Field(description="the alert rule's level of risk")
    message: str
    state: Literal["open", "acknowledged", "resolved"]
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None = Field(description="who closed it ('forecast': the newest forecast no longer raises it)")


class AlertEvent(BaseModel):
    at: datetime
    event: Literal["opened", "extended", "acknowledged", "resolved"]
    by: str | None
    note: str


class Event(BaseModel):
    code: str = Field(examples=[CODE_EXAMPLE])
    time: datetime = Field(examples=["2026-04-10T18:00:00Z"])
    people: float = Field(ge=0, le=1_000_000, examples=[800])
    hours: int = Field(1, ge=1, le=72, examples=[3])


class Closure(BaseModel):
    code: str = Field(examples=[CODE_EXAMPLE])


class Weather(BaseModel):
    temperature: float | None = Field(None, ge=-60, le=60, examples=[28.0], description="°C")
    rain: float | None = Field(None, ge=0, le=500, examples=[4.0], description="mm per hour")


class ScenarioRequest(BaseModel):
    """A "what if": an event, a closure, a weather or holiday override (any combination)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "issued_at": "2026-04-10T15:00:00Z", "horizons": 3,
        "event": {"code": CODE_EXAMPLE, "time": "2026-04-10T18:00:00Z", "people": 800, "hours": 3},
        "levels": ["building", "grid", "district", "city"]}})
    variable: str | None = Field(None, examples=["people"],
                                 description="the count forecast; default: the target of the newest trained model, "
                                             "else people")
    issued_at: datetime | None = Field(None, description="forecast origin; default: the latest observation of the "
                                                         "variable")
    horizons: int | None = Field(None, ge=1, le=168, examples=[3],
                                 description="steps ahead; default: as many as the model serves (the historical "
                                             "average: 6)")
    event: Event | None = None
    closure: Closure | None = None
    weather: Weather | None = None
    holiday: bool = False
    levels: list[str] | None = Field(None, description="only these levels in the answer")


class ScenarioRow(BaseModel):
    code: str
    level: str
    variable: str
    horizon: int
    time: datetime
    baseline: float | None
    scenario: float | None
    delta: float | None
    baseline_risk: float | None
    scenario_risk: float | None
    baseline_p10: float | None = Field(None, description="the baseline's p10..p90 band (none from the historical "
                                                         "average)")
    baseline_p90: float | None = None
    scenario_p10: float | None = Field(None, description="the scenario's p10..p90 band")
    scenario_p90: float | None = None


class LevelTotal(BaseModel):
    level: str
    horizon: int
    baseline: float | None
    scenario: float | None


class ScenarioResult(BaseModel):
    model: str = Field(examples=["historical_average"], description="the model that answered")
    issued_at: datetime
    horizons: int
    overrides: dict[str, Any]
    affected: int = Field(description="units whose forecast changes")
    truncated: bool
    totals: list[LevelTotal]
    units: list[ScenarioRow]
    seconds: float


class Usage(BaseModel):
    key_id: int
    key_name: str | None
    endpoint: str
    calls: int
    errors: int
    first_day: str
    last_day: str


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    database: bool
    version: str
