"""Model runs: which model forecasts, and how well each candidate did, from the metrics the run recorded.

Every role may read them, the public included: the scores are errors summed
over every unit and step of a level (no unit's value, no count), and they are
what tells a reader how far to trust the forecasts that role already reads.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from ciu.api.deps import Ctx
from ciu.api.schemas import ModelRun, ModelRunDetail
from ciu.skill import FORECAST_KINDS, SPLITS, calibration_rows, skill_rows, training_rows

router = APIRouter(tags=["models"])

#: the split sizes a run records
SPLIT_PARTS = ("train", "val", "test")


@router.get("/models", response_model=list[ModelRun], summary="The model runs that forecast, newest first",
            description="Runs of `ciu train` (kind `champion`) and the earlier `tower` runs, each with its target, "
                        "step, levels, horizons, champion and, per level, the champion's test RMSE beside seasonal "
                        "naive's, the gain over it and the p10..p90 coverage. Readable by every role.")
def models(
    ctx: Ctx,
    target: Annotated[str | None, Query(description="only runs forecasting this variable", examples=["people"])] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    if target is not None:
        ctx.twin.variable(target)  # UnknownVariable → 404
    rows = ctx.api.model_runs(kinds=FORECAST_KINDS, target=target, limit=limit)
    ctx.audit(units=0)
    return rows


@router.get("/models/{run_id}", response_model=ModelRunDetail, summary="One model run in full",
            description="Any model run (every `run_id` of `/predictions` resolves): the champion, blend "
                        "weights, the skill of every model per level and horizon on the validation and test steps "
                        "(RMSE, MAE, MAPE, % over seasonal naive), the champion's probabilistic scores, training "
                        "time per model, split sizes, missing data, the data hash, code version and parameters. "
                        "Readable by every role.")
def model(ctx: Ctx, run_id: Annotated[int, Path(ge=1, le=2**62, description="a model run id")]) -> dict[str, Any]:
    row = ctx.api.model_run(run_id)
    metrics, params = row.pop("metrics") or {}, row["params"] or {}
    compared = [m for m in params.get("models") or () if isinstance(m, str)]  # in the order they were compared
    split = metrics.get("split") or params.get("split") or {}
    ctx.audit(units=0)
    return {
        **row,
        "blend": metrics.get("blend"),
        "selection": metrics.get("selection"),
        "scores": metrics.get("scores") or {},
        "split": {part: split[part] for part in SPLIT_PARTS if isinstance(split.get(part), int)},
        "skill_table": {part: skill_rows(metrics, split=part, models=compared) for part in SPLITS},
        "probabilistic": {part: calibration_rows(metrics, part) for part in SPLITS},
        "training": training_rows(metrics, models=compared),
        "missing": metrics.get("missing") or {},
    }
