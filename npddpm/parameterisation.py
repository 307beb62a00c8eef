r"""The model's parameterisations: of the mean (conversions between ε, x₀, v, x_{t−1} and
the score) and of the variance (the fixed β̃/β tables, learned log-variance, learned range).

Free functions of a :class:`~npddpm.schedules.Schedule`, the indices ``t`` (shape ``(B,)``)
and arrays of shape ``(B, ...)`` already in the work dtype ``dtype``; they do not validate
(:class:`~npddpm.diffusion.GaussianDiffusion`'s ``predict_*`` methods validate, pick the work
dtype and the profile's form, and call these). Every coefficient is gathered from the float64
schedule with :func:`gather` and cast to ``dtype`` before it multiplies.

With ``a = √ᾱ_t`` and ``σ = √(1 − ᾱ_t)``: ``x_t = a·x₀ + σ·ε`` (Ho et al. 2020, Eq. 4),
``v = a·ε − σ·x₀`` (Salimans & Ho 2022, §4), score ``= −ε/σ`` (Song et al. 2021, Eq. 8).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .profiles import Profile
from .schedules import Schedule

__all__ = [
    "DiffusionTables",
    "dxstart_dmean_part",
    "eps_from_score",
    "eps_from_v",
    "eps_from_xstart",
    "gather",
    "model_variance",
    "score_from_eps",
    "v_from_xstart_eps",
    "xstart_from_eps",
    "xstart_from_output",
    "xstart_from_v",
    "xstart_from_xprev",
]

Array = np.ndarray


def gather(arr: Array, t: Array, ndim: int, dtype: np.dtype) -> Array:
    """``arr[t]`` cast to ``dtype`` and shaped ``(B, 1, …, 1)`` to broadcast over x.

    The one gather-and-broadcast helper (improved-diffusion's ``_extract_into_tensor``).

    Parameters
    ----------
    arr : ndarray (T,)
        A per-timestep table (float64).
    t : ndarray of int (B,)
        Indices into ``arr``.
    ndim : int
        The number of axes of the array the result multiplies.
    dtype : numpy dtype
        The work dtype; the gathered float64 values are cast to it.

    Returns
    -------
    ndarray (B, 1, …, 1) with ``ndim`` axes
    """
    return _rows(arr[t], ndim, dtype)


def _rows(values: Array, ndim: int, dtype: np.dtype) -> Array:
    return values.astype(dtype).reshape((-1,) + (1,) * (ndim - 1))


def xstart_from_eps(
    s: Schedule, x_t: Array, t: Array, eps: Array, dtype: np.dtype, *, form: str = "recip"
) -> Array:
    r"""x̂₀ from ε, shape of x_t: ``√(1/ᾱ)·x_t − √(1/ᾱ − 1)·ε`` (``form="recip"``,
    improved-diffusion) or ``(x_t − √(1 − ᾱ)·ε)/√ᾱ`` (``"divide"``, diffusers).

    At zero terminal SNR (ᾱ = 0) the recip form is ∞ − ∞; there its limit, the divide form
    ((x_t − ε)/0 = ±∞, clipped to ±1 downstream), is used.
    """
    n = x_t.ndim

    def divide() -> Array:
        return (x_t - gather(s.sqrt_one_minus_alphas_cumprod, t, n, dtype) * eps) / (
            gather(s.sqrt_alphas_cumprod, t, n, dtype)
        )

    if form == "divide":
        return divide()
    recip = (
        gather(s.sqrt_recip_alphas_cumprod, t, n, dtype) * x_t
        - gather(s.sqrt_recipm1_alphas_cumprod, t, n, dtype) * eps
    )
    if np.any(s.alphas_cumprod[t] == 0):
        zero = (s.alphas_cumprod[t] == 0).reshape((-1,) + (1,) * (n - 1))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(zero, divide(), recip)
    return recip


def eps_from_xstart(
    s: Schedule, x_t: Array, t: Array, x0: Array, dtype: np.dtype, *, form: str = "recip"
) -> Array:
    r"""ε̂ from x̂₀, shape of x_t: ``(√(1/ᾱ)·x_t − x̂₀)/√(1/ᾱ − 1)`` (``"recip"``) or
    ``(x_t − √ᾱ·x̂₀)/√(1 − ᾱ)`` (``"divide"``).

    At zero terminal SNR (ᾱ = 0) the recip form is ∞/∞; there its limit, the divide form
    (= x_t), is used.
    """
    n = x_t.ndim

    def divide() -> Array:
        return (x_t - gather(s.sqrt_alphas_cumprod, t, n, dtype) * x0) / (
            gather(s.sqrt_one_minus_alphas_cumprod, t, n, dtype)
        )

    def recip() -> Array:
        return (gather(s.sqrt_recip_alphas_cumprod, t, n, dtype) * x_t - x0) / (
            gather(s.sqrt_recipm1_alphas_cumprod, t, n, dtype)
        )

    if form == "divide":
        return divide()
    if np.any(s.alphas_cumprod[t] == 0):
        zero = (s.alphas_cumprod[t] == 0).reshape((-1,) + (1,) * (n - 1))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(zero, divide(), recip())
    return recip()


def xstart_from_xprev(s: Schedule, x_t: Array, t: Array, xprev: Array, dtype: np.dtype) -> Array:
    r"""x̂₀ from the posterior mean (Ho et al. 2020, Eq. 7 solved for x₀):
    ``x_{t−1}/coef1 − (coef2/coef1)·x_t``, shape of x_t."""
    n, c1 = x_t.ndim, s.posterior_mean_coef1[t]
    return _rows(1.0 / c1, n, dtype) * xprev - _rows(s.posterior_mean_coef2[t] / c1, n, dtype) * x_t


def v_from_xstart_eps(s: Schedule, x0: Array, t: Array, eps: Array, dtype: np.dtype) -> Array:
    r"""v = √ᾱ·ε − √(1 − ᾱ)·x₀ (Salimans & Ho 2022, §4), shape of x0."""
    n = x0.ndim
    return (
        gather(s.sqrt_alphas_cumprod, t, n, dtype) * eps
        - gather(s.sqrt_one_minus_alphas_cumprod, t, n, dtype) * x0
    )


def xstart_from_v(s: Schedule, x_t: Array, t: Array, v: Array, dtype: np.dtype) -> Array:
    r"""x̂₀ = √ᾱ·x_t − √(1 − ᾱ)·v, shape of x_t."""
    n = x_t.ndim
    return (
        gather(s.sqrt_alphas_cumprod, t, n, dtype) * x_t
        - gather(s.sqrt_one_minus_alphas_cumprod, t, n, dtype) * v
    )


def eps_from_v(s: Schedule, x_t: Array, t: Array, v: Array, dtype: np.dtype) -> Array:
    r"""ε̂ = √ᾱ·v + √(1 − ᾱ)·x_t, shape of x_t."""
    n = x_t.ndim
    return (
        gather(s.sqrt_alphas_cumprod, t, n, dtype) * v
        + gather(s.sqrt_one_minus_alphas_cumprod, t, n, dtype) * x_t
    )


def score_from_eps(s: Schedule, eps: Array, t: Array, dtype: np.dtype) -> Array:
    r"""∇ log q(x_t) = −ε̂ / √(1 − ᾱ_t) (Song et al. 2021, Eq. 8 with σ² = 1 − ᾱ)."""
    return -eps / gather(s.sqrt_one_minus_alphas_cumprod, t, eps.ndim, dtype)


def eps_from_score(s: Schedule, score: Array, t: Array, dtype: np.dtype) -> Array:
    r"""ε̂ = −√(1 − ᾱ_t)·score."""
    return -gather(s.sqrt_one_minus_alphas_cumprod, t, score.ndim, dtype) * score


def xstart_from_output(
    s: Schedule,
    mean_type: str,
    x_t: Array,
    t: Array,
    mean_part: Array,
    dtype: np.dtype,
    *,
    form: str = "recip",
) -> Array:
    """x̂₀ (unclipped) from the model's mean channels in parameterisation ``mean_type``
    (``"eps"``, ``"x0"``, ``"v"`` or ``"x_prev"``); ``form`` as :func:`xstart_from_eps`."""
    if mean_type == "eps":
        return xstart_from_eps(s, x_t, t, mean_part, dtype, form=form)
    if mean_type == "x0":
        return mean_part
    if mean_type == "v":
        return xstart_from_v(s, x_t, t, mean_part, dtype)
    return xstart_from_xprev(s, x_t, t, mean_part, dtype)


def dxstart_dmean_part(
    s: Schedule, mean_type: str, t: Array, ndim: int, dtype: np.dtype, *, form: str = "recip"
) -> Array | float:
    r"""∂x̂₀/∂(mean channels) for ``mean_type`` ``"eps"``, ``"x0"`` or ``"v"``, shape
    ``(B, 1, …, 1)`` (or the scalar 1 for x₀): −√(1/ᾱ − 1) (``"recip"``), −√(1 − ᾱ)/√ᾱ
    (``"divide"``), −√(1 − ᾱ) for v."""
    if mean_type == "x0":
        return 1.0
    if mean_type == "v":
        return -gather(s.sqrt_one_minus_alphas_cumprod, t, ndim, dtype)
    if form == "divide":
        return -(
            gather(s.sqrt_one_minus_alphas_cumprod, t, ndim, dtype)
            / gather(s.sqrt_alphas_cumprod, t, ndim, dtype)
        )
    return -gather(s.sqrt_recipm1_alphas_cumprod, t, ndim, dtype)


# ------------------------------------------------------------------ the variance


class DiffusionTables(NamedTuple):
    """The per-timestep tables of a :class:`GaussianDiffusion`, each float64 (T,), read-only.

    Attributes
    ----------
    small_var, small_logvar : ndarray (T,)
        β̃_t and its log, with the t = 0 entry as the profile's ``t0_log_variance`` says
        (``fixed_small``; also the lower end of ``learned_range`` and the true posterior's
        log-variance).
    large_var, large_logvar : ndarray (T,)
        β_t and its log, with the t = 0 entry as the profile's ``fixed_large_t0`` says
        (``fixed_large``).
    log_betas : ndarray (T,)
        log β_t, the upper end of ``learned_range`` (Nichol & Dhariwal 2021, Eq. 15).
    ddim_sigma_factor : ndarray (T,)
        σ_t(η)/η = √((1 − ᾱ_prev)/(1 − ᾱ))·√(1 − ᾱ/ᾱ_prev) (Song et al. 2021, Eq. 16).
    one_minus_ab_prev : ndarray (T,)
        1 − ᾱ_prev (from the ``high``-precision 1 − ᾱ when the schedule has it).
    """

    small_var: Array
    small_logvar: Array
    large_var: Array
    large_logvar: Array
    log_betas: Array
    ddim_sigma_factor: Array
    one_minus_ab_prev: Array

    @classmethod
    def build(cls, s: Schedule, p: Profile) -> DiffusionTables:
        """The tables of schedule ``s`` under profile ``p``."""
        pv = s.posterior_variance
        pv1 = pv[1] if s.num_timesteps > 1 else np.exp(s.posterior_log_variance_clipped[0])
        if p.t0_log_variance == "floor":
            small_var = np.maximum(pv, 1e-20)
            small_logvar = np.log(small_var)
        else:
            small_var = pv.copy()
            small_logvar = s.posterior_log_variance_clipped.copy()
        large_var_ff = np.append(pv1, s.betas[1:])
        if p.fixed_large_t0 == "posterior_variance_1":
            large_var, large_logvar = large_var_ff, np.log(large_var_ff)
        elif p.fixed_large_t0 == "tf":
            large_var, large_logvar = s.betas.copy(), np.log(large_var_ff)
        else:
            large_var, large_logvar = s.betas.copy(), np.log(s.betas)
        with np.errstate(divide="ignore", invalid="ignore"):
            if s.precision == "high":  # 1 − ᾱ/ᾱ_prev is the chain's β exactly
                om_prev = np.append(0.0, s.one_minus_alphas_cumprod[:-1])
                ddim_factor = np.sqrt(om_prev / s.one_minus_alphas_cumprod * s.betas)
            else:  # improved-diffusion's expression, per timestep, in float64
                om_prev = 1 - s.alphas_cumprod_prev
                ddim_factor = np.sqrt(om_prev / s.one_minus_alphas_cumprod) * np.sqrt(
                    1 - s.alphas_cumprod / s.alphas_cumprod_prev
                )
        tables = cls(
            small_var, small_logvar, large_var, large_logvar, np.log(s.betas), ddim_factor, om_prev
        )
        for v in tables:
            v.setflags(write=False)
        return tables


def model_variance(
    tables: DiffusionTables,
    var_type: str,
    learned_output: str,
    var_values: Array | None,
    t: Array,
    shape: tuple[int, ...],
    dtype: np.dtype,
) -> tuple[Array, Array]:
    r"""The model's reverse variance and log-variance, each of ``shape`` (B, C, ...).

    ``fixed_small``: β̃_t; ``fixed_large``: β_t (read-only broadcast views of ``tables``);
    ``learned``: the variance channels ``var_values`` as log-variance (or as variance under
    ``learned_output="variance"``); ``learned_range``: ``exp(f log β + (1 − f) log β̃)`` with
    f = (v + 1)/2 (Nichol & Dhariwal 2021, Eq. 15).
    """
    n = len(shape)
    if var_type == "fixed_small":
        return (
            np.broadcast_to(gather(tables.small_var, t, n, dtype), shape),
            np.broadcast_to(gather(tables.small_logvar, t, n, dtype), shape),
        )
    if var_type == "fixed_large":
        return (
            np.broadcast_to(gather(tables.large_var, t, n, dtype), shape),
            np.broadcast_to(gather(tables.large_logvar, t, n, dtype), shape),
        )
    if var_values is None:
        raise ValueError(f"var_type={var_type!r} needs the model's variance channels")
    v = var_values.astype(dtype)
    if var_type == "learned":
        if learned_output == "variance":
            with np.errstate(divide="ignore", invalid="ignore"):
                return v, np.log(v)
        return np.exp(v), v
    min_log = gather(tables.small_logvar, t, n, dtype)
    max_log = gather(tables.log_betas, t, n, dtype)
    frac = (v + 1) / 2
    logv = frac * max_log + (1 - frac) * min_log
    return np.exp(logv), logv
