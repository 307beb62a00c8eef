"""Statistical sanity of the counter-based normals (NumPy reference).

Every check compares a statistic with its sampling distribution under the null hypothesis
(i.i.d. N(0, 1)) and fails only beyond a bound whose false-failure probability for a random
seed is stated next to it. The seeds are fixed, so the suite is deterministic; the stated
probabilities say how unlucky a fixed seed would have had to be. Over the whole module the
false-failure probability is below 1e-4 (union bound over the checks).
"""

import numpy as np
import pytest
from scipy import stats

from npddpm import rng

N = 2**20
# |N(0,1)| > 5.5 has probability 3.8e-8; used for every asymptotically normal statistic.
Z = 5.5


@pytest.fixture(scope="module", params=[np.float64, np.float32], ids=["f64", "f32"])
def normals(request):
    return rng.standard_normal(20261128, 3, N, request.param).astype(np.float64)


def test_moments(normals):
    """Mean, variance, skewness and excess kurtosis within 5.5 standard errors.

    Standard errors under N(0,1): 1/√n, √(2/n), √(6/n), √(24/n). Four checks per dtype,
    false-failure probability ≤ 4 × 3.8e-8.
    """
    n = normals.size
    assert abs(normals.mean()) < Z / np.sqrt(n)
    assert abs(normals.var() - 1) < Z * np.sqrt(2 / n)
    assert abs(stats.skew(normals)) < Z * np.sqrt(6 / n)
    assert abs(stats.kurtosis(normals)) < Z * np.sqrt(24 / n)


def test_ks_against_standard_normal(normals):
    """Kolmogorov–Smirnov against N(0, 1): p-value > 1e-6 (false-failure probability 1e-6).

    The float32 transform has resolution 2⁻²⁴ in the uniform variates, far below the KS
    statistic's resolution 1/√n ≈ 1e-3 at this n.
    """
    assert stats.kstest(normals, "norm").pvalue > 1e-6


def test_tails(normals):
    """Counts beyond ±2 and ±3 σ: binomial, checked within 5.5 standard deviations."""
    n = normals.size
    for k in (2.0, 3.0):
        p = 2 * stats.norm.sf(k)
        count = np.count_nonzero(np.abs(normals) > k)
        assert abs(count - n * p) < Z * np.sqrt(n * p * (1 - p))


def _corr(a, b):
    return float(np.corrcoef(a, b)[0, 1])


@pytest.mark.parametrize("lag", [1, 2, 3, 4, 5, 8])
def test_neighbouring_elements_uncorrelated(normals, lag):
    """z[i] vs z[i + lag] (lanes of one Philox block for lag < 4, neighbouring counters for
    lag ≥ 4), and the same for z²: each sample correlation is ≈ N(0, 1/n) under
    independence; bound 5.5/√n, false-failure probability 2 × 3.8e-8 per lag and dtype."""
    a, b = normals[:-lag], normals[lag:]
    bound = Z / np.sqrt(a.size)
    assert abs(_corr(a, b)) < bound
    assert abs(_corr(a**2, b**2)) < bound


def test_block_lanes_jointly_normal(normals):
    """Chi-square of the 10 × 10 equiprobable grid of (z[4q], z[4q + 4]) — neighbouring
    counters — and of (z[4q], z[4q + 1]) — a Box–Muller pair; 99 degrees of freedom,
    p-value > 1e-6 each (false-failure probability 2e-6)."""
    edges = stats.norm.ppf(np.linspace(0, 1, 11)[1:-1])
    blocks = normals.reshape(-1, 4)
    for a, b in ((blocks[:-1, 0], blocks[1:, 0]), (blocks[:, 0], blocks[:, 1])):
        h = np.zeros((10, 10))
        np.add.at(h, (np.searchsorted(edges, a), np.searchsorted(edges, b)), 1)
        chi2 = ((h - a.size / 100) ** 2 / (a.size / 100)).sum()
        assert stats.chi2.sf(chi2, 99) > 1e-6


@pytest.mark.parametrize(
    ("other_seed", "other_stream"),
    [(20261128, 4), (20261128, 3 + 2**32), (20261129, 3), (20261128 + 2**32, 3)],
    ids=["next-stream", "stream-high-word", "next-seed", "seed-high-word"],
)
def test_streams_and_seeds_uncorrelated(other_seed, other_stream):
    """Same indices, another stream or seed (each half of the 64-bit words): correlation of z
    and of z² within 5.5/√n (false-failure probability 2 × 3.8e-8 per case)."""
    n = N // 4
    a = rng.standard_normal(20261128, 3, n)
    b = rng.standard_normal(other_seed, other_stream, n)
    bound = Z / np.sqrt(n)
    assert abs(_corr(a, b)) < bound
    assert abs(_corr(a**2, b**2)) < bound
