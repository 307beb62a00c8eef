r"""The NumPy kernels: the specification that the Numba CPU and CUDA kernels reproduce.

Two layers, as in improved-diffusion:

1. **Per-row coefficients** (``*_coefficients``): each schedule array (float64) is gathered at
   the row's timestep and cast to the array dtype (improved-diffusion's
   ``_extract_into_tensor``: ``th.from_numpy(arr)[t].float()``); anything computed from the
   gathered values (``exp(½ log σ²)``, the DDIM σ) is computed in that dtype, once per row,
   here, for every backend. So the backends share these vectors exactly.
2. **Element-wise kernels** (``q_sample``, ``ddpm_step``, ``ddim_step``): the fused
   arithmetic on ``(B, D)`` arrays with per-row coefficients of shape ``(B,)``. The CPU and
   CUDA kernels evaluate the same expressions in the same order, so with fastmath off they
   are bitwise equal to these.

Noise ``z`` is either an array, or the counter-based normals of :mod:`npddpm.rng` for
``(seed, stream)`` at the flat C-order element index ``i = b·D + j``.
"""

from __future__ import annotations

import numpy as np

from .. import rng

__all__ = [
    "ddim_coefficients",
    "ddim_step",
    "ddpm_coefficients",
    "ddpm_step",
    "gather",
    "langevin_step",
    "q_sample",
    "q_sample_coefficients",
    "run",
    "standard_normal",
]


# --------------------------------------------------------------------------------------
# Per-row coefficients
# --------------------------------------------------------------------------------------


def gather(arr: np.ndarray, t: np.ndarray, dtype) -> np.ndarray:
    """``arr[t]`` cast to ``dtype``: shape (B,) (improved-diffusion ``_extract_into_tensor``)."""
    return np.asarray(arr, np.float64)[t].astype(dtype)


def q_sample_coefficients(schedule, t: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """``(√ᾱ_t, √(1 − ᾱ_t))`` per row, in ``dtype``."""
    return (
        gather(schedule.sqrt_alphas_cumprod, t, dtype),
        gather(schedule.sqrt_one_minus_alphas_cumprod, t, dtype),
    )


def ddpm_coefficients(schedule, t: np.ndarray, log_variance: np.ndarray, dtype):
    r"""``(√(1/ᾱ), √(1/ᾱ − 1), coef1, coef2, s)`` per row, in ``dtype``.

    ``s = [t ≠ 0]·exp(½·log_variance[t])`` (improved-diffusion ``p_sample``:
    ``nonzero_mask * th.exp(0.5 * out["log_variance"])``), evaluated in ``dtype``.
    """
    dt = np.dtype(dtype)
    mask = (t != 0).astype(dt)
    return (
        gather(schedule.sqrt_recip_alphas_cumprod, t, dt),
        gather(schedule.sqrt_recipm1_alphas_cumprod, t, dt),
        gather(schedule.posterior_mean_coef1, t, dt),
        gather(schedule.posterior_mean_coef2, t, dt),
        mask * np.exp(dt.type(0.5) * gather(log_variance, t, dt)),
    )


def ddim_coefficients(schedule, t: np.ndarray, eta: float, dtype):
    r"""``(√(1/ᾱ), √(1/ᾱ − 1), √ᾱ_prev, √(1 − ᾱ_prev − σ²), [t ≠ 0]·σ)`` per row, in ``dtype``.

    .. math:: \sigma = \eta \sqrt{(1 - \bar\alpha_{prev})/(1 - \bar\alpha)}
              \sqrt{1 - \bar\alpha/\bar\alpha_{prev}}

    (Song et al. 2021, Eq. 16; improved-diffusion ``ddim_sample``), evaluated in ``dtype``
    from the gathered ᾱ and ᾱ_prev.
    """
    dt = np.dtype(dtype)
    one = dt.type(1.0)
    ab = gather(schedule.alphas_cumprod, t, dt)
    ab_prev = gather(schedule.alphas_cumprod_prev, t, dt)
    sigma = dt.type(eta) * np.sqrt((one - ab_prev) / (one - ab)) * np.sqrt(one - ab / ab_prev)
    mask = (t != 0).astype(dt)
    return (
        gather(schedule.sqrt_recip_alphas_cumprod, t, dt),
        gather(schedule.sqrt_recipm1_alphas_cumprod, t, dt),
        np.sqrt(ab_prev),
        np.sqrt(one - ab_prev - sigma**2),
        mask * sigma,
    )


# --------------------------------------------------------------------------------------
# Element-wise kernels on (B, D) arrays
# --------------------------------------------------------------------------------------


def standard_normal(seed: int, stream: int, shape: tuple[int, ...], dtype) -> np.ndarray:
    """The in-kernel noise: :func:`npddpm.rng.standard_normal` over the flat index."""
    return rng.standard_normal(seed, stream, shape, dtype)


def run(name, arrays, coefs, extra, noise, seed, stream, out):
    """Backend entry point (see :mod:`.dispatch`): ``(B, D)`` arrays, noise or a seed."""
    x = arrays[0]
    z = noise if noise is not None else standard_normal(seed, stream, x.shape, x.dtype)
    res = np.empty(x.shape, x.dtype) if out is None else out
    _KERNELS[name](*arrays, z, *coefs, *extra, res)
    return res


def _col(v: np.ndarray) -> np.ndarray:
    return v[:, None]


def q_sample(x0, z, a, b, out) -> None:
    r"""``out = a·x₀ + b·z`` row-wise (Ho et al. 2020, Eq. 4):
    :math:`x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon`."""
    out[...] = _col(a) * x0 + _col(b) * z


def _x0_hat(x, eps, c_recip, c_recipm1, clip: bool):
    x0 = _col(c_recip) * x - _col(c_recipm1) * eps
    if clip:
        x0 = np.clip(x0, -1, 1)
    return x0


def ddpm_step(x, eps, z, c_recip, c_recipm1, c1, c2, s, clip: bool, out) -> None:
    r"""One ancestral DDPM step for an ε-model (Ho et al. 2020, Algorithm 2, via Eq. 7).

    .. math::
        \hat x_0 = \sqrt{1/\bar\alpha_t}\,x_t - \sqrt{1/\bar\alpha_t - 1}\,\epsilon, \quad
        x_{t-1} = c_1 \hat x_0 + c_2 x_t + s\,z

    with ``x̂₀`` optionally clipped to [−1, 1].
    """
    x0 = _x0_hat(x, eps, c_recip, c_recipm1, clip)
    out[...] = (_col(c1) * x0 + _col(c2) * x) + _col(s) * z


def ddim_step(x, eps, z, c_recip, c_recipm1, c_prev, c_dir, s, clip: bool, out) -> None:
    r"""One DDIM step (Song et al. 2021, Eq. 12), ε re-derived from the (clipped) x̂₀.

    .. math::
        \hat\epsilon = (\sqrt{1/\bar\alpha_t}\,x_t - \hat x_0) / \sqrt{1/\bar\alpha_t - 1},
        \quad x_{t-1} = \sqrt{\bar\alpha_{prev}}\,\hat x_0
        + \sqrt{1 - \bar\alpha_{prev} - \sigma^2}\,\hat\epsilon + [t \ne 0]\,\sigma z
    """
    x0 = _x0_hat(x, eps, c_recip, c_recipm1, clip)
    eps_hat = (_col(c_recip) * x - x0) / _col(c_recipm1)
    out[...] = (x0 * _col(c_prev) + _col(c_dir) * eps_hat) + _col(s) * z


def langevin_step(x, g, z, a, b, out) -> None:
    r"""One unadjusted Langevin step row-wise: ``out = (x + a·g) + b·z`` with ``a = δ/2``,
    ``b = √δ`` (the DDPM note's update x_k = x_{k−1} + (δ/2)∇log p + √δ·ε)."""
    out[...] = (x + _col(a) * g) + _col(b) * z


_KERNELS = {
    "q_sample": q_sample,
    "ddpm_step": ddpm_step,
    "ddim_step": ddim_step,
    "langevin_step": langevin_step,
}
