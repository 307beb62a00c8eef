r"""A reverse process that knows its data lie on a grid (quantised images).

For data on ``L`` equally spaced levels (the 17 grey levels of ``digits``, 256 for 8-bit
images), the exact likelihood of a noisy pixel under each level is known in closed form,

.. math:: q(x_t \mid x_0 = g)
          = \mathcal N\bigl(x_t;\ \sqrt{\bar\alpha_t}\,g,\ (1-\bar\alpha_t)\bigr),

and when the noise is small against the level spacing it pins the level down far better than
a network can (an ε-network must resolve the quantisation residual divided by
:math:`\sqrt{1-\bar\alpha_t}`). :func:`grid_posterior_mean` combines the two per pixel: with
the network's :math:`\hat x_0` as a Gaussian prior of width ``tau`` restricted to the grid,

.. math::
    w_g \propto \exp\Bigl(-\frac{(x_t - \sqrt{\bar\alpha_t}\,g)^2}{2(1-\bar\alpha_t)}
                          -\frac{(g - \hat x_0)^2}{2\tau^2}\Bigr), \qquad
    \tilde x_0 = \sum_g w_g\, g .

:func:`grid_denoiser` wraps a denoiser so that its mean output is re-derived from
:math:`\tilde x_0` (ε, x₀ or v parameterisation; learned-variance channels pass through). The
result is a different reverse process :math:`p_\theta(x_{t-1} \mid x_t)` — a deterministic
function of :math:`x_t`, :math:`t` and the network — so sampling with it and the variational
bound computed with it (:func:`npddpm.losses.calc_bpd_loop`) are exact for *that* model. It is
not a reference implementation's computation: improved-diffusion and diffusers use
:math:`\hat x_0` as it is. At small ``t`` :math:`\tilde x_0` is the nearest level to
:math:`x_t / \sqrt{\bar\alpha_t}`; at large ``t`` it is :math:`\hat x_0` pulled towards the grid
by at most ``tau``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import as_int
from .diffusion import GaussianDiffusion
from .typing import Denoiser

__all__ = ["GridDenoiser", "grid_denoiser", "grid_posterior_mean"]


def _levels(levels: int, low: float, high: float) -> np.ndarray:
    levels = as_int(levels, "levels", minimum=2)
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"need finite low < high, got low={low}, high={high}")
    return np.linspace(low, high, levels)


def grid_posterior_mean(
    x_t: np.ndarray,
    alpha_bar: np.ndarray,
    x0_hat: np.ndarray,
    *,
    levels: int,
    low: float = -1.0,
    high: float = 1.0,
    tau: float = 0.1,
) -> np.ndarray:
    r"""Per-element :math:`\tilde x_0 = \sum_g w_g g` (see the module docstring), float64.

    Parameters
    ----------
    x_t, x0_hat : ndarray, shape (N, ...)
        Noisy input and the network's :math:`\hat x_0` (same shape).
    alpha_bar : ndarray, shape (N,)
        :math:`\bar\alpha_t` of each row, in (0, 1).
    levels, low, high : the grid ``linspace(low, high, levels)``.
    tau : float
        Width of the Gaussian prior around :math:`\hat x_0`; ``inf`` uses the likelihood alone.

    Returns
    -------
    ndarray, shape of ``x_t``, float64, in ``[low, high]``.
    """
    grid = _levels(levels, low, high)
    if not tau > 0:
        raise ValueError(f"tau must be > 0 (or inf), got {tau}")
    x = np.asarray(x_t, dtype=np.float64)
    x0 = np.asarray(x0_hat, dtype=np.float64)
    if x0.shape != x.shape:
        raise ValueError(f"x0_hat has shape {x0.shape}, x_t has {x.shape}")
    a = np.asarray(alpha_bar, dtype=np.float64)
    if a.shape != x.shape[:1] or not np.all((a > 0) & (a < 1)):
        raise ValueError(f"alpha_bar must have shape {x.shape[:1]} with values in (0, 1)")
    a = a.reshape((-1,) + (1,) * (x.ndim - 1))
    logw = -((x[..., None] - np.sqrt(a)[..., None] * grid) ** 2) / (2 * (1 - a))[..., None]
    if np.isfinite(tau):
        logw = logw - (grid - x0[..., None]) ** 2 / (2 * tau * tau)
    logw -= logw.max(axis=-1, keepdims=True)
    w = np.exp(logw)
    return (w @ grid) / w.sum(axis=-1)


def grid_denoiser(
    diffusion: GaussianDiffusion,
    denoiser: Denoiser,
    *,
    levels: int,
    low: float = -1.0,
    high: float = 1.0,
    tau: float = 0.1,
) -> Denoiser:
    r"""Wrap ``denoiser(x_t, t)`` so that its mean output comes from :func:`grid_posterior_mean`.

    ``t`` are the timesteps the denoiser sees (the original ones, ``timestep_map[t]``, for a
    respaced diffusion). The network's :math:`\hat x_0` is read from its output in the
    diffusion's ``mean_type`` (clipped to ``[low, high]``), replaced by :math:`\tilde x_0`, and
    converted back: ε' = (x_t − √ᾱ x̃₀)/√(1 − ᾱ); x₀' = x̃₀; v' = √ᾱ ε' − √(1 − ᾱ) x̃₀.
    ``mean_type="x_prev"`` is not supported. Learned-variance channels are returned as they are.
    The output has the dtype of the wrapped denoiser's output.
    """
    if not isinstance(diffusion, GaussianDiffusion):
        raise TypeError("diffusion must be a GaussianDiffusion")
    if diffusion.mean_type == "x_prev":
        raise ValueError("grid_denoiser needs mean_type 'eps', 'x0' or 'v', not 'x_prev'")
    _levels(levels, low, high)
    return GridDenoiser(diffusion, denoiser, levels, low, high, tau)


class GridDenoiser:
    """The denoiser :func:`grid_denoiser` returns: a module-level class, so that it pickles by
    value (its diffusion, the wrapped denoiser and the grid) and can be sent to Dask workers
    (:mod:`npddpm.distributed`) when the wrapped denoiser can."""

    def __init__(self, diffusion: GaussianDiffusion, denoiser: Denoiser, levels: int,
                 low: float, high: float, tau: float) -> None:  # fmt: skip
        self.diffusion, self.denoiser = diffusion, denoiser
        self.levels, self.low, self.high, self.tau = levels, low, high, tau

    def __call__(self, x_t: Any, t: Any) -> np.ndarray:
        sched, mean_type = self.diffusion.schedule, self.diffusion.mean_type
        out = np.asarray(self.denoiser(x_t, t))
        x = np.asarray(x_t, dtype=np.float64)
        c = x.shape[1]
        if out.shape[1] not in (c, 2 * c):
            raise ValueError(f"denoiser output has {out.shape[1]} channels for {c} input ones")
        a = sched.alphas_cumprod[sched.index_of(t)]
        ar = a.reshape((-1,) + (1,) * (x.ndim - 1))
        sa, s1 = np.sqrt(ar), np.sqrt(1 - ar)
        m = out[:, :c].astype(np.float64)
        if mean_type == "eps":
            x0 = (x - s1 * m) / sa
        elif mean_type == "x0":
            x0 = m
        else:  # v
            x0 = sa * x - s1 * m
        x0t = grid_posterior_mean(
            x, a, np.clip(x0, self.low, self.high), levels=self.levels, low=self.low,
            high=self.high, tau=self.tau,
        )  # fmt: skip
        eps = (x - sa * x0t) / s1
        new = {"eps": eps, "x0": x0t, "v": sa * eps - s1 * x0t}[mean_type]
        res = out.copy()
        res[:, :c] = new
        return res
