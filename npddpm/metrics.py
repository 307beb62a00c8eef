r"""Sample-quality metrics, each to be reported beside its real-vs-real floor.

Two-sample metrics take ``x`` (the samples under test, e.g. generated) and ``y`` (the
reference, real data), arrays of shape ``(n, ...)`` flattened to ``(n, d)``. All pairwise work
is chunked so no more than ~16 MB of distances exist at once (n up to ~10⁴ is fine).

==========================  ==================================================================
metric                      what it is (reference)
==========================  ==================================================================
:func:`energy_distance`     ``2E‖X−Y‖ − E‖X−X'‖ − E‖Y−Y'‖``, U-statistic (Székely & Rizzo 2013)
:func:`sliced_wasserstein`  mean over directions θ of W₁ of the projections (Bonneel et al. 2015)
:func:`mmd2`                unbiased MMD² summed over RBF bandwidths (Gretton et al. 2012, Eq. 3)
:func:`c2st_1nn`            leave-one-out 1-NN two-sample accuracy (Lopez-Paz & Oquab 2017)
:func:`precision_recall`    k-NN precision/recall (Kynkäänniemi et al. 2019), density and
                            coverage (Naeem et al. 2020)
:func:`neg_log_likelihood`  exact ``E[−log p_data(x)]`` where the density is known (nats)
:func:`frechet_distance`    ``‖μx−μy‖² + tr(Σx + Σy − 2(Σx^½ Σy Σx^½)^½)``, e.g. in PCA space
:func:`class_coverage`      classes produced, via a classifier fitted on training images
:func:`nearest_distance`    distance of each sample to its nearest training image (copying)
==========================  ==================================================================

:func:`real_vs_real` evaluates any of them between two independent real samples of the same
size: the floor a perfect model would reach at that sample size. :func:`evaluate` computes
every metric that applies to a dataset, each beside its floor.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import wasserstein_distance

from ._checks import as_int
from ._datasets import Dataset, as_rng
from ._features import PCA, LogisticRegression, flatten

__all__ = [
    "PCA",
    "Floor",
    "LogisticRegression",
    "PrecisionRecall",
    "c2st_1nn",
    "class_coverage",
    "default_bandwidths",
    "digits_classifier",
    "digits_pca",
    "energy_distance",
    "entropy_estimate",
    "evaluate",
    "frechet_distance",
    "inside_support_rate",
    "mmd2",
    "nearest_distance",
    "neg_log_likelihood",
    "precision_recall",
    "real_vs_real",
    "sliced_wasserstein",
]

_WORK_ELEMENTS = 2_000_000  # distances per chunk: 16 MB of float64


# --------------------------------------------------------------------------------------
# chunked pairwise distances
# --------------------------------------------------------------------------------------


def _pair(x: object, y: object) -> tuple[np.ndarray, np.ndarray]:
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
        if d <= 3:  # low dimension: direct differences, exact and BLAS-free
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
    x, y = _pair(x, y)
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
    x, y = _pair(x, y)
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
    x, y = _pair(x, y)
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
        import numba  # imported on first use so that importing npddpm compiles nothing

        _MMD_KERNEL = numba.njit(cache=True, nogil=True)(_mmd_kernel_py)
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
    x, y = _pair(x, y)
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
    fake, real = _pair(fake, real)
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


# --------------------------------------------------------------------------------------
# image metrics
# --------------------------------------------------------------------------------------


def _sqrtm_trace(a: np.ndarray, b: np.ndarray) -> float:
    """``tr((A^½ B A^½)^½)`` for symmetric PSD A, B, by symmetric eigendecompositions."""
    wa, va = np.linalg.eigh(a)
    ra = (va * np.sqrt(np.clip(wa, 0.0, None))) @ va.T
    m = ra @ b @ ra
    w = np.linalg.eigvalsh(0.5 * (m + m.T))
    return float(np.sum(np.sqrt(np.clip(w, 0.0, None))))


def frechet_distance(x: object, y: object) -> float:
    r"""Fréchet (2-Wasserstein) distance between Gaussians fitted to ``x`` and ``y``.

    .. math:: \lVert\mu_x-\mu_y\rVert^2 + \operatorname{tr}\bigl(\Sigma_x + \Sigma_y
              - 2(\Sigma_x^{1/2}\Sigma_y\Sigma_x^{1/2})^{1/2}\bigr)

    (Dowson & Landau 1982; FID of Heusel et al. 2017 in a chosen feature space). Covariances
    use ``n − 1``. The square roots use ``eigh``, never ``scipy.linalg.sqrtm``. Biased
    upwards at small n: compare only at equal n, beside :func:`real_vs_real`.
    """
    x, y = _pair(x, y)
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError("frechet_distance needs at least 2 examples in x and in y")
    mx, my = x.mean(axis=0), y.mean(axis=0)
    cx = np.atleast_2d(np.cov(x, rowvar=False))
    cy = np.atleast_2d(np.cov(y, rowvar=False))
    val = float(np.sum((mx - my) ** 2) + np.trace(cx) + np.trace(cy) - 2.0 * _sqrtm_trace(cx, cy))
    return max(val, 0.0)


def digits_pca(n_components: int = 20) -> PCA:
    """A :class:`PCA` fitted on the training split of ``digits`` (images in [−1, 1]).

    Use as ``frechet_distance(pca.transform(samples), pca.transform(test_images))``.
    """
    from . import data

    return PCA(n_components).fit(data.get("digits").images("train"))


def digits_classifier(l2: float = 1e-3) -> LogisticRegression:
    """A :class:`LogisticRegression` fitted on the training split of ``digits``."""
    from . import data

    ds = data.get("digits")
    return LogisticRegression(l2).fit(ds.images("train"), ds.labels("train"), n_classes=10)


def class_coverage(images: object, classifier: LogisticRegression) -> dict[str, object]:
    """Classes produced by ``images``, as judged by ``classifier``.

    Returns a dict: ``counts`` (per class), ``n_classes_produced`` (classes predicted at
    least once), ``min_share`` (the smallest class share; 1/C for perfect balance) and
    ``inception_score`` ``exp(E_x KL(p(y|x) ‖ p(y)))`` (Salimans et al. 2016).
    """
    p = classifier.predict_proba(images)
    counts = np.bincount(np.argmax(p, axis=1), minlength=classifier.n_classes)
    marg = p.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(p > 0, p * (np.log(p) - np.log(marg)), 0.0).sum(axis=1)
    return {
        "counts": counts,
        "n_classes_produced": int(np.count_nonzero(counts)),
        "min_share": float(counts.min() / counts.sum()),
        "inception_score": float(np.exp(kl.mean())),
    }


def nearest_distance(x: object, train: object) -> np.ndarray:
    """L2 distance from each row of ``x`` to its nearest row of ``train``, shape (n,).

    A median near 0 means copies. Its floor is the same for held-out real images.
    """
    x, train = _pair(x, train)
    return _min_other(x, train, same=False)


# --------------------------------------------------------------------------------------
# floors
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Floor:
    """A metric between independent real samples: ``mean`` and ``std`` over ``values``."""

    mean: float
    std: float
    values: tuple[float, ...]
    n: int


def real_vs_real(
    metric: Callable[[np.ndarray, np.ndarray], float],
    dataset: Dataset,
    n: int,
    rng: np.random.Generator | int,
    *,
    repeats: int = 1,
    **kwargs: object,
) -> Floor:
    """The floor of ``metric`` at sample size ``n``: its value between two real samples.

    For generated sets both samples are fresh draws. For ``digits`` the first argument is
    ``n`` test images and the second ``n`` training images, disjoint (so pass the model's
    samples against the training split to compare, or swap roles consistently). ``kwargs``
    go to ``metric`` (e.g. fixed ``bandwidths`` for :func:`mmd2`). Repeated ``repeats`` times
    with independent draws.
    """
    n = as_int(n, "n", minimum=2)
    repeats = as_int(repeats, "repeats", minimum=1)
    rng = as_rng(rng)
    vals = []
    for _ in range(repeats):
        if getattr(dataset, "name", None) == "digits":
            a = dataset.sample(n, rng, split="test")
            b = dataset.sample(n, rng, split="train")
        else:
            a, b = dataset.sample(n, rng), dataset.sample(n, rng)
        vals.append(float(metric(a, b, **kwargs)))
    arr = np.array(vals)
    return Floor(
        mean=float(arr.mean()),
        std=float(arr.std(ddof=1)) if arr.size > 1 else math.nan,
        values=tuple(vals),
        n=n,
    )


# --------------------------------------------------------------------------------------
# everything at once, each value beside its floor
# --------------------------------------------------------------------------------------


def evaluate(
    dataset: Dataset,
    samples: object,
    rng: np.random.Generator | int = 0,
    *,
    pca: PCA | None = None,
    classifier: LogisticRegression | None = None,
) -> dict[str, dict[str, float]]:
    """Every metric that applies to ``dataset``, each beside its real-vs-real floor.

    Returns ``{metric: {"value": v, "floor": f}}``: ``value`` compares ``samples`` with a real
    reference sample, ``floor`` compares another real sample of the same size with the same
    reference (same bandwidths, same features).

    * 2-D sets (``n`` = number of samples): energy distance, sliced W1, MMD², C2ST, precision,
      recall, density, coverage, and ``nll`` (exact ``E[−log p_data]``; its floor is the
      entropy estimated from real samples) or ``inside_support`` where defined.
    * ``digits`` (``n`` ≤ 719; the first 719 samples are used): reference = ``n`` test
      images, floor sample = ``n`` training images. ``fid_pca20`` (PCA fitted on train),
      precision/recall/coverage in that PCA space, ``c2st_vs_train`` (samples against ``n``
      training images; below 0.5 means copying), ``median_nn_train`` (distance to the
      nearest training image), ``classes`` and ``inception_score`` from ``classifier``.
    * ``bars_and_stripes``: ``valid`` (fraction) and ``patterns`` (distinct valid patterns).

    ``pca`` and ``classifier`` default to :func:`digits_pca` and :func:`digits_classifier`.
    """
    rng = as_rng(rng)
    name = dataset.name
    x = flatten(samples, "samples")
    if x.shape[1] != dataset.dim:
        raise ValueError(
            f"samples have {x.shape[1]} values each, dataset {name!r} has {dataset.dim}"
        )
    out: dict[str, dict[str, float]] = {}

    def put(key, value, floor):
        out[key] = {"value": float(value), "floor": float(floor)}

    if name == "bars_and_stripes":
        imgs = x.reshape(-1, *dataset.shape)
        real = dataset.sample(x.shape[0], rng)
        put("valid", dataset.is_valid(imgs).mean(), dataset.is_valid(real).mean())
        count = [np.unique(i[i >= 0]).size for i in map(dataset.pattern_index, (imgs, real))]
        put("patterns", count[0], count[1])
        return out

    if name == "digits":
        n = min(x.shape[0], 719)
        if n < 2:
            raise ValueError("evaluate needs at least 2 digit samples")
        x = x[:n]
        ref = flatten(dataset.sample(n, rng, split="test"))
        other = flatten(dataset.sample(n, rng, split="train"))
        train = flatten(dataset.images("train"))
        pca = digits_pca(20) if pca is None else pca
        clf = digits_classifier() if classifier is None else classifier
        zx, zr, zo = pca.transform(x), pca.transform(ref), pca.transform(other)
        put("fid_pca20", frechet_distance(zx, zr), frechet_distance(zo, zr))
        pa, pb = precision_recall(zx, zr), precision_recall(zo, zr)
        for key in ("precision", "recall", "coverage"):
            put(key, getattr(pa, key), getattr(pb, key))
        put("c2st_vs_train", c2st_1nn(x, other), c2st_1nn(ref, other))
        put(
            "median_nn_train",
            np.median(nearest_distance(x, train)),
            np.median(nearest_distance(ref, train)),
        )
        ca, cb = class_coverage(x, clf), class_coverage(ref, clf)
        put("classes", ca["n_classes_produced"], cb["n_classes_produced"])
        put("inception_score", ca["inception_score"], cb["inception_score"])
        return out

    n = x.shape[0]
    if n < 6:
        raise ValueError(f"evaluate needs at least 6 samples, got {n}")
    ref, other = dataset.sample(n, rng), dataset.sample(n, rng)
    seed = int(rng.integers(2**63))
    bw = default_bandwidths(ref)
    put("energy", energy_distance(x, ref), energy_distance(other, ref))
    put("sliced_w1", sliced_wasserstein(x, ref, rng=seed), sliced_wasserstein(other, ref, rng=seed))
    put("mmd2", mmd2(x, ref, bw), mmd2(other, ref, bw))
    put("c2st", c2st_1nn(x, ref), c2st_1nn(other, ref))
    pa, pb = precision_recall(x, ref), precision_recall(other, ref)
    for key in ("precision", "recall", "density", "coverage"):
        put(key, getattr(pa, key), getattr(pb, key))
    if hasattr(dataset, "in_support"):
        put("inside_support", inside_support_rate(dataset, x), inside_support_rate(dataset, other))
    elif dataset.has_log_prob:
        put("nll", neg_log_likelihood(dataset, x)[0], neg_log_likelihood(dataset, other)[0])
    return out
