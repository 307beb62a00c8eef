r"""The exact probability-flow map, and the oracle model on any :mod:`npddpm.paths` path.

On a path x_t = α_t x₀ + σ_t ε the probability-flow ODE moves every marginal to every other.
With y = x/σ and u = e^λ = α/σ it reads (Lu et al. 2022b, Eq. 9, in the variable u)

.. math::  \frac{dy}{du} = \hat x_0(y, u), \qquad
           \hat x_0(y, u) = E[x_0 \mid u x_0 + \varepsilon = y],

which is smooth in u, including u = 0 (α = 0, pure noise: x̂₀ is the data mean).

* **One Gaussian** N(μ, Σ = U diag(λ_k) Uᵀ): the marginals are N(α μ, α²Σ + σ²I) and the flow
  map is affine, in the eigenbasis
  ``y_s = α_s μ̃ + √((α_s²λ + σ_s²)/(α_t²λ + σ_t²))·(y_t − α_t μ̃)`` — exact, any covariance,
  also to the data (σ_s = 0).
* **A mixture**: a reference solve of the ODE above (scipy's DOP853, 8th order, adaptive) with
  the exact x̂₀, run at two tolerances; the tighter solve is returned and the difference of the
  two is its stated error (``return_error=True``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.integrate import solve_ivp

from .._checks import choose
from ..paths import PREDICTIONS, NoisePath, as_path, from_x0_eps

# ``mixture`` below is a :class:`npddpm.analytic.GaussianMixture` (not imported: mixture.py
# imports this module for its ``denoiser(path)`` and ``flow_map``)
GaussianMixture = Any

__all__ = ["PathOracle", "flow_map"]

Array = np.ndarray


def _rows(x: Any, dim: int) -> tuple[Array, tuple[int, ...]]:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim < 1 or arr.size % dim or (arr.ndim >= 2 and int(np.prod(arr.shape[1:])) != dim):
        raise ValueError(f"x must have shape (B, {dim}) (the data's dimension), got {arr.shape}")
    return arr.reshape(-1, dim), np.shape(x)


class PathOracle:
    r"""The Bayes-optimal model of a :class:`GaussianMixture` on a path.

    ``oracle(x_t, t)``: ``t`` a path time, one per row or one for all (any real, not only
    integers); returns E[model output | x_t] for ``prediction`` (``"eps"``, ``"x0"``, ``"v"``
    = α ε − σ x₀, or ``"flow"`` = α′ x₀ + σ′ ε), float64 in x_t's dtype.
    """

    def __init__(self, mixture: GaussianMixture, path: NoisePath, prediction: str = "eps"):
        self.mixture, self.path = mixture, path
        self.prediction = choose(prediction, "prediction", PREDICTIONS)

    def x0(self, x_t: Array, t: Any) -> Array:
        """E[x₀ | x_t] at path time t."""
        xf, shape = _rows(x_t, self.mixture.dim)
        tt = np.broadcast_to(np.asarray(t, dtype=np.float64), (xf.shape[0],))
        x0 = self.mixture.posterior_mean_at(xf, self.path.alpha(tt), self.path.sigma(tt))
        return np.asarray(x0).reshape(shape)

    def __call__(self, x_t: Array, t: Any) -> Array:
        xf, shape = _rows(x_t, self.mixture.dim)
        tt = np.broadcast_to(np.asarray(t, dtype=np.float64), (xf.shape[0],))
        p = self.path
        a, s = p.alpha(tt)[:, None], p.sigma(tt)[:, None]
        x0 = self.mixture.posterior_mean_at(xf, a[:, 0], s[:, 0])
        eps = (xf - a * x0) / s
        out = from_x0_eps(
            self.prediction, x0, eps, a, s,
            p.dalpha(tt)[:, None] if self.prediction == "flow" else None,
            p.dsigma(tt)[:, None] if self.prediction == "flow" else None,
        )
        return np.asarray(out).reshape(shape).astype(np.asarray(x_t).dtype, copy=False)

    def __repr__(self) -> str:
        return f"PathOracle({self.mixture!r}, {self.path!r}, prediction={self.prediction!r})"


def _level(path: NoisePath, t: float | None) -> tuple[float, float]:
    if t is None:  # the data: σ = 0
        return 1.0, 0.0
    if not path.contains(np.array([t])):
        raise ValueError(f"t={t!r} lies outside the path's [{path.t_min:g}, {path.t_max:g}]")
    return float(path.alpha(t)), float(path.sigma(t))


def flow_map(
    mixture: GaussianMixture,
    diffusion_or_path: Any,
    x: Array,
    t_from: float,
    t_to: float | None,
    *,
    rtol: float = 1e-12,
    return_error: bool = False,
) -> Array | tuple[Array, float]:
    r"""Carry x (B, D) at path time ``t_from`` along the probability-flow ODE to ``t_to``.

    ``t_to=None`` means the data (σ = 0; single Gaussian only). For one Gaussian the map is
    the exact affine one (error 0 up to rounding); for a mixture it is the reference solve at
    ``rtol`` (checked against a solve at 100·rtol: ``return_error=True`` also returns the
    largest difference of the two, an upper estimate of the returned solve's error).
    """
    path = as_path(diffusion_or_path)
    xf, shape = _rows(x, mixture.dim)
    a0, s0 = _level(path, t_from)
    a1, s1 = _level(path, t_to)
    if mixture.num_components == 1:
        U, lam = mixture.eigenbasis(0)
        mu = mixture.means[0]
        y = xf - a0 * mu
        if U is not None:
            y = y @ U
        g = np.sqrt((a1 * a1 * lam + s1 * s1) / (a0 * a0 * lam + s0 * s0))
        y = g * y
        out = a1 * mu + (y if U is None else y @ U.T)
        out = out.reshape(shape)
        return (out, 0.0) if return_error else out
    if t_to is None or s0 <= 0.0 or s1 <= 0.0:
        raise ValueError(
            "the mixture reference solve needs σ > 0 at both ends (t_to=None, the data, is "
            "exact for a single Gaussian only); stop at the path's t_min"
        )
    u0, u1 = a0 / s0, a1 / s1
    B, D = xf.shape

    def rhs(u: float, yv: Array) -> Array:
        y = yv.reshape(B, D)
        return np.asarray(mixture.posterior_mean_at(y, u, 1.0)).ravel()

    y0 = (xf / s0).ravel()
    scale = max(1.0, float(np.max(np.abs(y0))), u1 * float(np.max(np.abs(mixture.means))))

    def solve(tol: float) -> Array:
        sol = solve_ivp(rhs, (u0, u1), y0, method="DOP853", rtol=tol, atol=tol * scale)
        if not sol.success:  # pragma: no cover - DOP853 on a bounded smooth field
            raise RuntimeError(f"the reference solve failed: {sol.message}")
        return np.asarray(sol.y[:, -1]).reshape(B, D) * s1

    out = solve(rtol)
    if not return_error:
        return out.reshape(shape)
    err = float(np.max(np.abs(out - solve(100.0 * rtol))))
    return out.reshape(shape), err
