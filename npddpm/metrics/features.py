r"""Feature maps fitted on training data for the image metrics: PCA and a multinomial
logistic-regression classifier, both in NumPy (no scikit-learn).

Re-exported by :mod:`npddpm.metrics`.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp

from .._checks import as_int

__all__ = ["PCA", "LogisticRegression", "flatten"]


def flatten(x: object, name: str = "x") -> np.ndarray:
    """``(n, ...)`` → float64 ``(n, d)``; rejects non-finite values."""
    arr = np.asarray(x)
    if arr.dtype == bool or arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real array, got dtype {arr.dtype}")
    if arr.ndim < 2 or arr.shape[0] < 1:
        raise ValueError(
            f"{name} must have shape (n, ...) with n >= 1, got {arr.shape}; "
            "pass one example per row"
        )
    arr = arr.reshape(arr.shape[0], -1).astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; it holds NaN or inf")
    return arr


class PCA:
    r"""Principal components of training data, by SVD of the centred data matrix.

    ``transform(x) = (x − mean) Vₖᵀ`` with ``Vₖ`` the top-``k`` right singular vectors
    (each with its sign fixed so its largest-magnitude entry is positive).

    Parameters
    ----------
    n_components : int
        ``k >= 1``, at most the number of features.

    Attributes
    ----------
    mean_ : ndarray, shape (d,)
    components_ : ndarray, shape (k, d)
    explained_variance_ : ndarray, shape (k,)
        ``s²/(n − 1)``, the variance along each component.
    """

    def __init__(self, n_components: int) -> None:
        self.n_components = as_int(n_components, "n_components", minimum=1)

    def fit(self, x: object) -> PCA:
        """Fit ``mean_``, ``components_`` and ``explained_variance_`` to ``x`` (n, ...); self.

        Raises ValueError when ``n_components`` exceeds min(n, d).
        """
        x = flatten(x)
        if self.n_components > min(x.shape):
            raise ValueError(
                f"n_components = {self.n_components} exceeds min(n, d) = {min(x.shape)} of "
                "the training data; pass fewer components"
            )
        self.mean_ = x.mean(axis=0)
        _, s, vt = np.linalg.svd(x - self.mean_, full_matrices=False)
        vt = vt[: self.n_components]
        sign = np.sign(vt[np.arange(vt.shape[0]), np.argmax(np.abs(vt), axis=1)])
        self.components_ = vt * sign[:, None]
        self.explained_variance_ = s[: self.n_components] ** 2 / max(1, x.shape[0] - 1)
        return self

    def transform(self, x: object) -> np.ndarray:
        """Project ``x`` (n, ...) onto the components: shape (n, k)."""
        x = flatten(x)
        if x.shape[1] != self.mean_.size:
            raise ValueError(
                f"x has {x.shape[1]} features per example, the PCA was fitted on {self.mean_.size}"
            )
        return (x - self.mean_) @ self.components_.T


class LogisticRegression:
    r"""Multinomial logistic regression with an L2 penalty, fitted by L-BFGS.

    .. math:: p(y = c \mid x) = \operatorname{softmax}(x W + b)_c, \qquad
              L(W, b) = -\frac1n \sum_i \log p(y_i \mid x_i) + \frac{\lambda}{2} \lVert W\rVert^2

    with the gradient ``∂L/∂W = Xᵀ(P − Y)/n + λW``, ``∂L/∂b = Σᵢ(Pᵢ − Yᵢ)/n``.

    Parameters
    ----------
    l2 : float
        ``λ >= 0``.
    max_iter : int
        L-BFGS iteration limit.
    """

    def __init__(self, l2: float = 1e-3, max_iter: int = 500) -> None:
        if not l2 >= 0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        self.l2 = float(l2)
        self.max_iter = as_int(max_iter, "max_iter", minimum=1)

    def loss_and_grad(
        self, params: np.ndarray, x: np.ndarray, onehot: np.ndarray
    ) -> tuple[float, np.ndarray]:
        """The penalised mean negative log-likelihood and its gradient (flat W then b)."""
        n, d = x.shape
        c = onehot.shape[1]
        w = params[: d * c].reshape(d, c)
        b = params[d * c :]
        logits = np.einsum("nd,dc->nc", x, w) + b  # einsum: no BLAS threads for a tiny product
        logp = logits - logsumexp(logits, axis=1, keepdims=True)
        loss = -np.sum(onehot * logp) / n + 0.5 * self.l2 * np.sum(w * w)
        g = (np.exp(logp) - onehot) / n
        grad_w = np.einsum("nd,nc->dc", x, g) + self.l2 * w
        return float(loss), np.concatenate([grad_w.ravel(), g.sum(axis=0)])

    def fit(self, x: object, labels: object, n_classes: int | None = None) -> LogisticRegression:
        """Fit ``coef_`` (d, c) and ``intercept_`` (c,) to ``x`` (n, ...) and int ``labels`` (n,).

        Minimises :meth:`loss_and_grad` from zero with L-BFGS-B (``max_iter`` iterations at most);
        c = ``n_classes``, default max(labels) + 1. Returns self.
        """
        x = flatten(x)
        y = np.asarray(labels)
        if y.shape != (x.shape[0],) or y.dtype.kind not in "iu":
            raise ValueError(
                f"labels must be integers of shape ({x.shape[0]},), got {y.dtype} {y.shape}"
            )
        self.n_classes = int(y.max()) + 1 if n_classes is None else int(n_classes)
        onehot = np.eye(self.n_classes)[y]
        d = x.shape[1]
        res = minimize(
            self.loss_and_grad,
            np.zeros(d * self.n_classes + self.n_classes),
            args=(x, onehot),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": self.max_iter},
        )
        self.coef_ = res.x[: d * self.n_classes].reshape(d, self.n_classes)
        self.intercept_ = res.x[d * self.n_classes :]
        return self

    def predict_proba(self, x: object) -> np.ndarray:
        """Class probabilities, shape (n, n_classes)."""
        logits = flatten(x) @ self.coef_ + self.intercept_
        return np.exp(logits - logsumexp(logits, axis=1, keepdims=True))

    def predict(self, x: object) -> np.ndarray:
        """The most probable class of each example, int64, shape (n,)."""
        return np.argmax(flatten(x) @ self.coef_ + self.intercept_, axis=1)
