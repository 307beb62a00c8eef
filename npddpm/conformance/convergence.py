r"""A sampler's measured order of convergence against the exact probability-flow map.

For each step count N the sampler carries points x_T (drawn from the exact marginal at
``t_max``) to ``t_min`` with the oracle model; the error is the root-mean-square difference
from the exact flow map (:func:`npddpm.analytic.flow_map`: closed form for one Gaussian, a
reference solve with a stated error for a mixture). A global method of order p has
error ≈ C·N^{−p}, so the order is the slope of −log error against log N, fitted by least
squares.

How sure the fit is: the slope's standard error from the residuals (a straight line through
k points has k − 2 degrees of freedom) and the two-sided 95 % Student-t interval. Points whose
error is within 100× of the floor (the reference's stated error plus float64 rounding of the
samples) are left out of the fit and listed, since there the error no longer measures the
method.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from ..analytic import GaussianMixture, flow_map
from ..diffusion import GaussianDiffusion
from ..paths import as_path

__all__ = ["ConvergenceResult", "convergence_order", "fit_order"]

Array = np.ndarray


@dataclass(frozen=True)
class ConvergenceResult:
    """The measured order of one sampler configuration.

    Attributes
    ----------
    name : str
        The sampler and its options.
    steps, errors : tuple
        Every N tried and its RMS error against the exact flow map.
    used : tuple of bool
        Which points entered the fit (False: within 100× of the floor).
    order : float
        The fitted order p (NaN with fewer than 2 points above the floor).
    stderr : float
        Its standard error (NaN with fewer than 3 points).
    interval : (float, float)
        The two-sided 95 % t-interval of the order.
    floor : float
        The error floor: the reference's stated error plus rounding.
    nfe : tuple of int
        Model evaluations per run, for each N.
    """

    name: str
    steps: tuple[int, ...]
    errors: tuple[float, ...]
    used: tuple[bool, ...]
    order: float
    stderr: float
    interval: tuple[float, float]
    floor: float
    nfe: tuple[int, ...] = field(default=())

    def agrees(self, claimed: float, margin: float) -> bool:
        """Whether |order − claimed| ≤ margin."""
        return bool(abs(self.order - claimed) <= margin)

    def table(self) -> str:
        """The fit (order ± standard error, 95 % interval, floor) and one line per N: NFE,
        rms error and whether the point entered the fit."""
        lines = [f"{self.name}: order {self.order:.3f} ± {self.stderr:.3f} (95 % "
                 f"[{self.interval[0]:.3f}, {self.interval[1]:.3f}]), floor {self.floor:.1e}",
                 f"  {'N':>5} {'NFE':>5} {'rms error':>11}  used"]
        nfe = self.nfe or (0,) * len(self.steps)
        for n, f, e, u in zip(self.steps, nfe, self.errors, self.used, strict=True):
            lines.append(f"  {n:>5} {f:>5} {e:>11.3e}  {'yes' if u else 'no (floor)'}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def fit_order(steps: Array, errors: Array) -> tuple[float, float, tuple[float, float]]:
    """(order, standard error, 95 % t-interval) of −log error against log N (least squares)."""
    k = steps.size
    if k < 2:
        return math.nan, math.nan, (math.nan, math.nan)
    xs, ys = np.log(steps), -np.log(errors)
    A = np.stack([xs, np.ones_like(xs)], axis=1)
    coef, *_ = np.linalg.lstsq(A, ys, rcond=None)
    slope = float(coef[0])
    if k < 3:
        return slope, math.nan, (math.nan, math.nan)
    resid = ys - A @ coef
    s2 = float(resid @ resid) / (k - 2)
    se = math.sqrt(s2 / float(np.sum((xs - xs.mean()) ** 2)))
    q = float(stats.t.ppf(0.975, k - 2))
    return slope, se, (slope - q * se, slope + q * se)


def convergence_order(
    sampler: Callable[..., Any],
    diffusion_or_path: Any,
    mixture: GaussianMixture,
    *,
    steps: Sequence[int] = (8, 11, 16, 23, 32),
    prediction: str | None = None,
    t_max: float | None = None,
    t_min: float | None = None,
    n: int = 64,
    seed: int = 0,
    interpolation: str = "log_alpha",
    name: str | None = None,
    **sampler_kwargs: Any,
) -> ConvergenceResult:
    r"""Measure ``sampler``'s order against the exact flow map from ``t_max`` to ``t_min``.

    Parameters
    ----------
    sampler : callable
        An :mod:`npddpm.samplers` solver (or anything with its signature); it is called as
        ``sampler(path, oracle, x_T, steps=N, final="min", t_max=…, t_min=…,
        prediction=…, **sampler_kwargs)``.
    diffusion_or_path : GaussianDiffusion or NoisePath
        A diffusion becomes :class:`npddpm.paths.DiscreteVP` (``interpolation``), with its
        ``mean_type`` as the prediction unless ``prediction`` is given (default ``"eps"``).
    mixture : GaussianMixture
        The data; its exact model (:class:`npddpm.analytic.PathOracle`) drives the sampler.
    steps : sequence of int
        The step counts N (at least 3 for an uncertainty).
    n, seed : int
        How many points x_T ~ q(x_{t_max}) and the seed they are drawn from.

    Returns
    -------
    ConvergenceResult
    """
    path = as_path(diffusion_or_path, interpolation)
    if prediction is None:
        prediction = (
            diffusion_or_path.mean_type
            if isinstance(diffusion_or_path, GaussianDiffusion)
            else "eps"
        )
    hi = float(path.t_max if t_max is None else t_max)
    lo = float(path.t_min if t_min is None else t_min)
    rng = np.random.default_rng(seed)
    x0 = mixture.sample(n, rng)
    a, s = float(path.alpha(hi)), float(path.sigma(hi))
    x_T = a * x0 + s * rng.standard_normal(x0.shape)
    exact, ref_err = flow_map(mixture, path, x_T, hi, lo, return_error=True)
    oracle = mixture.denoiser(path, prediction=prediction)
    counted = _Counting(oracle)
    errors, nfes = [], []
    for N in steps:
        counted.calls = 0
        out = sampler(path, counted, x_T, steps=int(N), final="min", t_max=hi, t_min=lo,
                      prediction=prediction, **sampler_kwargs)
        errors.append(float(np.sqrt(np.mean((np.asarray(out) - exact) ** 2))))
        nfes.append(counted.calls)
    scale = float(np.sqrt(np.mean(exact**2)))
    floor = float(ref_err) + 1e-14 * max(scale, 1.0)
    err = np.array(errors)
    used = err > 100.0 * floor
    order, se, ci = fit_order(np.asarray(steps, dtype=np.float64)[used], err[used])
    label = name or getattr(sampler, "__name__", "sampler") + (
        "(" + ", ".join(f"{k}={v!r}" for k, v in sampler_kwargs.items()) + ")"
    )
    return ConvergenceResult(label, tuple(int(s) for s in steps), tuple(errors),
                             tuple(bool(u) for u in used), order, se, ci, floor, tuple(nfes))


class _Counting:
    """Counts the model calls of the wrapped oracle."""

    def __init__(self, fn: Callable[..., Array]) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, x: Array, t: Array) -> Array:
        self.calls += 1
        return self.fn(x, t)
