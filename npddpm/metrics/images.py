r"""Image metrics: Fréchet distance in a feature space, class coverage, and the ``digits``
feature maps they use.

==========================  ==================================================================
:func:`frechet_distance`    ``‖μx−μy‖² + tr(Σx + Σy − 2(Σx^½ Σy Σx^½)^½)``, e.g. in PCA space
:func:`class_coverage`      classes produced, via a classifier fitted on training images
:func:`digits_pca`          a PCA fitted on the ``digits`` training split
:func:`digits_classifier`   a logistic regression fitted on the ``digits`` training split
==========================  ==================================================================
"""

from __future__ import annotations

import numpy as np

from .. import data
from .features import PCA, LogisticRegression
from .two_sample import paired

__all__ = ["class_coverage", "digits_classifier", "digits_pca", "frechet_distance"]

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
    x, y = paired(x, y)
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

    return PCA(n_components).fit(data.get("digits").images("train"))


def digits_classifier(l2: float = 1e-3) -> LogisticRegression:
    """A :class:`LogisticRegression` fitted on the training split of ``digits``."""

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
