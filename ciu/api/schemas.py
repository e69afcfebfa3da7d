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


class Prediction(BaseModel):
    run_id: int = Field(examples=[1])
    code: str = Field(examples=[CODE_EXAMPLE])
    level: str = Field(examples=["building"])
    variable: str = Field(examples=["people"])
    issued_at: datetime
    horizon: int = Field(examples=[1], description="hours ahead")
    time: datetime
    value: float | None = Field(examples=[37.5], description="null when withheld (small count)")
    risk: float | None = Field(examples=[0.42], description="0..1")


class PredictionPage(BaseModel):
    predictions: list[Prediction]
    numberReturned: int
    links: list[Link]


class Risk(BaseModel):
    code: str
    level: str
    time: datetime
    horizon: int
    risk: float | None
    value: float | None


class Alert(BaseModel):
    id: int
    run_id: int | None
    code: str
    level: str
    kind: str = Field(examples=["crowding"])
    severity: Literal["info", "warning", "critical"]
    time: datetime
    issued_at: datetime
    risk: float | None
    threshold: float | None
    message: str
    acknowledged_at: datetime | None
    acknowledged_by: str | None


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
        "issued_at": "2026-04-10T15:00:00Z", "horizons": 6,
        "event": {"code": CODE_EXAMPLE, "time": "2026-04-10T18:00:00Z", "people": 800, "hours": 3},
        "levels": ["building", "grid", "district", "city"]}})
    variable: str | None = Field(None, examples=["people"],
                                 description="the count forecast; default: the target of the newest trained model, "
                                             "else people")
    issued_at: datetime | None = Field(None, description="forecast origin; default: the latest observation of the "
                                                         "variable")
    horizons: int = Field(6, ge=1, le=168)
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
