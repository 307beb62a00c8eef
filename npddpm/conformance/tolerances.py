r"""The tolerances of a conformance comparison, scaled by each quantity's conditioning.

Every tolerance is ``k·eps`` times a first-order bound on how much the rounding of an
implementation working in precision ``eps`` can move the quantity:

* **step terms** (the step mean, x̂₀, a q_sample): the coefficients divided by 1 − ᾱ_t inherit
  its cancellation at small t (relative error eps/(1 − ᾱ_t)) and x̂₀ amplifies x_t's rounding
  by √(1/ᾱ_t), so ``atol = k·eps·(1 + 1/(1 − ᾱ_t) + √(1/ᾱ_t))·(Σ|a| + 1)`` over the arrays the
  quantity is built from;
* **the noise term** σ_t·z of a step, measured as the difference of two calls that differ
  only in z: σ² is a product of β_t = 1 − ᾱ_t/ᾱ_prev and (1 − ᾱ_prev)/(1 − ᾱ_t); each
  factor 1 − a, formed from a table value a rounded to the unit roundoff u = eps/2, has
  relative error u/(1 − a), and the square root halves it, so σ's relative error is at most
  ``c_σ·eps`` with ``c_σ = 1 + ¼(1/β_t + 1/(1 − ᾱ_t) + 1/(1 − ᾱ_prev))``; then come the
  rounding of each product σ·z and of the two outputs themselves:
  ``atol = k·eps·(c_σ·σ·|Δz| + σ·(|z_a| + |z_b|) + |x_a| + |x_b|)``;
* **the ᾱ table**: a cumulative product of t + 1 rounded factors plus the cast of β,
  ``rtol = 4·(t + 2)·eps``.

``k`` is a safety multiplier over these first-order bounds: 16 for float32 (and lower)
implementations, 64 for float64 (whose absolute errors are far below every fault's size, so
the larger multiplier costs no sensitivity). With these scales a step's noise term is
resolved to about 2 % of σ at t = 1 of the linear schedule in float32 (c_σ ≈ 1.2·10⁴), so
"no noise at t = 1" sits at ≈ 45× the tolerance and "noise at t = 0" (σ = √β̃₁ ≈ 0.0074) at
≈ 10³×. The tolerance of the noise term under a diagnosis is recomputed with the σ that
diagnosis predicts (never a wider one).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["default_k", "machine_eps", "noise_tolerance", "step_tolerance", "table_tolerance"]

Array = np.ndarray


def machine_eps(dtype: Any) -> float:
    """The machine epsilon of ``dtype`` (a NumPy float dtype or its name; bfloat16 as 2⁻⁷)."""
    if str(dtype) == "bfloat16":
        return 2.0**-7
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"dtype must be a floating dtype, got {dt}")
    return float(np.finfo(dt).eps)


def default_k(dtype: Any) -> float:
    """The safety multiplier: 64 for float64 implementations, 16 otherwise."""
    return 64.0 if machine_eps(dtype) <= np.finfo(np.float64).eps else 16.0


def step_tolerance(ab: float, *arrays: Array, dtype: Any, k: float | None = None) -> Array:
    r"""``k·eps·(1 + 1/(1 − ᾱ) + √(1/ᾱ))·(Σ|a| + 1)``, elementwise over ``arrays``.

    Parameters
    ----------
    ab : float
        ᾱ_t of the step (or of the q_sample).
    *arrays : ndarray
        The inputs the quantity is built from (broadcast together).
    dtype
        The implementation's working precision.
    k : float, optional
        Safety multiplier (default :func:`default_k`).
    """
    k = default_k(dtype) if k is None else k
    cond = 1.0 + 1.0 / max(1.0 - ab, 1e-300) + np.sqrt(1.0 / max(ab, 1e-300))
    mag = sum((np.abs(a) for a in arrays), np.zeros(())) + 1.0
    return k * machine_eps(dtype) * cond * mag


def noise_tolerance(
    ab: float,
    ab_prev: float,
    sigma: float,
    z_a: Array,
    z_b: Array,
    x_a: Array,
    x_b: Array,
    *,
    dtype: Any,
    k: float | None = None,
) -> Array:
    r"""``k·eps·(c_σ·σ·|z_a − z_b| + σ·(|z_a| + |z_b|) + |x_a| + |x_b|)`` for the noise term
    ``x_a − x_b = σ·(z_a − z_b)`` of two calls of one step (see the module docstring).

    The first term is σ's own rounding; the second the rounding of each product σ·z (it
    dominates where z_a ≈ z_b); the third the rounding of the two outputs.

    Parameters
    ----------
    ab, ab_prev : float
        ᾱ_t and ᾱ of the step's target (1 at the last step).
    sigma : float
        The reference σ of the step.
    z_a, z_b : ndarray
        The two noises.
    x_a, x_b : ndarray
        The two outputs whose difference is compared.
    """
    k = default_k(dtype) if k is None else k
    beta = 1.0 - ab / ab_prev if ab_prev > 0 else 1.0
    inv = [1.0 / max(v, 1e-300) for v in (beta, 1.0 - ab, 1.0 - ab_prev) if v > 0]
    c_sigma = 1.0 + 0.25 * sum(inv)
    s = abs(sigma)
    mag = s * (np.abs(z_a) + np.abs(z_b)) + np.abs(x_a) + np.abs(x_b)
    return k * machine_eps(dtype) * (c_sigma * s * np.abs(z_a - z_b) + mag)


def table_tolerance(t: Array, dtype: Any) -> Array:
    """The relative tolerance ``4·(t + 2)·eps`` of ᾱ_t computed as a cumulative product."""
    return 4.0 * (np.asarray(t, dtype=np.float64) + 2.0) * machine_eps(dtype)
