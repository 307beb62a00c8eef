"""Tests of npddpm.metrics.features: PCA and the multinomial logistic regression."""

import numpy as np
import pytest

from npddpm import metrics as M
from npddpm.testing.gradcheck import numerical_vjp


def normal(seed, n, d, shift=0.0):
    return np.random.default_rng(seed).standard_normal((n, d)) + shift


def test_pca_matches_the_covariance_eigendecomposition():
    x = normal(0, 400, 6) @ np.random.default_rng(1).standard_normal((6, 6))
    pca = M.PCA(3).fit(x)
    w, v = np.linalg.eigh(np.cov(x.T))
    assert np.allclose(pca.explained_variance_, w[::-1][:3], rtol=1e-10)
    assert np.allclose(np.abs(pca.components_ @ v[:, ::-1][:, :3]), np.eye(3), atol=1e-8)
    z = pca.transform(x)
    assert np.allclose(np.cov(z.T), np.diag(pca.explained_variance_), atol=1e-9)
    with pytest.raises(ValueError, match="exceeds"):
        M.PCA(7).fit(x)


def test_logistic_regression_gradient_by_central_differences():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((30, 4)), rng.integers(0, 3, 30)
    clf = M.LogisticRegression(l2=0.1)
    onehot = np.eye(3)[y]
    p = rng.standard_normal(15)
    _, g = clf.loss_and_grad(p, x, onehot)
    # Centred differences of the scalar loss (cotangent v = 1), h = 1e-6 as before: truncation
    # O(h²) and rounding O(u·|f|/h) ~ 1e-10, far inside the tolerance.
    fd = numerical_vjp(lambda q: clf.loss_and_grad(q, x, onehot)[0], p, np.ones(()), h=1e-6)
    assert np.allclose(g, fd, rtol=1e-7, atol=1e-9)
