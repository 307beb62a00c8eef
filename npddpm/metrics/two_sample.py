r"""Two-sample metrics between samples ``x`` (under test) and ``y`` (reference), each listed with
its reference in :mod:`npddpm.metrics`.

Arrays of shape ``(n, ...)`` are flattened to ``(n, d)``. All pairwise work is chunked so no
more than ~16 MB of distances exist at once (n up to ~10⁴ is fine).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import wasserstein_distance

from .._checks import as_int
from ..data.base import as_rng
from .features import flatten

__all__ = [
    "PrecisionRecall",
    "c2st_1nn",
    "default_bandwidths",
    "energy_distance",
    "mmd2",
    "nearest_distance",
    "paired",
    "precision_recall",
    "sliced_wasserstein",
]

_WORK_ELEMENTS = 2_000_000  # distances per chunk: 16 MB of float64


# --------------------------------------------------------------------------------------
# chunked pairwise distances
# --------------------------------------------------------------------------------------


def paired(x: object, y: object) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` flattened to float64 ``(n, d)`` and ``(m, d)``; the widths must agree."""
    x, y = flatten(x, "x"), flatten(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must have the same number of features, got {x.shape[1]} and {y.shape[1]}"
        )
    return x, y


def _dist_blocks(a: np.ndarray, b: np.ndarray):
    """Yield ``(rows, D)`` with ``D[i, j] = ‖a[rows][i] − b[j]‖`` in chunks of rows."""
    step = max(1, _WORK_ELEMENTS // max(1, b.shape[0]))
    d = a.shape[1]
    b2 = np.einsum("ij,ij->i", b, b) if d > 3 else None
    for start in range(0, a.shape[0], step):
        rows = slice(start, min(a.shape[0], start + step))
        ac = a[rows]
        if b2 is None:  # d <= 3, low dimension: direct differences, exact and BLAS-free
            sq = np.zeros((ac.shape[0], b.shape[0]))
            for k in range(d):
                diff = ac[:, k, None] - b[None, :, k]
                sq += diff * diff
        else:
            sq = np.einsum("ij,ij->i", ac, ac)[:, None] + b2[None, :] - 2.0 * (ac @ b.T)
            np.maximum(sq, 0.0, out=sq)
        yield rows, np.sqrt(sq)


def _mean_dist(a: np.ndarray, b: np.ndarray, *, same: bool) -> float:
    """Mean of ‖a_i − b_j‖ over all pairs, or over i ≠ j when ``a is b`` (``same``)."""
    total = sum(float(d.sum()) for _, d in _dist_blocks(a, b))
    pairs = a.shape[0] * (a.shape[0] - 1) if same else a.shape[0] * b.shape[0]
    return total / pairs


def _min_other(a: np.ndarray, b: np.ndarray, *, same: bool, k: int = 1) -> np.ndarray:
    """Distance from each row of ``a`` to its k-th nearest row of ``b`` (self excluded if same)."""
    out = np.empty(a.shape[0])
    for rows, d in _dist_blocks(a, b):
        if same:
            d[np.arange(d.shape[0]), np.arange(rows.start, rows.stop)] = np.inf
        out[rows] = np.partition(d, k - 1, axis=1)[:, k - 1]
    return out



# --------------------------------------------------------------------------------------
# two-sample metrics
# --------------------------------------------------------------------------------------


def energy_distance(x: object, y: object) -> float:
    r"""Energy distance (Székely & Rizzo 2013), unbiased U-statistic.

    .. math:: D^2 = \frac{2}{nm}\sum_{i,j}\lVert x_i - y_j\rVert
              - \frac{1}{n(n-1)}\sum_{i\ne j}\lVert x_i - x_j\rVert
              - \frac{1}{m(m-1)}\sum_{i\ne j}\lVert y_i - y_j\rVert

    Its expectation is 0 when x and y come from the same distribution, positive otherwise.
    Shapes: ``x`` (n, ...), ``y`` (m, ...), ``n, m >= 2``.
    """
    x, y = paired(x, y)
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError("energy_distance needs at least 2 examples in x and in y")
    return (
        2.0 * _mean_dist(x, y, same=False)
        - _mean_dist(x, x, same=True)
        - _mean_dist(y, y, same=True)
    )


def _directions(d: int, n_projections: int, rng: np.random.Generator) -> np.ndarray:
    if d == 2:  # stratified angles on [0, π): the same law as uniform directions, less noise
        ang = (np.arange(n_projections) + rng.random()) * math.pi / n_projections
        return np.stack([np.cos(ang), np.sin(ang)], axis=1)
    v = rng.standard_normal((n_projections, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def sliced_wasserstein(
    x: object, y: object, *, n_projections: int = 128, rng: np.random.Generator | int = 0
) -> float:
    r"""Sliced Wasserstein-1 distance: :math:`\mathbb E_\theta\, W_1(\theta^\top X, \theta^\top Y)`.

    θ uniform on the unit sphere (in 2-D: ``n_projections`` stratified angles with a random
    offset), each 1-D W₁ exact for the two empirical distributions (for ``n = m``:
    ``mean |sort(θᵀx) − sort(θᵀy)|``). For N(0, I) against N(μ, I) in d dimensions the
    population value is ``‖μ‖ E|θ₁| = ‖μ‖ Γ(d/2) / (√π Γ((d+1)/2))``, i.e. ``2‖μ‖/π`` in 2-D.
    """
    x, y = paired(x, y)
    n_projections = as_int(n_projections, "n_projections", minimum=1)
    theta = _directions(x.shape[1], n_projections, as_rng(rng))
    px, py = x @ theta.T, y @ theta.T
    if px.shape[0] == py.shape[0]:
        return float(np.mean(np.abs(np.sort(px, axis=0) - np.sort(py, axis=0))))
    return float(np.mean([wasserstein_distance(px[:, k], py[:, k]) for k in range(n_projections)]))


def default_bandwidths(
    y: object, factors: tuple[float, ...] = (0.125, 0.25, 0.5, 1, 2, 4)
) -> np.ndarray:
    """RBF bandwidths: the median pairwise distance of (the first 1000 rows of) ``y`` × factors."""
    y = flatten(y, "y")[:1000]
    if y.shape[0] < 2:
        raise ValueError("default_bandwidths needs at least 2 reference examples")
    iu = np.triu_indices(y.shape[0], 1)
    dist = np.vstack([d for _, d in _dist_blocks(y, y)])  # at most 1000 × 1000
    return float(np.median(dist[iu])) * np.asarray(factors, dtype=np.float64)


def mmd2(x: object, y: object, bandwidths: object = None) -> float:
    r"""Unbiased squared MMD with a sum of RBF kernels (Gretton et al. 2012, Eq. 3).

    .. math:: k(a, b) = \sum_h \exp\!\bigl(-\lVert a-b\rVert^2 / (2h^2)\bigr), \quad
              \widehat{\mathrm{MMD}}^2_u = \frac{\sum_{i\ne j}k(x_i,x_j)}{n(n-1)}
              + \frac{\sum_{i\ne j}k(y_i,y_j)}{m(m-1)} - \frac{2\sum_{i,j}k(x_i,y_j)}{nm}

    Its expectation is exactly 0 when x and y have the same distribution (it can be negative).
    ``bandwidths`` defaults to :func:`default_bandwidths` of ``y``; pass the same array when
    comparing a value with its floor.
    """
    x, y = paired(x, y)
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError("mmd2 needs at least 2 examples in x and in y")
    h = default_bandwidths(y) if bandwidths is None else np.asarray(bandwidths, dtype=np.float64)
    if h.ndim != 1 or h.size == 0 or not np.all(h > 0):
        raise ValueError(f"bandwidths must be a 1-D array of positive numbers, got {h!r}")
    gam = np.sort(0.5 / h**2)
    # Kernels at bandwidths 2^j apart are squares of each other: exp(−4g d²) = exp(−g d²)⁴.
    # squarings[k] = log₂(gam[k]/gam[k−1]) when that is a whole number, else −1 (use exp).
    ratio = np.log2(gam[1:] / gam[:-1])
    squarings = np.concatenate(
        [[-1], np.where(np.abs(ratio - np.rint(ratio)) < 1e-12, np.rint(ratio), -1)]
    )
    kernel = _mmd_kernel()
    n, m = x.shape[0], y.shape[0]
    kxx = kernel(x, x, gam, squarings.astype(np.int64), True)
    kyy = kernel(y, y, gam, squarings.astype(np.int64), True)
    kxy = kernel(x, y, gam, squarings.astype(np.int64), False)
    return 2.0 * kxx / (n * (n - 1)) + 2.0 * kyy / (m * (m - 1)) - 2.0 * kxy / (n * m)


_MMD_KERNEL = None


def _mmd_kernel():
    """The compiled kernel-sum loop (Numba, compiled on first use and cached on disk)."""
    global _MMD_KERNEL
    if _MMD_KERNEL is None:
        from .._numba import cpu_jit  # Numba is imported on first use, not with npddpm

        _MMD_KERNEL = cpu_jit(cache=True, error_model="python")(_mmd_kernel_py)
    return _MMD_KERNEL


def _mmd_kernel_py(a, b, gam, squarings, upper):  # pragma: no cover - compiled
    """Σ over pairs (i < j if ``upper``, else all) of Σ_h exp(−gam_h ‖a_i − b_j‖²)."""
    total = 0.0
    d = a.shape[1]
    for i in range(a.shape[0]):
        start = i + 1 if upper else 0
        for j in range(start, b.shape[0]):
            sq = 0.0
            for k in range(d):
                diff = a[i, k] - b[j, k]
                sq += diff * diff
            e = 0.0
            for h in range(gam.shape[0]):
                if squarings[h] < 0:
                    e = math.exp(-gam[h] * sq)
                else:
                    for _ in range(squarings[h]):
                        e = e * e
                total += e
    return total


def c2st_1nn(x: object, y: object) -> float:
    r"""Leave-one-out 1-nearest-neighbour two-sample accuracy (C2ST).

    Pool ``x`` (label 0) and ``y`` (label 1); classify each point by the label of its nearest
    other point; return the accuracy. Ties in distance count ½. For equal sizes ``n`` and
    the same continuous distribution its expectation is ``(n−1)/(2n−1)`` (≈ 0.5); near 1 the
    sets are separable; well below 0.5 against the training set means ``x`` copies it.
    """
    x, y = paired(x, y)
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError("c2st_1nn needs at least 2 examples in x and in y")
    correct = 0.0
    for a, b in ((x, y), (y, x)):
        d_same = _min_other(a, a, same=True)
        d_other = _min_other(a, b, same=False)
        correct += np.sum(d_same < d_other) + 0.5 * np.sum(d_same == d_other)
    return float(correct / (x.shape[0] + y.shape[0]))


@dataclass(frozen=True)
class PrecisionRecall:
    """k-NN precision, recall (Kynkäänniemi et al. 2019), density and coverage (Naeem et al.
    2020). ``density`` has expectation 1 for identical distributions; ``coverage`` has
    expectation ``1 − Π_{i=1..k} (N−i)/(M+N−i)`` (≈ 1 − 2⁻ᵏ for M = N)."""

    precision: float
    recall: float
    density: float
    coverage: float
    k: int


def precision_recall(fake: object, real: object, *, k: int = 5) -> PrecisionRecall:
    r"""k-NN precision, recall, density and coverage of ``fake`` against ``real``.

    With ``r_i`` the distance from real point i to its k-th nearest other real point and
    ``f_j`` likewise among the fakes (closed balls):

    * precision = mean_j 1[∃i: ‖fake_j − real_i‖ ≤ r_i]
    * recall = mean_i 1[∃j: ‖real_i − fake_j‖ ≤ f_j]
    * density = (1/(kM)) Σ_j Σ_i 1[‖fake_j − real_i‖ ≤ r_i]
    * coverage = mean_i 1[min_j ‖real_i − fake_j‖ ≤ r_i]
    """
    fake, real = paired(fake, real)
    k = as_int(k, "k", minimum=1)
    if min(fake.shape[0], real.shape[0]) <= k:
        raise ValueError(f"precision_recall needs more than k = {k} examples in each set")
    r_real = _min_other(real, real, same=True, k=k)
    r_fake = _min_other(fake, fake, same=True, k=k)
    inside = 0
    hit_fake = np.zeros(fake.shape[0], bool)
    for rows, d in _dist_blocks(fake, real):
        within = d <= r_real[None, :]
        hit_fake[rows] = within.any(axis=1)
        inside += int(within.sum())
    recall_hit = np.zeros(real.shape[0], bool)
    covered = np.zeros(real.shape[0], bool)
    for rows, d in _dist_blocks(real, fake):
        recall_hit[rows] = (d <= r_fake[None, :]).any(axis=1)
        covered[rows] = d.min(axis=1) <= r_real[rows]
    return PrecisionRecall(
        precision=float(hit_fake.mean()),
        recall=float(recall_hit.mean()),
        density=inside / (k * fake.shape[0]),
        coverage=float(covered.mean()),
        k=k,
    )


def nearest_distance(x: object, train: object) -> np.ndarray:
    """L2 distance from each row of ``x`` to its nearest row of ``train``, shape (n,).

    A median near 0 means copies. Its floor is the same for held-out real images.
    """
    x, train = paired(x, train)
    return _min_other(x, train, same=False)
