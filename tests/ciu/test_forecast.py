"""The historical-average forecaster: profiles, coherence across levels, overrides."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ciu.errors import UnknownUnit, ValidationError
from ciu.forecast import FORECAST_COLUMNS, HistoricalAverageForecaster, check_overrides, load_forecaster
from ciu.twin import Twin


@pytest.fixture
def fitted(city: Twin) -> tuple[Twin, HistoricalAverageForecaster, pd.Timestamp]:
    last = pd.Timestamp(city.store.series_extent()["tmax"].max()).tz_convert("UTC")
    model = HistoricalAverageForecaster(end=(last - pd.Timedelta("7D")).to_pydatetime()).fit(city)
    return city, model, (last - pd.Timedelta("7D")).floor("h")


def test_every_unit_every_level_and_children_sum_to_parents(fitted) -> None:
    city, model, issued = fitted
    frame = model.forecast(city, issued_at=issued.to_pydatetime(), horizons=6)
    assert list(frame.columns) == FORECAST_COLUMNS
    units = city.units()
    assert set(frame["code"]) == set(units.index)
    assert set(frame["horizon"]) == set(range(1, 7))
    assert frame["risk"].between(0, 1).all() and (frame["value"] >= 0).all()
    wide = frame.pivot_table(index="code", columns="horizon", values="value")
    parents = units["parent_code"].dropna()
    summed = wide.loc[parents.index].groupby(parents.to_numpy()).sum()
    np.testing.assert_allclose(summed.to_numpy(), wide.loc[summed.index].to_numpy(), rtol=1e-9, atol=1e-9)


def test_profile_is_the_mean_of_the_same_weekday_and_hour(fitted) -> None:
    city, model, issued = fitted
    tz = str(city.units(level="city")["attrs"].iloc[0]["timezone"])
    holidays = model._fit["holidays"]
    target = issued + pd.Timedelta("1h")
    while target.tz_convert(tz).date() in holidays or target.tz_convert(tz).day_of_week == 6:
        target += pd.Timedelta("1h")
    frame = model.forecast(city, issued_at=(target - pd.Timedelta("1h")).to_pydatetime(), horizons=1)
    floor = str(city.units(level="floor").index[0])
    assert frame[(frame["code"] == floor)]["time"].iloc[0] == target
    obs = city.observations("people", codes=[floor], end=model.end)
    local = obs["time"].dt.tz_convert(tz)
    t_local = target.tz_convert(tz)
    same = (local.dt.day_of_week == t_local.day_of_week) & (local.dt.hour == t_local.hour) & \
        ~local.dt.date.isin(holidays)
    assert t_local.date() not in holidays and t_local.day_of_week != 6
    expected = obs.loc[same.to_numpy(), "value"].mean()
    assert frame[frame["code"] == floor]["value"].iloc[0] == pytest.approx(expected)


def test_out_of_sample_error_beats_a_constant_mean(fitted) -> None:
    city, model, issued = fitted
    frame = model.forecast(city, issued_at=issued.to_pydatetime(), horizons=48)
    city_code = str(city.units(level="city").index[0])
    truth = city.rollup("people", level="city", start=issued + pd.Timedelta("1h"),
                        end=issued + pd.Timedelta("49h"))
    pred = frame[frame["code"] == city_code].set_index("time")["value"]
    joined = truth.set_index("time")["value"].to_frame("truth").join(pred.rename("pred"), how="inner")
    assert len(joined) == 48
    history = city.rollup("people", level="city", end=issued + pd.Timedelta("1h"))["value"].mean()
    mae = (joined["truth"] - joined["pred"]).abs().mean()
    mae_flat = (joined["truth"] - history).abs().mean()
    assert mae < mae_flat


def test_overrides(fitted) -> None:
    city, model, issued = fitted
    base = model.forecast(city, issued_at=issued.to_pydatetime(), horizons=4).set_index(["code", "horizon"])
    building = str(city.units(level="building").index[0])
    root = str(city.units(level="city").index[0])
    floors = [c for c in city.units(level="floor").index if c.startswith(building + "/")]
    event = model.forecast(city, issued_at=issued.to_pydatetime(), horizons=4, overrides={
        "event": {"code": building, "time": issued + pd.Timedelta("2h"), "people": 300, "hours": 2}}
    ).set_index(["code", "horizon"])
    delta = event["value"] - base["value"]
    assert delta[(root, 1)] == pytest.approx(0) and delta[(root, 2)] == pytest.approx(300)
    assert delta[(root, 3)] == pytest.approx(300) and delta[(root, 4)] == pytest.approx(0)
    caps = np.array([city.unit(f).attrs["capacity"] for f in floors], dtype=float)
    np.testing.assert_allclose([delta[(f, 2)] for f in floors], 300 * caps / caps.sum())
    closed = model.forecast(city, issued_at=issued.to_pydatetime(), horizons=4,
                            overrides={"closure": {"code": building}}).set_index(["code", "horizon"])
    assert all(closed["value"][(c, h)] == 0 for c in [building, *floors] for h in range(1, 5))
    wet = model.forecast(city, issued_at=issued.to_pydatetime(), horizons=4,
                         overrides={"weather": {"rain": 10.0, "temperature": None}}).set_index(["code", "horizon"])
    beta = model._fit["beta"]
    assert np.isfinite(beta).all() and beta.shape[1] == 2
    assert not np.allclose(wet["value"].to_numpy(), base["value"].to_numpy())


def test_holiday_uses_the_sunday_profile(fitted) -> None:
    city, model, issued = fitted
    # a Monday noon after the fitted history
    monday = issued + pd.Timedelta(days=(7 - issued.tz_convert("Europe/Amsterdam").day_of_week) % 7 or 7)
    monday = monday.tz_convert("Europe/Amsterdam").normalize().tz_convert("UTC") + pd.Timedelta("11h")
    sunday = monday - pd.Timedelta("1D")
    hol = model.forecast(city, issued_at=monday.to_pydatetime(), horizons=1, overrides={"holiday": True})
    sun = model.forecast(city, issued_at=sunday.to_pydatetime(), horizons=1)
    np.testing.assert_allclose(hol.sort_values("code")["value"].to_numpy(), sun.sort_values("code")["value"].to_numpy())


def test_bad_overrides_are_named(fitted) -> None:
    city, model, issued = fitted
    with pytest.raises(ValidationError, match="unknown override"):
        check_overrides({"flood": True})
    with pytest.raises(ValidationError) as err:
        check_overrides({"event": {"code": "x", "time": "2026-04-01", "people": -3}})
    assert err.value.field == "event.people"
    with pytest.raises(UnknownUnit):
        model.forecast(city, issued_at=issued.to_pydatetime(), horizons=1, overrides={"closure": {"code": "nope"}})
    with pytest.raises(ValidationError):
        model.forecast(city, issued_at=issued.to_pydatetime(), horizons=0)


def test_empty_twin_cannot_be_fitted(twin: Twin) -> None:
    from ciu.ingest.generator import VARIABLES

    twin.store.register_variables(VARIABLES)
    with pytest.raises(ValidationError, match="no observations"):
        HistoricalAverageForecaster().fit(twin)


def test_load_forecaster_says_which_model(city: Twin) -> None:
    model, name = load_forecaster(city)  # no trained run in a fresh city: the baseline answers
    assert name == "historical_average" and isinstance(model, HistoricalAverageForecaster)
    assert callable(model.forecast)


def test_a_trained_run_that_cannot_be_loaded_is_an_error_not_a_fallback(city: Twin, tmp_path) -> None:
    from ciu.errors import NotFound

    missing = tmp_path / "run-gone.pt"
    run = city.store.add_model_run(name="gone", kind="champion", params={"target": "people"}, checkpoint=str(missing))
    try:
        with pytest.raises(NotFound, match=f"checkpoint of model run {run} not found"):
            load_forecaster(city, "people")
        broken = tmp_path / "run-broken.pt"
        broken.write_bytes(b"not a checkpoint")
        city.store.update_model_run(run, checkpoint=str(broken))
        with pytest.raises(ValidationError, match=f"checkpoint of model run {run} cannot be read"):
            load_forecaster(city, "people")
        other = city.store.add_model_run(name="other", kind="unknown-kind", params={"target": "people"},
                                         checkpoint=str(broken))
        assert city.store.newest_run(target="people")["id"] == run  # kinds that do not forecast are not runs to load
        city.store.conn.execute("DELETE FROM ciu.model_run WHERE id = %s", (other,))
    finally:
        city.store.conn.execute("DELETE FROM ciu.model_run WHERE id = %s", (run,))
    assert load_forecaster(city, "people")[1] == "historical_average"


def test_announced_events_are_counted_in_by_the_event_rule(fitted, monkeypatch) -> None:
    """The historical average learns the city less its announced events and counts them back in: N announced people
    add N at their venue and at every unit above it, spread over the venue's floors by capacity."""
    import ciu.forecast as forecast

    city, model, _ = fitted
    ann = city.observations(forecast.ANNOUNCED)
    assert not ann.empty, "the sample city announces events"
    t = pd.Timestamp(ann["time"].min())
    now = ann[ann["time"] == t].groupby("code")["value"].sum()
    frame = model.forecast(city, issued_at=(t - pd.Timedelta("1h")).to_pydatetime(), horizons=1).set_index("code")
    with monkeypatch.context() as m:  # the same forecast with nothing announced
        m.setattr(forecast, "announced_people", lambda twin, codes, capacity, times, **kw: np.zeros((len(times),
                                                                                                       len(codes))))
        plain = model.forecast(city, issued_at=(t - pd.Timedelta("1h")).to_pydatetime(), horizons=1).set_index("code")
    more = frame["value"] - plain["value"]
    units = city.units()
    for venue, people in now.items():
        assert more[venue] == pytest.approx(people)
        floors = units.index[units["parent_code"] == venue]
        cap = np.array([units.loc[f, "attrs"]["capacity"] for f in floors], dtype=float)
        np.testing.assert_allclose(more[floors].to_numpy(), people * cap / cap.sum(), rtol=1e-9)
    top = str(city.units(level="city").index[0])
    assert more[top] == pytest.approx(now.sum())
    touched = set(units.index[units["parent_code"].isin(now.index)]) | set(now.index)
    for venue in now.index:  # and every unit above a venue
        up = units.loc[venue, "parent_code"]
        while isinstance(up, str):
            touched.add(up)
            up = units.loc[up, "parent_code"]
    assert (more.drop(sorted(touched)).abs() < 1e-9).all()  # nothing anywhere else
