r"""Metrics that use a dataset's exact density or support: ``E[−log p_data]``, the entropy it
is compared with, and the inside-support rate."""

from __future__ import annotations

import math

import numpy as np

from .._checks import as_int
from ..data import Dataset

__all__ = ["entropy_estimate", "inside_support_rate", "neg_log_likelihood"]

# --------------------------------------------------------------------------------------
# metrics that use the known distribution
# --------------------------------------------------------------------------------------


def neg_log_likelihood(dataset: Dataset, x: object) -> tuple[float, float]:
    r"""Exact ``E[−log p_data(x)]`` over the samples ``x`` (nats), with its standard error.

    Compare with the same quantity for real samples (the entropy ``H(p_data)``; use
    :func:`real_vs_real` or a large real sample). It rewards mode dropping: report it beside
    recall. Returns ``(mean, standard_error)``; ``inf`` when a sample is off the support.
    """
    if not dataset.has_log_prob:
        raise ValueError(f"dataset {dataset.name!r} has no exact density; it has no log_prob")
    nlp = -dataset.log_prob(x)
    if not np.all(np.isfinite(nlp)):
        return math.inf, math.nan
    se = float(nlp.std(ddof=1) / math.sqrt(nlp.size)) if nlp.size > 1 else math.nan
    return float(nlp.mean()), se


def entropy_estimate(
    dataset: Dataset, n: int = 200_000, rng: np.random.Generator | int = 0
) -> tuple[float, float]:
    """Monte Carlo entropy ``H(p_data) = E[−log p_data(X)]`` (nats) from ``n`` real samples.

    Returns ``(estimate, standard_error)``; the reference for :func:`neg_log_likelihood`
    (8gaussians: 2.8316 by grid integration).
    """
    n = as_int(n, "n", minimum=2)
    return neg_log_likelihood(dataset, dataset.sample(n, rng))


def inside_support_rate(dataset: Dataset, x: object) -> float:
    """Fraction of samples inside the exact support (datasets with ``in_support``)."""
    check = getattr(dataset, "in_support", None)
    if check is None:
        raise ValueError(f"dataset {dataset.name!r} has no exact support check")
    return float(np.mean(check(x)))


