"""Component ids of the dashboard, in one place so that layouts and callbacks agree."""

from __future__ import annotations

from enum import StrEnum


class Id(StrEnum):
    """Every component id the pages use."""

    # shared
    REFRESH = "refresh"
    URL = "url"
    # operations (2D)
    OPS_LEVEL = "ops-level"
    OPS_WITHIN = "ops-within"
    OPS_PATH = "ops-path"
    OPS_DRILL = "ops-drill"
    OPS_UP = "ops-up"
    OPS_TIME = "ops-time"
    OPS_TIME_LABEL = "ops-time-label"
    OPS_PLAY = "ops-play"
    OPS_TICK = "ops-tick"
    OPS_FRAME = "ops-frame"
    OPS_MAP = "ops-map"
    OPS_RENDERED = "ops-rendered"
    OPS_CLICK = "ops-click"
    OPS_SELECTED = "ops-selected"
    OPS_KPIS = "ops-kpis"
    OPS_ALERTS = "ops-alerts"
    OPS_ACK = "ops-ack"
    OPS_UNIT_TITLE = "ops-unit-title"
    OPS_UNIT_CHART = "ops-unit-chart"
    OPS_SKILL_TITLE = "ops-skill-title"
    OPS_SKILL = "ops-skill"
    # planner (3D)
    PLAN_TIME = "plan-time"
    PLAN_TIME_LABEL = "plan-time-label"
    PLAN_PLAY = "plan-play"
    PLAN_TICK = "plan-tick"
    PLAN_FRAME = "plan-frame"
    PLAN_MAP = "plan-map"
    PLAN_RENDERED = "plan-rendered"
    PLAN_CLICK = "plan-click"
    PLAN_CARD = "plan-card"
    SCN_KIND = "scn-kind"
    SCN_UNIT = "scn-unit"
    SCN_PEOPLE = "scn-people"
    SCN_HOUR = "scn-hour"
    SCN_HOURS = "scn-hours"
    SCN_TEMPERATURE = "scn-temperature"
    SCN_RAIN = "scn-rain"
    SCN_HOLIDAY = "scn-holiday"
    SCN_RUN = "scn-run"
    SCN_HORIZONS = "scn-horizons"
    SCN_FRAME = "scn-frame"
    SCN_MAP = "scn-map"
    SCN_RENDERED = "scn-rendered"
    SCN_NUMBERS = "scn-numbers"
