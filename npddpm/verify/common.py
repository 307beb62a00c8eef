r"""What the verification rows share: the :class:`Row` record, the distribution tests
(projection KS, mean χ²) and the test distributions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..analytic import GaussianMixture

__all__ = [
    "ALPHA",
    "DETERMINISTIC_TOL",
    "Row",
    "directions",
    "gaussian_3d",
    "gaussian_diag_3d",
    "mean_chi2_pvalue",
    "mixture_2d",
    "mixture_16d",
    "projection_cdf",
    "projection_ks_pvalues",
]

ALPHA = 1e-3  # family-wise false-failure probability of all statistical rows together
DETERMINISTIC_TOL = 1e-9


@dataclass(frozen=True)
class Row:
    """One line of the verification table."""

    check: str
    data: str
    schedule: str
    sampler: str
    variance: str
    metric: str
    value: float
    limit: float
    passed: bool
    note: str = ""


# ---------------------------------------------------------------- statistics


def projection_cdf(mixture: GaussianMixture, u: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The exact CDF of uᵀx for x ~ ``mixture``: a 1-D mixture of N(uᵀμ_k, uᵀΣ_k u)."""
    m = mixture.means @ u
    sd = np.sqrt(np.einsum("i,kij,j->k", u, mixture.covariance_matrices(), u))
    w = mixture.weights

    def cdf(y):
        y = np.asarray(y, dtype=np.float64)
        return np.sum(w * stats.norm.cdf((y[..., None] - m) / sd), axis=-1)

    return cdf


def projection_ks_pvalues(
    samples: np.ndarray, mixture: GaussianMixture, directions: np.ndarray
) -> np.ndarray:
    """One-sample KS p-values of ``samples @ directions[:, j]`` against the exact projected
    CDF of ``mixture``, one per column of ``directions`` (D, J)."""
    x = np.asarray(samples, dtype=np.float64).reshape(len(samples), -1)
    return np.array(
        [stats.kstest(x @ u, projection_cdf(mixture, u)).pvalue for u in np.asarray(directions).T]
    )


def mean_chi2_pvalue(samples: np.ndarray, mixture: GaussianMixture) -> float:
    r"""p-value of :math:`n(\bar x - m)^\top C^{-1}(\bar x - m) \sim \chi^2_D` with the exact
    mean m and covariance C of ``mixture`` (CLT; Cholesky solve)."""
    x = np.asarray(samples, dtype=np.float64).reshape(len(samples), -1)
    n = x.shape[0]
    L = np.linalg.cholesky(mixture.covariance())
    z = np.linalg.solve(L, np.sqrt(n) * (x.mean(0) - mixture.mean()))
    return float(stats.chi2.sf(z @ z, df=x.shape[1]))


def directions(dim: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` unit vectors (D, count): the coordinate axes first (up to half), then random."""
    axes = min(dim, count // 2)
    u = np.concatenate([np.eye(dim)[:, :axes], rng.standard_normal((dim, count - axes))], 1)
    return u / np.linalg.norm(u, axis=0)


# ---------------------------------------------------------------- data sets


def gaussian_3d() -> GaussianMixture:
    """The single full-covariance Gaussian of the moment rows."""
    c = np.array([[0.5, 0.2, -0.1], [0.2, 0.3, 0.05], [-0.1, 0.05, 0.2]])
    return GaussianMixture([1.0], [[0.3, -0.5, 0.8]], c[None])


def gaussian_diag_3d() -> GaussianMixture:
    """A diagonal Gaussian, for the learned-variance rows (the oracle's variance channels are
    the diagonal of the exact reverse covariance, exact for diagonal data)."""
    return GaussianMixture([1.0], [[0.3, -0.5, 0.8]], [[0.5, 0.05, 0.2]])


def mixture_2d() -> GaussianMixture:
    """Three full-covariance components in 2-D."""
    return GaussianMixture(
        [0.5, 0.3, 0.2],
        [[-1.5, 0.5], [1.0, 1.0], [0.5, -1.5]],
        [
            [[0.1, 0.05], [0.05, 0.2]],
            [[0.3, -0.1], [-0.1, 0.1]],
            [[0.05, 0.0], [0.0, 0.05]],
        ],
    )


def mixture_16d() -> GaussianMixture:
    """Three diagonal-covariance components in 16-D (fixed seed)."""
    rng = np.random.default_rng(16)
    return GaussianMixture(
        [0.4, 0.35, 0.25], 1.5 * rng.standard_normal((3, 16)), rng.uniform(0.05, 0.5, (3, 16))
    )


# ---------------------------------------------------------------- the suite
