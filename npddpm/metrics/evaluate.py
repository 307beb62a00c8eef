r"""Floors (:func:`real_vs_real`) and :func:`evaluate`, which reports every metric that applies
to a dataset beside its floor."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .._checks import as_int
from ..data.base import Dataset, as_rng
from ..data.images import BarsAndStripes, Digits
from .density import inside_support_rate, neg_log_likelihood
from .features import PCA, LogisticRegression, flatten
from .images import class_coverage, digits_classifier, digits_pca, frechet_distance
from .two_sample import (
    c2st_1nn,
    default_bandwidths,
    energy_distance,
    mmd2,
    nearest_distance,
    precision_recall,
    sliced_wasserstein,
)

__all__ = ["Floor", "evaluate", "real_vs_real"]

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
        if isinstance(dataset, Digits):
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

    if isinstance(dataset, BarsAndStripes):
        imgs = x.reshape(-1, *dataset.shape)
        real = dataset.sample(x.shape[0], rng)
        put("valid", dataset.is_valid(imgs).mean(), dataset.is_valid(real).mean())
        count = [np.unique(i[i >= 0]).size for i in map(dataset.pattern_index, (imgs, real))]
        put("patterns", count[0], count[1])
        return out

    if isinstance(dataset, Digits):
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

