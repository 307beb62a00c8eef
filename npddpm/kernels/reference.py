r"""The NumPy kernels: the specification that the Numba CPU and CUDA kernels reproduce.

Two layers, as in improved-diffusion:

1. **Per-row coefficients** (the ``*_coefs`` functions of :mod:`npddpm.kernels.dispatch`,
   named tuples of :mod:`npddpm.kernels.contract`): each schedule array (float64) is gathered
   at the row's timestep and cast to the array dtype (improved-diffusion's
   ``_extract_into_tensor``: ``th.from_numpy(arr)[t].float()``); anything computed from the
   gathered values (``exp(½ log σ²)``, the DDIM σ) is computed in that dtype, once per row,
   for every backend. So the backends share these vectors exactly.
2. **Element-wise kernels** (``q_sample``, ``ddpm_step``, ``ddim_step``): the fused
   arithmetic on ``(B, D)`` arrays with per-row coefficients of shape ``(B,)``. The CPU and
   CUDA kernels evaluate the same expressions in the same order, so with fastmath off they
   are bitwise equal to these.

Noise ``z`` is either an array, or the counter-based normals of :mod:`npddpm.rng` for
``(seed, stream)`` at the flat C-order element index ``i = b·D + j``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import rng
from .contract import DDIMCoefs, DDPMCoefs, KernelCall, LangevinCoefs, QSampleCoefs

__all__ = [
    "ddim_step",
    "ddpm_step",
    "langevin_step",
    "q_sample",
    "run",
    "standard_normal",
]


# --------------------------------------------------------------------------------------
# Element-wise kernels on (B, D) arrays
# --------------------------------------------------------------------------------------


def standard_normal(seed: int, stream: int, shape: tuple[int, ...], dtype) -> np.ndarray:
    """The in-kernel noise: :func:`npddpm.rng.standard_normal` over the flat index."""
    return rng.standard_normal(seed, stream, shape, dtype)


def run(call: KernelCall) -> np.ndarray:
    """Backend entry point (see :class:`npddpm.kernels.contract.Backend`)."""
    x = call.inputs[0]
    z = call.noise
    if z is None:
        assert call.seed is not None  # the contract: noise or a seed
        z = standard_normal(call.seed, call.stream, x.shape, x.dtype)
    res = np.empty(x.shape, x.dtype) if call.out is None else call.out
    if call.kernel in ("ddpm_step", "ddim_step"):
        _KERNELS[call.kernel](*call.inputs, z, call.coefs, call.clip, res)
    else:
        _KERNELS[call.kernel](*call.inputs, z, call.coefs, res)
    return res


def _col(v: np.ndarray) -> np.ndarray:
    return v[:, None]


def q_sample(x0, z, c: QSampleCoefs, out) -> None:
    r"""``out = a·x₀ + b·z`` row-wise (Ho et al. 2020, Eq. 4):
    :math:`x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon`."""
    out[...] = _col(c.sqrt_alphas_cumprod) * x0 + _col(c.sqrt_one_minus_alphas_cumprod) * z


def _x0_hat(x, eps, c_recip, c_recipm1, clip: bool):
    x0 = _col(c_recip) * x - _col(c_recipm1) * eps
    if clip:
        x0 = np.clip(x0, -1, 1)
    return x0


def ddpm_step(x, eps, z, c: DDPMCoefs, clip: bool, out) -> None:
    r"""One ancestral DDPM step for an ε-model (Ho et al. 2020, Algorithm 2, via Eq. 7).

    .. math::
        \hat x_0 = \sqrt{1/\bar\alpha_t}\,x_t - \sqrt{1/\bar\alpha_t - 1}\,\epsilon, \quad
        x_{t-1} = c_1 \hat x_0 + c_2 x_t + s\,z

    with ``x̂₀`` optionally clipped to [−1, 1].
    """
    x0 = _x0_hat(x, eps, c.sqrt_recip_alphas_cumprod, c.sqrt_recipm1_alphas_cumprod, clip)
    mean = _col(c.posterior_mean_coef1) * x0 + _col(c.posterior_mean_coef2) * x
    out[...] = mean + _col(c.noise_scale) * z


def ddim_step(x, eps, z, c: DDIMCoefs, clip: bool, out) -> None:
    r"""One DDIM step (Song et al. 2021, Eq. 12), ε re-derived from the (clipped) x̂₀.

    .. math::
        \hat\epsilon = (\sqrt{1/\bar\alpha_t}\,x_t - \hat x_0) / \sqrt{1/\bar\alpha_t - 1},
        \quad x_{t-1} = \sqrt{\bar\alpha_{prev}}\,\hat x_0
        + \sqrt{1 - \bar\alpha_{prev} - \sigma^2}\,\hat\epsilon + [t \ne 0]\,\sigma z
    """
    c_recip, c_recipm1 = c.sqrt_recip_alphas_cumprod, c.sqrt_recipm1_alphas_cumprod
    x0 = _x0_hat(x, eps, c_recip, c_recipm1, clip)
    eps_hat = (_col(c_recip) * x - x0) / _col(c_recipm1)
    mean = x0 * _col(c.sqrt_alphas_cumprod_prev) + _col(c.direction_scale) * eps_hat
    out[...] = mean + _col(c.noise_scale) * z


def langevin_step(x, g, z, c: LangevinCoefs, out) -> None:
    r"""One unadjusted Langevin step row-wise: ``out = (x + a·g) + b·z`` with ``a = δ/2``,
    ``b = √δ`` (the unadjusted Langevin update x_k = x_{k−1} + (δ/2)∇log p + √δ·ε)."""
    out[...] = (x + _col(c.half_step) * g) + _col(c.sqrt_step) * z


_KERNELS: dict[str, Any] = {
    "q_sample": q_sample,
    "ddpm_step": ddpm_step,
    "ddim_step": ddim_step,
    "langevin_step": langevin_step,
}
