"""Public aggregate counts: small-count suppression (k) and optional Laplace noise (ε).

Which variables are counts is :attr:`ciu.domain.Variable.is_count`. The
same rule as the SQL function ``ciu.api_public_count`` (used by the
predictions and tiles queries): for callers whose role has no exact access, a
count above 0 and below ``k`` is withheld (``None``) and the others get Laplace
noise of scale ``1/ε`` (a count has sensitivity 1), clipped at 0. A forecast's
quantiles follow the rule of ``ciu/sql/api_predictions.sql``: each is protected
like a count, all are withheld where the value is, and those published are
kept in order.
"""

from __future__ import annotations

import numpy as np



def public_counts(values: np.ndarray, *, exact: bool, k: float, epsilon: float | None,
                  rng: np.random.Generator | None = None) -> list[float | None]:
    """Apply suppression and noise to an array of counts; ``None`` marks a withheld value."""
    values = np.asarray(values, dtype=float)
    if exact:
        return [None if np.isnan(v) else float(v) for v in values]
    out = values.copy()
    if epsilon is not None and epsilon > 0:
        rng = rng or np.random.default_rng()
        out = np.maximum(0.0, out + rng.laplace(0.0, 1.0 / epsilon, size=out.shape))
    withheld = (values > 0) & (values < k)
    return [None if (w or np.isnan(v)) else float(v) for v, w in zip(out, withheld)]


def public_forecasts(values: np.ndarray, quantiles: np.ndarray, *, exact: bool, k: float, epsilon: float | None,
                     rng: np.random.Generator | None = None) -> tuple[list[float | None], list[list[float | None]]]:
    """Protect forecast counts and their quantiles (``quantiles``: rows of q10, q50, q90; NaN where not stored).

    Returns the values as :func:`public_counts` does, and per row the three
    quantiles: each protected like a count, all ``None`` where the value is
    withheld, and those published sorted back into their places (noise drawn
    for each can cross them; what is withheld stays withheld).
    """
    rng = rng or np.random.default_rng()
    shown = public_counts(values, exact=exact, k=k, epsilon=epsilon, rng=rng)
    q = np.asarray(quantiles, dtype=float).reshape(len(shown), 3)
    flat = public_counts(q.ravel(), exact=exact, k=k, epsilon=epsilon, rng=rng)
    rows = []
    for i, value in enumerate(shown):
        row = [None] * 3 if value is None else flat[3 * i:3 * i + 3]
        kept = [j for j, v in enumerate(row) if v is not None]
        for j, v in zip(kept, sorted(row[j] for j in kept)):  # type: ignore[type-var]
            row[j] = v
        rows.append(row)
    return shown, rows
