"""Tests of npddpm.metrics.images: the Fréchet distance, the digits classifier and PCA, and
the real-vs-real floors on digits.

Every statistical test uses fixed seeds. The standard deviations quoted were measured over
20 independent replicates at the same sizes; a tolerance of 4.5 sd has a false-failure
probability of about 7e-6 under a normal approximation.
"""

import numpy as np
import pytest
from scipy import linalg

from npddpm import metrics as M


def normal(seed, n, d, shift=0.0):
    return np.random.default_rng(seed).standard_normal((n, d)) + shift


# --- Fréchet distance, classifier, copying -----------------------------------------------


def test_frechet_distance_matches_scipy_sqrtm():
    x, y = normal(0, 500, 4) @ np.diag([1, 2, 0.5, 1]), normal(1, 400, 4, 0.3)
    a, b = np.cov(x.T), np.cov(y.T)
    want = np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(a + b - 2 * linalg.sqrtm(a @ b).real)
    assert M.frechet_distance(x, y) == pytest.approx(want, rel=1e-9)
    # 1-D: (μx − μy)² + (σx − σy)².
    u, v = normal(2, 300, 1) * 2 + 1, normal(3, 300, 1)
    assert M.frechet_distance(u, v) == pytest.approx(
        (u.mean() - v.mean()) ** 2 + (u.std(ddof=1) - v.std(ddof=1)) ** 2, rel=1e-10
    )


def test_digits_classifier_accuracy_and_class_coverage(digits, classifier):
    test = digits.images("test")
    acc = np.mean(classifier.predict(test) == digits.labels("test"))
    assert acc > 0.95  # measured 0.965 on the 719 test images
    cov = M.class_coverage(test, classifier)
    assert cov["n_classes_produced"] == 10 and cov["min_share"] > 0.08
    only_sevens = test[digits.labels("test") == 7]
    assert M.class_coverage(only_sevens, classifier)["n_classes_produced"] <= 3


def test_digits_floors_and_copy_detection(digits):
    train = digits.images("train")
    # Held-out images are at a typical distance from train; copies are at exactly 0.
    assert np.median(M.nearest_distance(digits.images("test"), train)) > 1.0
    assert np.all(M.nearest_distance(train[:50], train) == 0.0)
    c2st = M.real_vs_real(M.c2st_1nn, digits, 719, rng=0)
    assert 0.45 <= c2st.mean <= 0.55 and c2st.n == 719
    assert M.c2st_1nn(train[:719], train) < 0.25  # copies of train, C2ST against train
    pca = M.digits_pca(20)
    fd = M.real_vs_real(
        lambda a, b: M.frechet_distance(pca.transform(a), pca.transform(b)), digits, 719, rng=1
    )
    # Floor measured 0.176 ± 0.011 over 5 repeats (test split against 719 training images).
    assert 0.1 < fd.mean < 0.3
