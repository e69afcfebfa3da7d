"""The privacy rule is written in Python and in SQL: the two must agree on every kind of count."""

from __future__ import annotations

import math

import numpy as np
import psycopg
import pytest

from ciu.api.privacy import public_counts

VALUES = [math.nan, 0.0, 0.4, 1.0, 4.99, 5.0, 7.3, 1e6]


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("epsilon", [None, 0.0])
def test_suppression_is_the_same_rule_in_python_and_in_sql(db_url: str, exact: bool, epsilon: float | None) -> None:
    with psycopg.connect(db_url) as conn:
        in_sql = [conn.execute("SELECT ciu.api_public_count(%s, %s, %s, %s)",
                               (None if math.isnan(v) else v, exact, 5.0, epsilon)).fetchone()[0] for v in VALUES]
    assert public_counts(np.array(VALUES), exact=exact, k=5.0, epsilon=epsilon) == in_sql


def test_with_noise_both_withhold_the_same_counts_and_publish_none_below_zero(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        in_sql = [conn.execute("SELECT ciu.api_public_count(%s, false, 5.0, 0.5)",
                               (None if math.isnan(v) else v,)).fetchone()[0] for v in VALUES]
    in_python = public_counts(np.array(VALUES), exact=False, k=5.0, epsilon=0.5, rng=np.random.default_rng(1))
    assert [v is None for v in in_python] == [v is None for v in in_sql] == [True, False, True, True, True, False,
                                                                             False, False]
    assert all(v >= 0 for v in in_python + in_sql if v is not None)


def test_which_variables_are_counts_is_one_rule_in_python_and_in_sql(db_url: str) -> None:
    from ciu.domain import ROLLUPS, SPACES, Variable

    with psycopg.connect(db_url) as conn:
        for rollup in ROLLUPS:
            for space in SPACES:
                in_sql = conn.execute("SELECT ciu.is_count(%s, %s)", (rollup, space)).fetchone()[0]
                assert in_sql is Variable("v", "1", space, rollup).is_count, (rollup, space)
    assert Variable("people", "persons", "social", "sum").is_count
