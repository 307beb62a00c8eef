"""Type names shared across npddpm: the option literals, the denoiser protocol, the reverse
step's record and what the losses need of a diffusion.

The tuples of allowed values (``MEAN_TYPES`` …) are derived from these literals with
:func:`typing.get_args`, so an option list and its type cannot drift apart.
:class:`DiffusionLike` lets :mod:`npddpm.losses` take a :class:`npddpm.GaussianDiffusion`
without importing :mod:`npddpm.diffusion` (which delegates its loss methods to it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple, Protocol

import numpy as np

from .parameterisation import DiffusionTables
from .profiles import Profile
from .schedules import Schedule

__all__ = [
    "Array",
    "BackendName",
    "DenoisedFn",
    "Denoiser",
    "DiffusionLike",
    "LossType",
    "MeanType",
    "ReverseStep",
    "VarType",
]

Array = np.ndarray

#: What the model's mean channels predict: ε, x₀, v or the posterior mean of x_{t−1}.
MeanType = Literal["eps", "x0", "v", "x_prev"]
#: β̃, β, learned log-variance (or variance), learned interpolation (Nichol & Dhariwal 2021).
VarType = Literal["fixed_small", "fixed_large", "learned", "learned_range"]
#: improved-diffusion's loss types; ``rescaled_mse`` with a learned variance is the hybrid loss.
LossType = Literal["mse", "rescaled_mse", "kl", "rescaled_kl"]
#: The kernel backends' names: the NumPy reference, Numba CPU, Numba CUDA (what
#: ``npddpm.kernels.BACKENDS`` lists; ``npddpm.kernels.contract.Backend`` is the module protocol).
BackendName = Literal["numpy", "cpu", "cuda"]

#: ``denoised_fn(x̂₀) -> x̂₀``, applied before clipping (e.g. dynamic thresholding).
DenoisedFn = Callable[[np.ndarray], np.ndarray]


class Denoiser(Protocol):
    """Any ``denoiser(x_t, t) -> model_output``.

    ``x_t`` has shape ``(B, ...)``; ``t`` is an int array of shape ``(B,)`` of **original**
    timesteps (``diffusion.model_timesteps(index)``), also when the diffusion is respaced.
    The output has x_t's shape, with the channel axis (axis 1) doubled for a learned variance.
    """

    def __call__(self, x_t: np.ndarray, t: np.ndarray, /) -> np.ndarray: ...


class ReverseStep(NamedTuple):
    """Everything of the model's reverse step, in the work dtype (see :meth:`reverse`).

    Attributes
    ----------
    mean, variance, log_variance, pred_xstart : ndarray (B, C, ...)
        As :meth:`GaussianDiffusion.p_mean_variance` (there cast to x_t's dtype); variance and
        log_variance may be read-only broadcast views.
    raw_xstart, mean_part, x_t : ndarray (B, C, ...)
        x̂₀ before ``denoised_fn`` and clipping; the model's mean channels; x_t.
    var_values : ndarray (B, C, ...) or None
        The model's variance channels (in model_output's dtype), None for a fixed variance.
    dtype : numpy dtype
        The work dtype (:meth:`GaussianDiffusion.work_dtype`).
    """

    mean: Array
    variance: Array
    log_variance: Array
    pred_xstart: Array
    raw_xstart: Array
    mean_part: Array
    var_values: Array | None
    x_t: Array
    dtype: np.dtype


class DiffusionLike(Protocol):
    """What :mod:`npddpm.losses` uses of a :class:`npddpm.GaussianDiffusion` (which is one)."""

    schedule: Schedule
    mean_type: str
    var_type: str
    loss_type: str
    profile: Profile
    num_timesteps: int
    tables: DiffusionTables

    def work_dtype(self, x: Array) -> np.dtype:
        """The dtype the maths runs in for ``x``: float64, or x's dtype (profile-dependent)."""

    def check_t(self, t: object, batch: int) -> Array:
        """``t`` validated as int64 indices of shape (batch,); a scalar is broadcast."""

    def split_output(self, model_output: object, x: Array) -> tuple[Array, Array | None]:
        """``(mean part, variance values or None)`` of ``model_output`` for ``x`` (B, C, ...)."""

    def model_timesteps(self, t: Array) -> Array:
        """The original timesteps of indices ``t`` (B,)."""

    def q_sample(self, x0: Array, t: Array, noise: Array | None = None) -> Array:
        """x_t = √ᾱ_t·x0 + √(1 − ᾱ_t)·noise, shape of ``x0`` (B, ...)."""

    def posterior_mean(self, x0: Array, x_t: Array, t: Array, dtype: np.dtype) -> Array:
        """coef1·x₀ + coef2·x_t, the mean of q(x_{t−1} | x_t, x₀), in ``dtype``, (B, C, ...)."""

    def predict_v(self, x0: Array, t: Array, eps: Array) -> Array:
        """v = √ᾱ_t·ε − √(1 − ᾱ_t)·x₀, shape of ``x0`` (B, ...)."""

    def predict_eps_from_xstart(self, x_t: Array, t: Array, pred_xstart: Array) -> Array:
        """ε̂ from x̂₀: (√(1/ᾱ_t)·x_t − x̂₀)/√(1/ᾱ_t − 1), shape of ``x_t`` (B, ...)."""

    def reverse(
        self,
        model_output: Array,
        x_t: Array,
        t: Array,
        *,
        clip_denoised: bool = True,
        denoised_fn: DenoisedFn | None = None,
    ) -> ReverseStep:
        """The model's reverse step from ``x_t`` (B, C, ...) at indices ``t`` (B,)."""
